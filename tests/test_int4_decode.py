"""Decode-once int4 conv kernels (int4 weights stored packed, decoded once per call into an
int8 scratch, multiplied by the int8 dot path): exact against the numpy reference on every
ISA level this host runs, one scratch allocation per call, and the planner's choice between
them and the in-loop unpacking kernels."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

os.environ.setdefault("TVM_NUM_THREADS", "2")

from test_x86_kernels import (  # noqa: E402
    CASES,
    asm_of,
    compile_kernel,
    extreme_case,
    make_case,
    run_kernel,
)

from aiq_tvm import quant  # noqa: E402
from aiq_tvm.quant import ActQParams  # noqa: E402
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel  # noqa: E402
from isa import ZNVER4, isa_params  # noqa: E402

# Decode-once format of each case per dot family (the stored int4 layout + "d").
DECODED = {
    "vpdpbusd": {"conv3x3_s1": "v4d", "conv3x3_s2": "v4sd", "pointwise_ragged": "v4d"},
    "vpmaddubsw": {"conv3x3_s1": "m4d", "conv3x3_s2": "m4sd", "pointwise_ragged": "m4wd"},
    "vpmaddwd": {"conv3x3_s1": "w4d", "conv3x3_s2": "w4sd", "pointwise_ragged": "w4d"},
}
# 24 channels in 16-channel groups pad less with the kernel columns folded (3 x 24 = 72 of
# 80 reduction values), which some levels model cheaper than the 8-channel format.
ALSO = {("vpmaddubsw", "conv3x3_s1"): "m4wd"}


def _decoded_case(name, target, **kw):
    """Decode-once kernel of a test_x86_kernels case (accumulator output), its inputs and the
    numpy reference."""
    spec, x, w, b, res, qp = make_case(name)
    k = conv2d_kernel(spec, "int4", w, b, act=CASES[name]["act"], act_qparams=qp,
                      residual=CASES[name]["residual"], target=target, debug_acc=True,
                      decode_once=True, **kw)  # fmt: skip
    ref = quant.ref_conv2d(x, w, b, "int4", stride=spec.stride, padding=spec.padding,
                           act_qparams=qp, residual=res)  # fmt: skip
    return k, quant.quantize_act(x, qp), res, ref


@pytest.mark.parametrize("target", isa_params())
@pytest.mark.parametrize("name", ["conv3x3_s1", "conv3x3_s2", "pointwise_ragged"])
def test_decode_once_kernels_exact(name, target):
    """Accumulators equal the numpy reference's, bit for bit, for every stored int4 layout
    (8-channel, 4-channel and 16-channel groups)."""
    k, xq, res, ref = _decoded_case(name, target)
    assert k.info["decode_once"]
    dot = k.info["int8_dot"]
    assert k.info["weight_format"] in (DECODED[dot][name], ALSO.get((dot, name)))
    assert k.consts[0].dtype == np.uint8  # still stored as packed nibbles
    np.testing.assert_array_equal(run_kernel(k, xq, res, target), ref.acc)


@pytest.mark.parametrize("target", isa_params(("avx512_vnni", "avx2")))
def test_decode_once_extreme_codes_exact(target):
    """All-255 activations x int4 codes of +-7 over 16-channel groups: the vpmaddubsw path sums
    four byte-pair products in int16 (4 * 2 * 255 * 7 < 2**15), which must stay exact."""
    spec = ConvSpec(1, 4, 4, 48, 32, 1, 1)
    w, qp, xq = extreme_case(spec)
    k = conv2d_kernel(spec, "int4", w, None, act_qparams=qp, target=target, debug_acc=True,
                      decode_once=True)  # fmt: skip
    ref = quant.ref_conv2d(xq, w, None, "int4", act_qparams=qp)
    np.testing.assert_array_equal(run_kernel(k, xq, target=target), ref.acc)


@pytest.mark.parametrize("target", isa_params(("avx512_vnni", "avx512bw", "avx2")))
def test_decoded_stem_folds_exact(target):
    """The RGB stem decoded once folds its kernel columns as int8 does (a scratch of 7 x 24
    values per window row, not 49 x 8) and stays bit-exact."""
    k, xq, res, ref = _decoded_case("stem7x7_s2", target)
    assert k.info["decode_once"] and "foldkw" in k.info["schedule"]
    np.testing.assert_array_equal(run_kernel(k, xq, res, target), ref.acc)


def _forced_decode(spec, target, seed=0):
    """Decode-once int4 kernel of ``spec`` (accumulator output), its input and reference."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(spec.weight_shape).astype(np.float32)
    x = rng.standard_normal(spec.in_shape).astype(np.float32) + 0.3
    qp = ActQParams.from_range(float(x.min()), float(x.max()))
    k = conv2d_kernel(spec, "int4", w, None, act_qparams=qp, target=target, debug_acc=True,
                      decode_once=True)  # fmt: skip
    xq = quant.quantize_act(x, qp)
    ref = quant.ref_conv2d(xq, w, None, "int4", stride=spec.stride, padding=spec.padding,
                           groups=spec.groups, act_qparams=qp)  # fmt: skip
    return k, xq, ref


