"""Depthwise int8 kernels: the planner's register tile fits the vector registers with the input
window LLVM keeps live, and padded copies of odd channel counts stay vectorized."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TVM_NUM_THREADS", "1")

import tvm  # noqa: E402

from aiq_tvm import quant, testing  # noqa: E402
from aiq_tvm.quant import ActQParams  # noqa: E402
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel  # noqa: E402
from aiq_tvm.targets.x86 import conv2d as conv_mod  # noqa: E402
from aiq_tvm.targets.x86.isa import cpu_model, plain_format  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from isa import BEST_X86, HASWELL, ZNVER4  # noqa: E402

# MobileNetV2's 144-channel depthwise layer at 224 x 224 input (56 x 56, stride 1).
DW144 = ConvSpec(1, 56, 56, 144, 144, 3, 3, stride=1, padding=1, groups=144)


def planned_tile(spec: ConvSpec, target, scheme="int8"):
    """The planner's register tile of ``spec`` and its CPU model."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal(spec.weight_shape).astype(np.float32)
    k = conv2d_kernel(spec, scheme, w, None, act_qparams=ActQParams.from_range(-1.0, 2.0),
                      target=target, schedule=False)  # fmt: skip
    return k.plan


def window_registers(spec: ConvSpec, tile) -> int:
    """Accumulators + one kernel row's inputs + weights (+ epilogue constants) of ``tile``."""
    _, rows, cols = tile.tiles
    inputs = rows * ((cols - 1) * spec.stride[1] + spec.KW)
    return tile.ocv * (rows * cols + inputs + spec.KW) + conv_mod.DW_EPILOGUE_REGS


def test_dw_int8_tile_fits_registers_with_its_input_window():
    """The 144 @ 56 layer on AVX-512 used to get 1x2x7 (14 accumulators, 18 inputs: reloads,
    0.113 ms) over 1x4x2 (0.099 ms); AVX2 levels keep the accumulator budget alone."""
    tile = planned_tile(DW144, ZNVER4)
    assert tile.mode == "dw" and tile.tiles != (1, 2, 7)
    assert window_registers(DW144, tile) <= 32, tile
    assert window_registers(DW144, planned_tile(DW144, HASWELL)) > 16


def test_dw_window_rule_spares_fp32():
    """Float inputs are FMA memory operands: the 1x2x7 block the rule rules out for int8 on
    AVX-512 stays a candidate for fp32."""
    cpu = cpu_model(ZNVER4)

    def tiles(scheme):
        fmt = plain_format(32 if scheme == "fp32" else 8,
                           "float32" if scheme == "fp32" else "int32", cpu.throughput)
        return {p.tile.tiles for _, p in conv_mod.conv_candidates(DW144, fmt, cpu)}

    assert (1, 2, 7) in tiles("fp32")
    assert (1, 2, 7) not in tiles("int8") and (1, 4, 2) in tiles("int8")


def test_dw_odd_channel_padding_vectorized_and_exact():
    """144 uint8 channels are copied into the padded block in 16-byte vectors (one 144-wide
    vector became a per-byte copy) and the kernel stays exact."""
    spec = ConvSpec(1, 6, 6, 144, 144, 3, 3, stride=1, padding=1, groups=144)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(spec.in_shape).astype(np.float32) + 0.3
    w = (rng.standard_normal(spec.weight_shape) / 3).astype(np.float32)
    qp = ActQParams.from_range(float(x.min()), float(x.max()))
    k = conv2d_kernel(spec, "int8", w, None, act_qparams=qp, target=BEST_X86, debug_acc=True)
    assert "T.vectorized(16)" in str(k.prim_func).split('T.sblock("pad")')[0].rsplit("for", 1)[1]
    xq = quant.quantize_act(x, qp)
    ex = tvm.compile(tvm.IRModule({"main": k.prim_func}), tvm.target.Target(BEST_X86))
    y = tvm.runtime.tensor(np.zeros(k.out_shape, k.out_dtype))
    ex.mod["main"](*[tvm.runtime.tensor(a) for a in (xq, *k.consts)], y)
    ref = quant.ref_conv2d(xq, w, None, "int8", padding=spec.padding, groups=spec.groups,
                           act_qparams=qp, int8_qmax=testing.int8_qmax(spec, BEST_X86))
    np.testing.assert_array_equal(y.numpy(), ref.acc)
