"""AArch64 kernels, cross-built on this host (CI; assembly only, nothing runs arm64 code here).

Every Arm ISA level's int8 dot instruction in the int8/int4 conv and dense kernels (``+i8mm``:
``usmmla`` where output positions pair up, ``usdot`` elsewhere), NEON FMA in
the fp32 ones, the kernels' offset definitions exact (run on the host as plain TIR), and
ResNet-20 int8 and mixed int8/int4 plans cross-built for aarch64 with dot products in every
integer kernel, exported by the cross compiler. The instructions' numerics, and the whole
ResNet-20 against the host's outputs, run on the emulated board: tests/test_arm_emulated.py
(``make test-arm``).
"""

import re

import numpy as np
import pytest
import torch

import aiq_tvm
from aiq_tvm import datasets, models
from aiq_tvm.calibrate import Calibration
from aiq_tvm.plan import Plan
from aiq_tvm.targets import capabilities
from aiq_tvm.targets.arm import neon
from aiq_tvm.targets.arm.disassembly import LEVEL_INSTRUCTIONS, instruction_counts
from aiq_tvm.targets.x86 import ConvSpec, DenseSpec, conv2d_kernel, cpu_model, dense_kernel
from aiq_tvm.testing import compile_prim_func, kernel_input, layer_data, reference, run_kernel
from isa import AARCH64_DOTPROD, ARM_TARGETS, HASWELL, kernel_bodies

EM_AARCH64 = 183
CONV = ConvSpec(2, 6, 6, 20, 24, 3, 3, padding=1)  # 20 channels: int4 pads to 24 (usmmla 32)
DENSE = DenseSpec(3, 70, 10)  # 3 rows: no row pairs for usmmla
DENSE4 = DenseSpec(4, 70, 10)
CONV_S2 = ConvSpec(2, 8, 8, 20, 24, 3, 3, padding=1, stride=2)
# level -> int8 / int4 weight formats of CONV, the instruction their blocks use, instructions
# that must not appear (in CONV and DENSE4).
LEVELS = {
    "neon_i8mm": ("usmmla8", "usmmla4", "usmmla", ("sdot", "smull", "usdot", "smmla")),
    "neon_dotprod": ("sdot8x4", "sdot4", "sdot", ("usdot", "smull", "usmmla", "smmla")),
    "neon": ("smull8", "smull4", "smull", ("sdot", "usdot", "usmmla", "smmla")),
}
# Formats whose blocks are 16 channels of int8 (intrinsic kind u8i8x4), and the instruction
# each format's blocks run (the indexed usdot form is written sudot: the lane operand is the
# unsigned one).
X4_FORMATS = {"sdot8x4", "usdot8x4"}
FORMAT_INSTRUCTION = {"usmmla8": "usmmla", "usmmla4": "usmmla", "usdot8x4": "sudot",
                      "usdot4": "usdot", "sdot8x4": "sdot", "sdot4": "sdot", "smull8": "smull",
                      "smull4": "smull"}
# DENSE4's formats where they differ from CONV's: an even row count pairs rows for usmmla,
# but the 16-channel usdot blocks model cheaper for int8 at 70 inputs.
DENSE4_FORMATS = {"neon_i8mm": ("usdot8x4", "usmmla4")}


def kind_of(fmt: str) -> str:
    return "u8i8x4" if fmt in X4_FORMATS else "u8i4" if fmt.endswith("4") else "u8i8"
# Mixed plan: the second conv of every block in stages 2 and 3 in int4, the rest int8.
MIXED = Plan({r"re:layer[23]\..*conv2": "int4"}, default="int8")


def count(asm: str, mnemonic: str) -> int:
    return len(re.findall(rf"^\s+{mnemonic}\s+v\d+\.", asm, flags=re.M))


def asm_of(kernel, target) -> str:
    return compile_prim_func(kernel.prim_func, target).mod.inspect_source("asm")