# (spec, per-thread decode): the parallel loop's first non-unit loop splits evenly over two
# threads (rows; output-channel blocks of a 1x1 layer; depthwise rows) or not (7 rows).
PER_THREAD_CASES = [
    (ConvSpec(1, 8, 8, 128, 128, 3, 3, padding=1), True),
    (ConvSpec(1, 7, 7, 160, 384, 1, 1), True),
    (ConvSpec(1, 8, 8, 96, 96, 3, 3, padding=1, groups=96), True),
    (ConvSpec(1, 7, 7, 96, 96, 3, 3, padding=1, groups=96), False),
]


@pytest.mark.parametrize("target", isa_params(("avx512_vnni", "avx2")))
@pytest.mark.parametrize("case", range(len(PER_THREAD_CASES)))
def test_decode_forms_exact_at_two_threads(case, target):
    """Both placements of the decode (per thread inside the parallel loop, or one scratch at
    the root) give the numpy reference's accumulators bit for bit, run on two threads."""
    spec, per_thread = PER_THREAD_CASES[case]
    k, xq, ref = _forced_decode(spec, target)
    assert k.info["decode_once"]
    assert _decoded_in_parallel_loop(k.prim_func.script()) == per_thread
    np.testing.assert_array_equal(run_kernel(k, xq, target=target), ref.acc)


def _decoded_in_parallel_loop(script: str) -> bool:
    """Whether the ``wdec`` block runs inside the function's only parallel loop, before the
    register blocks (else it must run at the root, before the parallel loop)."""
    dec, acc = script.index('T.sblock("wdec")'), script.index('T.sblock("acc')
    assert dec < acc  # decoded before any register block reads it
    return "T.parallel(" in script[:dec]


@pytest.mark.parametrize("target", isa_params(("avx512_vnni", "avx2"), run=False))
def test_decode_runs_per_thread_without_extra_launch(target):
    """Compile-only, planned for two threads: each thread decodes into its own scratch inside
    the conv's parallel loop (split into one chunk per thread), so the kernel has one parallel
    loop and as many parallel launches as the in-loop int4 kernel: no second launch and no
    scratch one core writes and the other reads. The register blocks run the int8 dot
    instruction."""
    for spec in (CASES["conv3x3_s1"]["spec"], ConvSpec(1, 8, 8, 128, 128, 3, 3, padding=1),
                 ConvSpec(1, 7, 7, 160, 384, 1, 1)):  # fmt: skip
        w = np.random.default_rng(0).standard_normal(spec.weight_shape).astype(np.float32)
        qp = ActQParams.from_range(-1.0, 2.0)
        launches = {}
        for dec in (False, True):
            k = conv2d_kernel(spec, "int4", w, None, act_qparams=qp, target=target,
                              decode_once=dec)  # fmt: skip
            assert k.info["decode_once"] == dec
            asm = asm_of(compile_kernel(k, target))
            launches[dec] = asm.count("TVMBackendParallelLaunch")
            assert re.search(r"\b(vpdpbusd|vpmaddubsw)\s", asm)
        script = k.prim_func.script()
        assert _decoded_in_parallel_loop(script), spec
        assert script.count("T.parallel(") == 1
        if k.info["decode_at"] == "thread":
            assert re.search(r"T\.parallel\(2\)", script)  # one chunk per thread
        else:  # one output-channel block per iteration (see test_block_decode_*)
            assert k.info["decode_at"] == "block", spec
        assert launches[True] == launches[False] > 0, spec


