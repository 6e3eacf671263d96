"""Integer depthwise convs on the int8 dot instruction: four window taps per 32-bit lane.

A depthwise conv sums over its window taps, not over channels, so the channel dot products
(``vpdpbusd``: four uint8 x int8 products into each int32 lane) have nothing to sum in the
usual layout, and the integer depthwise kernels convert each tap's input vector to float and
multiply-add it: three vector instructions per tap and 16 channels. Here a lane's four bytes
are four horizontally adjacent taps of one channel instead. Each task copies its input rows,
16 channels at a time, into ``[row, channel block, column, 16]`` (zero point outside the
map), so the four pixels a lane reads are 64 contiguous bytes; one byte shuffle turns
``[pixel, channel]`` into ``[channel, pixel]`` and one ``vpdpbusd`` adds a window row's
taps (the fourth tap's weight is 0; a 5-wide window takes two groups of four). Per window
row and 16 outputs: a load, a shuffle and a dot instead of nine instructions.

The sums are the int32 path's (inputs padded with the zero point, the correction in the
epilogue), so the outputs equal the other integer depthwise kernels' bit for bit.
"""

from __future__ import annotations

import dataclasses
import functools
from math import ceil

import numpy as np
from tvm import s_tir, te, tirx
from tvm.script import tirx as T

from aiq_tvm.targets.x86.common import ConvSpec

__all__ = ["DotDwPlan", "dot_dw_plan", "pack_weight_dot_dw", "dot_dw_stages",
           "schedule_dot_dw"]

LANES = 16  # int32 lanes of a zmm: output channels per dot
TAPS = 4  # bytes per 32-bit lane: horizontal taps per dot
MAX_BLOCK = 8  # output columns per register block (accumulator vectors)
MIN_TASKS_PER_THREAD = 4


@dataclasses.dataclass(frozen=True)
class DotDwPlan:
    """Tiles of the kernel: ``rows`` output rows per parallel task, ``cols`` output columns
    per register block, ``groups`` dots per window row (``ceil(KW / 4)``)."""

    rows: int
    cols: int
    groups: int

    def describe(self) -> str:
        return f"nhwc_dw_dot_r{self.rows}_c{self.cols}_g{self.groups}"


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


def dot_dw_plan(spec: ConvSpec, threads: int) -> DotDwPlan | None:
    """The plan for ``spec``, or None where the kernel does not apply (not depthwise,
    dilated, channels not a multiple of 16)."""
    if not spec.is_depthwise or spec.dilation != (1, 1) or spec.C % LANES:
        return None
    rows = 1
    for r in (4, 2):
        if spec.OH % r == 0 and spec.N * spec.OH // r >= MIN_TASKS_PER_THREAD * threads:
            rows = r
            break
    return DotDwPlan(rows, _largest_divisor(spec.OW, MAX_BLOCK), ceil(spec.KW / TAPS))