def build(spec, scheme, target, **kwargs):
    rng = np.random.default_rng(0)
    x, w, b, _, qp = layer_data(spec, rng, offset=0.7)  # off-centre: zero point != 128
    make = dense_kernel if isinstance(spec, DenseSpec) else conv2d_kernel
    k = make(spec, scheme, w, b, act_qparams=qp, target=target, **kwargs)
    return k, x, w, b, qp


@pytest.mark.parametrize("level", list(LEVELS))
def test_int_kernels_use_the_level_dot_instruction(level):
    target = ARM_TARGETS[level]
    caps = capabilities(target)
    assert caps.isa == level and cpu_model(target).dot.name == caps.int8_dot
    fmt8, fmt4, _, absent = LEVELS[level]
    for spec in (CONV,) if level == "neon" else (CONV, DENSE4):
        fmts = DENSE4_FORMATS.get(level, (fmt8, fmt4)) if spec is DENSE4 else (fmt8, fmt4)
        for scheme, fmt in zip(("int8", "int4"), fmts, strict=True):
            k, *_ = build(spec, scheme, target)
            assert (k.info["isa"], k.info["int8_dot"], k.info["weight_format"]) == (
                level, caps.int8_dot, fmt)
            instr = FORMAT_INSTRUCTION[fmt]
            assert k.info["intrin"] == neon.intrinsic_for(target, kind_of(fmt),
                                                          pairs=instr == "usmmla")
            asm = asm_of(k, target)
            assert count(asm, instr) >= (4 if spec is CONV else 1), (scheme, spec)
            for bad in absent:
                assert count(asm, bad) == 0, (scheme, spec, bad)
            if instr == "smull":  # products paired by addp, widened into int32 by sadalp
                assert count(asm, "addp") >= 1 and count(asm, "sadalp") >= 1


def test_i8mm_layers_without_position_pairs_use_usdot():
    """``usmmla`` pairs neighbouring output columns of a conv or rows of a dense layer with an
    even row count; a 3-row dense layer of an ``+i8mm`` target runs ``usdot`` blocks (int8:
    16 channels per block, the indexed form, written ``sudot``)."""
    target = ARM_TARGETS["neon_i8mm"]
    for scheme, fmt in (("int8", "usdot8x4"), ("int4", "usdot4")):
        k, *_ = build(DENSE, scheme, target)
        assert k.info["weight_format"] == fmt and "dot2x2" not in k.info["schedule"]
        asm = asm_of(k, target)
        instr = FORMAT_INSTRUCTION[fmt]
        assert count(asm, instr) >= 1 and count(asm, "usmmla") == 0, scheme


@pytest.mark.parametrize("level", ["neon_dotprod", "neon_i8mm"])
def test_16_channel_blocks_load_activations_once_and_dot_by_lane(level):
    """The 16-channel int8 blocks (``sdot8x4`` / ``usdot8x4``): one 16-byte activation load
    (and, for ``sdot``, one flip) per position serves four dots, each taking its 4 bytes as
    a lane (``v1.4b[2]``) instead of a ``dup`` of a 4-byte load; the weights are four ``v8``
    blocks per group (layout ``v8b``)."""
    target = ARM_TARGETS[level]
    spec = DENSE if level == "neon_i8mm" else ConvSpec(1, 8, 8, 32, 32, 3, 3, padding=1)
    k, *_ = build(spec, "int8", target)
    fmt = k.info["weight_format"]
    assert fmt in X4_FORMATS and k.info["intrin"] == neon.intrinsic_for(target, "u8i8x4")
    asm = asm_of(k, target)
    instr = FORMAT_INSTRUCTION[fmt]
    by_lane = re.findall(rf"^\s+{instr}\s+v\d+\.4s, v\d+\.16b, v\d+\.4b\[([0-3])\]", asm,
                         flags=re.M)
    assert sorted(set(by_lane)) == ["0", "1", "2", "3"]
    assert count(asm, "dup") == 0


