"""AMX-INT8 conv kernels (targets/x86/amx.py): tile plans, the weight packing ``tdpbusd``
reads, the instructions a cross-build emits, and outputs bit-identical to the ``vpdpbusd``
kernel (both accumulate exact int32) where this machine executes AMX."""

import numpy as np
import pytest
import torch

import aiq_tvm
from aiq_tvm.quant import ActQParams
from aiq_tvm.targets import host_features
from aiq_tvm.targets.capabilities import capabilities
from aiq_tvm.targets.x86 import ConvSpec, amx, conv2d_kernel
from aiq_tvm.testing import compile_prim_func, kernel_args, kernel_input
from isa import ZNVER4, requires_host

SAPPHIRE = {"kind": "llvm", "mcpu": "sapphirerapids", "num-cores": 2}
QP = ActQParams.from_range(-3.0, 3.0)
OUT_QP = ActQParams.from_range(0.0, 6.0)


def _conv(spec, target, *, residual=False, seed=0, scheme="int8"):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal(spec.weight_shape) * 0.05).astype("float32")
    b = rng.standard_normal(spec.O).astype("float32")
    kernel = conv2d_kernel(spec, scheme, w, b, act="relu", act_qparams=QP,
                           out_qparams=OUT_QP if residual else None, residual=residual,
                           residual_qparams=OUT_QP if residual else None, target=target)
    x = kernel_input("int8", rng.standard_normal(spec.in_shape).astype("float32"), QP)
    res = rng.integers(0, 256, spec.out_shape).astype("uint8") if residual else None
    return kernel, x, res


def _run(kernel, x, res, target) -> np.ndarray:
    args = kernel_args(kernel, x, res)
    compile_prim_func(kernel.prim_func, target).mod["main"](*args)
    return args[-1].numpy()


def test_has_amx_reads_the_targets_features():
    assert amx.has_amx(capabilities(SAPPHIRE))
    assert not amx.has_amx(capabilities(ZNVER4))
    assert amx.has_amx(capabilities({**ZNVER4, "mattr": ["+amx-tile", "+amx-int8"]}))


@pytest.mark.parametrize("spec,rows,kc,need_pad", [
    (ConvSpec(1, 14, 14, 256, 256, 3, 3, padding=1), 14, 64, True),  # whole row in a tile
    (ConvSpec(1, 56, 56, 256, 64, 1, 1), 14, 64, False),  # 56 = 4 x 14: no padded columns
    (ConvSpec(1, 7, 7, 2048, 512, 1, 1), 7, 64, True),  # 7 rows: one padded row pair
    (ConvSpec(1, 34, 34, 96, 64, 1, 1), 16, 48, True),  # no divisor in 12..16: pad to 48
])
def test_tile_plan(spec, rows, kc, need_pad):
    plan = amx.amx_plan(spec)
    assert (plan.rows, plan.kc, plan.need_pad) == (rows, kc, need_pad)
    assert plan.owp % plan.rows == 0 and plan.ohp % amx.ROW_BLOCK == 0
    # every tile load stays inside the padded input
    assert (plan.ohp - 1) * spec.stride[0] + spec.KH <= plan.hp
    assert (plan.owp - 1) * spec.stride[1] + spec.KW <= plan.wp


@pytest.mark.parametrize("spec", [
    ConvSpec(1, 8, 8, 64, 48, 1, 1),  # output channels not a multiple of 32
    ConvSpec(1, 8, 8, 16, 64, 1, 1),  # 16 channels: a quarter of a tile row
    ConvSpec(1, 8, 8, 64, 64, 3, 3, groups=2),  # grouped
    ConvSpec(1, 8, 8, 64, 64, 1, 7, padding=(0, 3, 0, 3)),  # 1 x 7 window
    ConvSpec(2, 1, 1, 64, 32, 1, 1),  # squeeze-and-excitation conv: a 1 x 1 map
    ConvSpec(1, 3, 3, 64, 64, 3, 3, padding=1),  # 3-column rows
])
def test_no_tile_plan_where_tiles_do_not_apply(spec):
    assert amx.amx_plan(spec) is None