def test_root_decode_when_the_parallel_loop_does_not_split(monkeypatch):
    """7 output rows do not split over two threads: one root scratch, decoded before the
    parallel loop (by one thread below DECODE_PARALLEL_BYTES)."""
    monkeypatch.setenv("TVM_NUM_THREADS", "2")
    spec = ConvSpec(1, 7, 7, 96, 96, 3, 3, padding=1, groups=96)
    k, _, _ = _forced_decode(spec, ZNVER4)
    script = k.prim_func.script()
    assert re.search(r"^    wdec = T\.sblock_alloc_buffer", script, flags=re.M)
    head = script[: script.index('T.sblock("wdec")')]
    assert "T.parallel" not in head and script.count("T.parallel(") == 1


@pytest.mark.parametrize("target", isa_params(run=False))
@pytest.mark.usefixtures("zen4_caches")  # the 7 x 7 layer's scratch past Zen 4's L2 share
def test_planner_decodes_once_for_large_spatial_layers(target):
    """Compile-time choice, one thread: a 3x3 layer at 56 x 56, batch 8 (each weight reused by
    25,088 positions) decodes once. With AVX-512 VNNI (measured) a 7 x 7 layer with 2.4 MB of
    int8 weights keeps unpacking in the inner loop at batch 1 (49 positions; a per-block
    decode costs more) and decodes per output-channel block at batch 8 (its whole scratch
    would spill L2); elsewhere the model may pick either form."""
    target = {**target, "num-cores": 1}
    qp = ActQParams.from_range(-1.0, 2.0)
    rng = np.random.default_rng(0)
    for spec, decode in ((ConvSpec(8, 56, 56, 64, 64, 3, 3, padding=1), True),
                         (ConvSpec(1, 7, 7, 512, 512, 3, 3, padding=1), False),
                         (ConvSpec(8, 7, 7, 512, 512, 3, 3, padding=1), True)):  # fmt: skip
        w = rng.standard_normal(spec.weight_shape).astype(np.float32)
        k = conv2d_kernel(spec, "int4", w, None, act_qparams=qp, target=target,
                          schedule=False)  # fmt: skip
        if spec.H == 56 or k.info["isa"] == "avx512_vnni":
            assert k.info["decode_once"] == decode, spec
        # Decode-once formats are named after the stored int4 layout plus "d".
        assert k.info["weight_format"].endswith("d") == k.info["decode_once"]
        if spec.H == 7 and k.info["decode_once"] and k.info["isa"] == "avx512_vnni":
            assert k.info["decode_at"] == "block"


def test_decode_once_choice_is_validated(monkeypatch):
    spec, x, w, b, res, qp = make_case("pointwise")
    monkeypatch.setenv("AIQ_INT4_DECODE", "yes")
    with pytest.raises(ValueError, match="AIQ_INT4_DECODE must be 0 or 1"):
        conv2d_kernel(spec, "int4", w, b, act_qparams=qp, target=ZNVER4, schedule=False)
    monkeypatch.setenv("AIQ_INT4_DECODE", "0")
    k = conv2d_kernel(spec, "int4", w, b, act_qparams=qp, target=ZNVER4, schedule=False)
    assert not k.info["decode_once"]


# Decode-once plans whose whole scratch would not stay in a core's cache (ResNet-50's 7 x 7
# layers, shrunk): the planner decodes one output-channel block per parallel iteration; 3x3
# with a padded copy (made once, at the root), strided, 1x1 without, ragged last blocks (400
# and 784 channels in 48-channel blocks).
BLOCK_CASES = [
    ConvSpec(2, 7, 7, 512, 512, 3, 3, padding=1),
    ConvSpec(8, 4, 4, 512, 256, 3, 3, stride=2, padding=1),
    ConvSpec(2, 7, 7, 2048, 400, 1, 1),
    ConvSpec(2, 7, 7, 1024, 784, 1, 1),
]