def test_strided_conv_pairs_columns_through_a_phase_split_copy():
    """A stride-2 conv's column pair reads input columns 2 apart: its padded copy stores the
    even and odd columns apart (``[N, H, 2, W / 2, C]``), so the pair is one channel row apart
    again and the layer runs ``usmmla`` (1x1 stride-2 layers get the copy too)."""
    target = ARM_TARGETS["neon_i8mm"]
    for spec in (CONV_S2, ConvSpec(1, 8, 8, 32, 16, 1, 1, stride=2)):
        for scheme in ("int8", "int4"):
            k, *_ = build(spec, scheme, target)
            assert k.info["weight_format"].startswith("usmmla") and k.info["padded_copy"]
            assert re.search(r"\bpad = T\.\w*alloc_buffer\(\(\d+, \d+, 2, ", k.prim_func.script())
            asm = asm_of(k, target)
            assert count(asm, "usmmla") >= 4 and count(asm, "usdot") == 0, (scheme, spec)


def test_usmmla_blocks_are_2x2_tiles():
    """The 2 x 2 schedule: an even position tile, the accumulator tiles initialised as whole
    vectors, ``usmmla`` reading 8 activation bytes per position (``ldr d`` / ``ldp d``)."""
    target = ARM_TARGETS["neon_i8mm"]
    k, *_ = build(ConvSpec(1, 8, 8, 32, 32, 3, 3, padding=1), "int8", target)
    assert k.plan.pairs and k.plan.tiles[-1] % 2 == 0 and "dot2x2" in k.info["schedule"]
    asm = asm_of(k, target)
    assert count(asm, "usmmla") >= 16
    assert re.search(r"^\s+ld[rp]\s+d\d+", asm, flags=re.M)


@pytest.mark.parametrize("level", list(LEVELS))
def test_fp32_kernels_use_neon_fma(level):
    target = ARM_TARGETS[level]
    k, *_ = build(CONV, "fp32", target)
    assert k.plan.lanes == 4 and k.info["weight_format"] == "f32"
    assert count(asm_of(k, target), r"fmla") >= 8


@pytest.mark.parametrize("level", ["neon_dotprod", "neon_i8mm"])  # activation offset 128 / 0
def test_kernel_definitions_exact_on_the_host(level):
    """The Arm kernels' TE definitions (packed layouts, ``a - 128`` for the signed
    instructions, the correction folded into ``corr``) run as plain TIR on this host and give
    the exact ``acc - corr`` of the reference; the instructions run in ``make test-arm``."""
    target = ARM_TARGETS[level]
    offset = neon.ACT_OFFSET[neon.FAMILY_INSTRUCTION[capabilities(target).int8_dot]]
    for scheme in ("int8", "int4"):
        for spec in (CONV, DENSE, DENSE4):
            k, x, w, b, qp = build(spec, scheme, target, schedule=False, debug_acc=True)
            assert k.info["weight_qmax"] == (127 if scheme == "int8" else 7)
            xin = kernel_input(scheme, x, qp)
            ref = reference(spec, scheme, xin, w, b, act_qparams=qp, target=target)
            np.testing.assert_array_equal(run_kernel(k, xin, HASWELL), ref.acc)
            q = aiq_tvm.schemes.get_precision(scheme).quantize_weight(w, 127)[0]
            corr = k.consts[k.info["params"].index("corr") - 1]
            want = (qp.zp - offset) * q.reshape(q.shape[0], -1).astype(np.int64).sum(1)
            np.testing.assert_array_equal(corr, want)


# Grouped convs: 8 channels per group (two 4-lane blocks per group), 4 per group at stride 2.
GROUPED = (ConvSpec(1, 7, 7, 32, 32, 3, 3, padding=1, groups=4),
           ConvSpec(1, 8, 8, 32, 32, 3, 3, stride=2, padding=1, groups=8))