def pack_weight_dot_dw(q: np.ndarray, plan: DotDwPlan) -> np.ndarray:
    """Depthwise codes ``[C, 1, KH, KW]`` -> ``[C / 16, KH, groups, 16, 4]`` int8, taps past
    ``KW`` zero."""
    c, _, kh, kw = q.shape
    out = np.zeros((c // LANES, kh, plan.groups, LANES, TAPS), np.int8)
    for t in range(kw):
        g, k = divmod(t, TAPS)
        out[:, :, g, :, k] = q[:, 0, :, t].reshape(c // LANES, LANES, kh).transpose(0, 2, 1)
    return out


def padded_width(spec: ConvSpec, plan: DotDwPlan) -> int:
    """Columns of the row copy: the last register block's last group reads 4 pixels."""
    return (spec.OW - 1) * spec.stride[1] + TAPS * plan.groups


def dot_dw_stages(spec: ConvSpec, plan: DotDwPlan, x: te.Tensor, w: te.Tensor, zp: int):
    """``rows`` (the channel-blocked copy) and ``acc`` (int32 ``[N, OH, OW, C]`` sums)."""
    n, h, wd, c = spec.in_shape
    ph, pw = spec.padding[0], spec.padding[1]
    sh, sw = spec.stride
    hp = (spec.OH - 1) * sh + spec.KH
    wp = padded_width(spec, plan)
    zero = tirx.const(zp, "uint8")

    def copy(b, r, cb, col, cc):
        i, j = r - ph, col - pw
        col = tirx.if_then_else(tirx.likely(tirx.all(j >= 0, j < wd)),
                                x[b, i, j, cb * LANES + cc], zero)
        return tirx.if_then_else(tirx.all(i >= 0, i < h), col, zero)

    rows = te.compute((n, hp, c // LANES, wp, LANES), copy, name="rows")
    kh = te.reduce_axis((0, spec.KH), "kh")
    g = te.reduce_axis((0, plan.groups), "g")
    t = te.reduce_axis((0, TAPS), "t")
    acc = te.compute(
        (n, spec.OH, spec.OW, c // LANES, LANES),
        lambda b, i, j, cb, cc: te.sum(
            rows[b, i * sh + kh, cb, j * sw + g * TAPS + t, cc].astype("int32")
            * w[cb, kh, g, cc, t].astype("int32"), axis=[kh, g, t]),
        name="acc",
    )  # fmt: skip
    return rows, acc


@functools.cache
def _dot_intrin() -> str:
    """``acc[16] += sum_t rows[t, c] * w[c, t]``: 64 contiguous input bytes (4 pixels x 16
    channels) shuffled to ``[channel, pixel]``, then ``vpdpbusd``."""
    from aiq_tvm.targets.x86.vnni import register_once

    shuffle = [t * LANES + c for c in range(LANES) for t in range(TAPS)]

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (TAPS, LANES), "uint8", offset_factor=1)
        B = T.match_buffer(b, (LANES, TAPS), "int8", offset_factor=1)
        C = T.match_buffer(c, (LANES,), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:LANES], A[0:TAPS, 0:LANES], B[0:LANES, 0:TAPS])
            T.writes(C[0:LANES])
            for i, k in T.grid(LANES, TAPS):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.cast(A[vk, vi], "int32") * T.cast(B[vi, vk], "int32")

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (TAPS, LANES), "uint8", offset_factor=1)
        B = T.match_buffer(b, (LANES, TAPS), "int8", offset_factor=1)
        C = T.match_buffer(c, (LANES,), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:LANES], A[0:TAPS, 0:LANES], B[0:LANES, 0:TAPS])
            T.writes(C[0:LANES])
            pixels = A.vload([0, 0], "uint8x64")
            C[T.ramp(T.int32(0), 1, LANES)] = T.call_llvm_pure_intrin(
                "int32x16", "llvm.x86.avx512.vpdpbusd.512", C.vload([0], "int32x16"),
                T.reinterpret(T.Shuffle([pixels], shuffle), dtype="int8x64"),
                B.vload([0, 0], "int8x64"))

    return register_once("aiq_dw_dot_u8i8_16", desc, impl)


def schedule_dot_dw(func: tirx.PrimFunc, plan: DotDwPlan) -> tirx.PrimFunc:
    """Tasks of ``rows`` output rows (images x row blocks, parallel); per task and channel
    block the row copy, then register blocks of ``cols`` columns: window rows and groups
    outside, the columns unrolled, the tensorized dot inside; the epilogue after each
    block."""
    sch = s_tir.Schedule(func)
    acc, out, rows = sch.get_sblock("acc"), sch.get_sblock("out"), sch.get_sblock("rows")
    b, i, j, cb, cc, kh, g, t = sch.get_loops(acc)
    io, ii = sch.split(i, [None, plan.rows])
    jo, ji = sch.split(j, [None, plan.cols])
    sch.reorder(b, io, cb, ii, jo, kh, g, ji, cc, t)
    task = sch.fuse(b, io)
    sch.parallel(task)
    sch.reverse_compute_at(out, jo, preserve_unit_loops=True)
    *_, o_j, o_c = sch.get_loops(out)
    sch.vectorize(o_c)
    sch.unroll(o_j)
    sch.compute_at(rows, cb, preserve_unit_loops=True)
    *_, r_row, _, r_col, r_c = sch.get_loops(rows)
    sch.vectorize(r_c)
    sch.annotate(r_col, "pragma_loop_partition_hint", 1)
    init = sch.decompose_reduction(acc, kh)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.unroll(sch.get_loops(init)[-2])
    sch.tensorize(cc, _dot_intrin())
    sch.unroll(ji)
    sch.unroll(g)
    sch.unroll(kh)
    return sch.mod["main"]