def test_packed_weight_is_the_tile_layout():
    rng = np.random.default_rng(0)
    q = rng.integers(-127, 128, (64, 36, 3, 3)).astype("int8")
    plan = amx.amx_plan(ConvSpec(1, 8, 8, 36, 64, 3, 3, padding=1))
    packed = amx.pack_weight_amx(q, plan)
    assert packed.shape == (2, 3, 3, plan.cp // 4, 32, 4)
    ob, i, j, c4, o, c = 1, 2, 0, 5, 17, 3
    assert packed[ob, i, j, c4, o, c] == q[ob * 32 + o, c4 * 4 + c, i, j]
    assert not packed[:, :, :, 36 // 4:].any()  # padded channels are zero


def test_tile_config_bytes():
    cfg = amx._config_bytes(14, 64)
    assert cfg[0] == 1 and len(cfg) == 64
    assert cfg[48:56] == [14] * 6 + [16] * 2  # rows: C and A tiles, then B (64 / 4)
    assert cfg[16:32:2] == [64] * 8  # bytes per row of every tile


@pytest.mark.parametrize("spec", [
    ConvSpec(1, 14, 14, 256, 256, 3, 3, padding=1),
    ConvSpec(1, 7, 7, 2048, 512, 1, 1),
])
def test_sapphire_rapids_build_uses_tiles(spec):
    kernel, _, _ = _conv(spec, SAPPHIRE)
    assert kernel.info["algorithm"] == "amx"
    asm = compile_prim_func(kernel.prim_func, SAPPHIRE).mod.inspect_source("asm")
    for instruction in ("ldtilecfg", "tileloadd", "tdpbusd", "tilestored"):
        assert instruction in asm, instruction


def test_env_switch(monkeypatch):
    spec = ConvSpec(1, 14, 14, 96, 576, 1, 1)
    w = np.zeros(spec.weight_shape, "float32")
    for value, tiles in (("", True), ("1", True), ("0", False)):
        monkeypatch.setenv("AIQ_AMX", value)
        kernel = conv2d_kernel(spec, "int8", w, None, act_qparams=QP, target=SAPPHIRE)
        assert (kernel.info.get("algorithm") == "amx") == tiles, value
    monkeypatch.setenv("AIQ_AMX", "yes")
    with pytest.raises(ValueError, match="AIQ_AMX must be 0 or 1"):
        conv2d_kernel(spec, "int8", w, None, act_qparams=QP, target=SAPPHIRE)


def test_int4_takes_tiles_with_byte_codes_and_fp32_does_not():
    spec = ConvSpec(1, 14, 14, 256, 256, 3, 3, padding=1)
    int4, _, _ = _conv(spec, SAPPHIRE, scheme="int4")
    assert (int4.info["algorithm"], int4.info["weight_format"]) == ("amx", "amx_i8")
    codes = int4.consts[0]
    assert codes.dtype == np.int8 and codes.size == 256 * 256 * 9
    assert codes.min() >= -8 and codes.max() <= 7
    w = np.zeros(spec.weight_shape, "float32")
    assert conv2d_kernel(spec, "fp32", w, None, target=SAPPHIRE).info.get("algorithm") != "amx"


RUN_CASES = [
    ConvSpec(1, 14, 14, 256, 256, 3, 3, padding=1),
    ConvSpec(2, 15, 15, 128, 64, 3, 3, stride=2, padding=1),  # stride 2, odd rows, batch 2
    ConvSpec(1, 7, 7, 2048, 512, 1, 1),
    ConvSpec(1, 9, 9, 62, 32, 3, 3, padding=(1, 0, 1, 2)),  # padded channels, uneven padding
]


@requires_host(SAPPHIRE)
@pytest.mark.parametrize("scheme", ["int8", "int4"])
@pytest.mark.parametrize("residual", [False, True], ids=["float-out", "requant-residual"])
@pytest.mark.parametrize("spec", RUN_CASES, ids=lambda s: f"{s.KH}x{s.KW}s{s.stride[0]}c{s.C}")
def test_outputs_bit_identical_to_the_dot_kernel(spec, residual, scheme, monkeypatch):
    monkeypatch.delenv("AIQ_AMX", raising=False)
    tiles, x, res = _conv(spec, SAPPHIRE, residual=residual, scheme=scheme)
    assert tiles.info["algorithm"] == "amx"
    monkeypatch.setenv("AIQ_AMX", "0")
    dot, _, _ = _conv(spec, SAPPHIRE, residual=residual, scheme=scheme)
    assert dot.info.get("algorithm") != "amx"
    got, want = _run(tiles, x, res, SAPPHIRE), _run(dot, x, res, SAPPHIRE)
    assert np.array_equal(got, want)
    assert np.abs(want.astype(np.float64)).max() > 0  # the comparison saw real values


@pytest.mark.skipif("amx-int8" not in host_features(), reason="this machine has no AMX-INT8")
def test_host_target_switches_on_amx_llvm_may_not_name():
    from aiq_tvm.targets import host_target

    caps = capabilities(host_target())
    assert amx.has_amx(caps) and caps.host_runnable


class _TwoConvs(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.wide = torch.nn.Conv2d(256, 256, 3, padding=1)  # AMX at int8 and int4
        self.narrow = torch.nn.Conv2d(256, 48, 1)  # 48 channels: no tile plan

    def forward(self, x):
        return self.narrow(torch.relu(self.wide(x)))


def test_report_names_the_int4_layers_stored_a_byte_per_code(monkeypatch):
    from aiq_tvm._ir import specialize_batch
    from aiq_tvm.analysis import cost_model
    from aiq_tvm.compiler import prepare
    from aiq_tvm.floor import byte_stored_int4

    monkeypatch.delenv("AIQ_AMX", raising=False)
    mod, _ = aiq_tvm.from_torch(_TwoConvs().eval(), torch.randn(1, 256, 14, 14))
    cost = cost_model(specialize_batch(prepare(mod), 1))
    plan = {name: "int4" for name in cost.names}
    wide = [lc.name for lc in cost.layers if lc.weight_shape[0] == 256]
    assert byte_stored_int4(cost, plan, SAPPHIRE) == wide
    assert byte_stored_int4(cost, plan, ZNVER4) == []
    assert byte_stored_int4(cost, {n: "int8" for n in cost.names}, SAPPHIRE) == []