@pytest.mark.parametrize("cores", [1, 2])
@pytest.mark.parametrize("target", isa_params(("avx512_vnni", "avx2")))
@pytest.mark.parametrize("case", range(len(BLOCK_CASES)))
@pytest.mark.usefixtures("zen4_caches")  # scratches past Zen 4's L2 share, not past a 2 MiB one
def test_block_decode_exact(case, target, cores):
    """Decoded one output-channel block per iteration of the parallel loop (the scratch of
    one block), the padded copy before that loop: the numpy reference's accumulators bit for
    bit, planned for one and for two cores (run on the host's threads)."""
    spec = BLOCK_CASES[case]
    k, xq, ref = _forced_decode(spec, {**target, "num-cores": cores}, seed=case)
    assert k.info["decode_at"] == "block", (spec, k.info["schedule"])
    script = k.prim_func.script()
    head = script[: script.index('T.sblock("wdec")')]
    assert re.search(r"for oc_0 in T\.parallel\(\d+\)", head)  # decoded per block
    if k.info["padded_copy"]:
        assert head.index('T.sblock("pad")') < head.index("T.parallel(")  # once, at the root
    np.testing.assert_array_equal(run_kernel(k, xq, target=target), ref.acc)


def test_scratch_limit_follows_the_targets_l2():
    """A whole scratch stays in L2 up to 3/4 of a core's L2: ResNet's 590 KB scratch (3x3 256
    -> 256) fits Zen 4's 1 MiB, not a 256 KiB L2, where each vector costs the spilled rate; an
    unknown L2 (0) is sized as the 1 MiB the limit was measured with. A per-block scratch
    above the limit is never chosen."""
    from aiq_tvm.targets.x86.schedules import (
        DECODE_CALL_CYCLES,
        DECODE_VECTOR_CYCLES,
        SCRATCH_SPILL_CYCLES,
        SPILLED_DECODE_VECTOR_CYCLES,
        decode_cycles,
    )

    scratch = 3 * 3 * 256 * 256  # int8 codes of 3x3 256 -> 256

    def per_vector(l2_bytes):
        return (decode_cycles(scratch, 16, 1, l2_bytes=l2_bytes) - DECODE_CALL_CYCLES) / (
            scratch / 64)

    assert per_vector(1 << 20) == per_vector(0) == DECODE_VECTOR_CYCLES
    assert per_vector(256 << 10) == SPILLED_DECODE_VECTOR_CYCLES > DECODE_VECTOR_CYCLES
    block = decode_cycles(scratch, 16, 2, per_thread=True, split=True, block=scratch,
                          l2_bytes=256 << 10)  # fmt: skip
    assert block >= SCRATCH_SPILL_CYCLES


@pytest.mark.parametrize("batch,decode", [(1, False), (8, True)])
def test_large_scratch_takes_the_int8_plan_at_batch_8(batch, decode):
    """Compile-time, two threads, AVX-512 VNNI: 3x3 512 -> 512 at 7 x 7 (2.4 MB of int8 codes,
    above L2). At batch 8 (392 positions per weight) each thread decodes the whole scratch
    and runs int8's register blocks with int8's loop order (unpacking in the loop measured
    0.91x of int8, decoding 0.96x); at batch 1 it keeps unpacking in the loop."""
    spec = ConvSpec(batch, 7, 7, 512, 512, 3, 3, padding=1)
    target = {**ZNVER4, "num-cores": 2}
    qp = ActQParams.from_range(-1.0, 2.0)
    w = np.random.default_rng(0).standard_normal(spec.weight_shape).astype(np.float32)
    k4, k8 = (conv2d_kernel(spec, s, w, None, act_qparams=qp, target=target, schedule=False)
              for s in ("int4", "int8"))  # fmt: skip
    assert k4.info["decode_once"] == decode
    if decode:
        assert k4.info["decode_at"] == "thread"
        for field in ("tiles", "ocb", "order", "par"):
            assert getattr(k4.plan, field) == getattr(k8.plan, field), field