@pytest.mark.parametrize("level", list(LEVELS))
def test_grouped_convs_cross_build_with_the_level_dot_instruction(level):
    """Grouped int8 layers run the level's dot instruction (int4 with 4 channels per group:
    the exact plain path, the Arm int4 blocks read 8 channels), and their TE definitions give
    the reference's exact ``acc - corr`` as plain TIR on this host."""
    target = ARM_TARGETS[level]
    # usmmla where output columns pair up, else the level's one-position instruction.
    instrs = {LEVELS[level][2], neon.FAMILY_INSTRUCTION[capabilities(target).int8_dot]}
    for spec in GROUPED:
        for scheme in ("int8", "int4"):
            k, x, w, b, qp = build(spec, scheme, target)
            assert k.info["schedule"].startswith("nhwc_grouped_")
            if scheme == "int8":
                asm = asm_of(k, target)
                assert sum(count(asm, m) for m in instrs) >= 4, (spec, level)
            k, *_ = build(spec, scheme, target, schedule=False, debug_acc=True)
            xin = kernel_input(scheme, x, qp)
            ref = reference(spec, scheme, xin, w, b, act_qparams=qp, target=target)
            np.testing.assert_array_equal(run_kernel(k, xin, HASWELL), ref.acc)


def test_intrinsic_lookups_reject_bad_input():
    with pytest.raises(ValueError, match="aarch64"):
        neon.intrinsic_for(HASWELL)
    with pytest.raises(ValueError, match="known: usmmla, usdot, sdot, smull"):
        neon.neon_intrin("udot", "u8i8")
    with pytest.raises(ValueError, match="known: u8i8, u8i4, u8i8x4"):
        neon.neon_intrin("sdot", "u8i2")
    with pytest.raises(ValueError, match="no 2 x 2 blocks"):
        neon.intrinsic_for(ARM_TARGETS["neon_dotprod"], pairs=True)


# ---------------------------------------------------------------------------------------------
# ResNet-20 cross-built for aarch64 with dotprod
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet20_builds(tmp_path_factory):
    """Both plans built and exported. The calibration is a fixed range per layer: these tests
    check code generation, and host calibration of a cross build is tested on a small model
    (test_arm_rpc.py); the emulated tests calibrate ResNet-20 on real data."""
    model = models.resnet20(pretrained=True)
    layers = [n for n, m in model.named_modules()
              if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    cal = Calibration({n: (-2.0, 6.0) for n in layers}, method="minmax")
    x, _ = datasets.calibration_set(2)
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(x))
    out = {}
    for name, plan in (("int8", "int8"), ("mixed", MIXED)):
        res = aiq_tvm.build(mod, AARCH64_DOTPROD, params=params, plan=plan, calibration=cal,
                            batch_size=1)
        lib = tmp_path_factory.mktemp("arm") / f"resnet20_{name}.so"
        res.export_library(str(lib))  # the aarch64 cross compiler (deploy.export_compiler)
        out[name] = res, lib
    return out


@pytest.mark.parametrize("plan", ["int8", "mixed"])
def test_resnet20_cross_build_has_dot_products_and_exports(resnet20_builds, plan):
    res, lib = resnet20_builds[plan]
    assert res.cross and capabilities(res.target).isa == "neon_dotprod"
    assert capabilities(res.run_target).arch == "x86_64"  # accuracy runs would run here
    with open(lib, "rb") as f:
        head = f.read(20)
    assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == EM_AARCH64
    kernels = kernel_bodies(lib)
    schemes = {re.search(r"_(int[48])_compute_$", name).group(1) for name in kernels}
    assert schemes == ({"int8", "int4"} if plan == "mixed" else {"int8"})
    for name, body in kernels.items():  # every integer layer kernel: dot products
        counts = instruction_counts(body, LEVEL_INSTRUCTIONS["neon_dotprod"]
                                    + LEVEL_INSTRUCTIONS["neon_i8mm"])
        assert counts["sdot"] >= 1 and counts["usmmla"] == counts["usdot"] == 0, (name, counts)
    with pytest.raises(RuntimeError, match="export_library"):
        res.benchmark(1)  # this host cannot run aarch64 code
