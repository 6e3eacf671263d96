"""int8 Winograd conv2d F(2 x 2, 3 x 3) and F(4 x 4, 3 x 3) in exact int16 / int32 arithmetic.

For 3x3, stride-1, groups-1 layers with uint8 activations (zero point ``zp``) and int8 weight
codes ``q``. Every step is an integer operation, so the kernel is bit-identical to the direct
int8 kernel (same epilogue on the same integer). With ``g`` / ``at`` the integer forms of G /
A^T of an :class:`IntTile`:

* ``pad``: ``x - zp`` as int16, zero outside the image (the direct kernel pads with ``zp``);
* ``wino_in``: ``V = B^T d B`` in int16: F(2, 3) (entries 0 / +-1) ``|V| <= 4 * 255``;
  F(4, 3) (rows of B^T sum to at most 10 in absolute value, two passes) ``|V| <= 100 * 255
  = 25500``;
* ``U = g q g^T`` on the host, int16, packed ``[a, a, K/ocb, C/2, ocb, 2]``: F(2, 3)
  ``g = 2G = [[2,0,0],[1,1,1],[1,-1,1],[0,0,2]]``, ``|U| <= 9 * 127``; F(4, 3) ``g =
  diag(12, 6, 6, 24, 24, 3) G`` (entries 0, +-1, +-2, 3, 4), ``|U| <= 49 * 127 = 6223``;
* ``acc``: ``a * a`` GEMMs ``M[e, u] = V[e, u] (tiles x C) @ U[e, u] (C x K)`` over input
  channel pairs, tensorized with ``vpmaddwd`` (int16 pairs -> int32, exact) + ``vpaddd``, or
  ``vpdpwssd`` on AVX-512 VNNI (F(4, 3): 2.25 products per output instead of 4);
* ``wino_out`` / ``out``: ``at M at^T`` in int32 (a row pass, then a column pass). F(2, 3):
  ``at = A^T`` (entries 0 / +-1), the result is exactly 4 x ``sum (x - zp) q`` (the direct
  kernel's ``acc - corr``, with ``corr = 0``). F(4, 3): ``at = A^T diag(2, 4, 4, 1, 1, 8)``
  (powers of two: shifts and adds) gives ``576 Y = 2**6 * 9 * Y``, which can exceed int32:
  the transform is computed modulo 2**32 (two's complement adds and multiplies are exact in
  that ring, whatever the order) and multiplied by the inverse of 9 modulo 2**32, which
  leaves ``64 Y`` exactly while ``|Y| < 2**25``. The epilogue's ``comb`` constant is
  divided by ``2**shift`` (4 or 64) instead (``common.fold_acc_shift``, bit-identical), or
  where that is inexact it shifts right (``acc_shift``).

The overflow bounds (:func:`fits`) are checked per layer on the actual transformed weights:
every GEMM sum fits int32, per tap and output channel, and for F(4, 3) ``|Y| < 2**25``. A
layer that fails F(4, 3)'s takes F(2, 3), one that fails F(2, 3)'s stays direct. The modular
output transform relies on LLVM lowering TVM's int32 adds and multiplies (which it marks
``nsw``) to the wrapping ``vpaddd`` / ``vpslld`` / ``vpmulld``; none of those values is
compared, widened or divided before the final multiply, and
``tests/test_winograd_int8.py`` checks a layer whose output transform wraps.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import te
from tvm.script import tirx as T

from .common import ConvSpec, round_up
from .schedules import STACK_ACC_BYTES
from .vnni import register_once
from .winograd import StepFmt, WinoArith, matrices, register_block_copy_out, vectorized_init
from .winograd import winograd_plan as _tile_plan

# 2 G of F(2, 3): integer entries, so U = (2G) q (2G)^T = 4 G q G^T is exact.
G2 = np.array([[2, 0, 0], [1, 1, 1], [1, -1, 1], [0, 0, 2]], dtype=np.int64)
M = 2  # output tile edge of F(2, 3)
ALPHA = 4  # input tile edge of F(2, 3)
ACC_SHIFT = 2  # F(2, 3): Y = 4 * (direct accumulator)


@dataclass(frozen=True)
class IntTile:
    """Integer form of F(m, 3): ``at @ [(g q g^T) * (B^T d B)] @ at^T = scale * Y`` (Y the
    tile's 3x3 correlation of ``d`` with ``q``), ``scale = 2**shift * odd``. ``odd > 1``: the
    output transform computes ``scale * Y`` modulo 2**32 (it exceeds int32) and multiplies
    it by ``odd``'s inverse modulo 2**32, which leaves ``2**shift * Y`` exactly while
    ``|Y| < 2**(31 - shift)``."""

    m: int
    g: np.ndarray  # integer rows: G scaled row by row
    at: np.ndarray  # integer: A^T with its columns scaled by the inverse row scales of g
    shift: int
    odd: int
    split_input: bool = False  # input transform in two passes (rows, then columns)

    @property
    def alpha(self) -> int:
        return self.m + 2

    @property
    def odd_inverse(self) -> int:
        return pow(self.odd, -1, 2**32)


def _f4_tile() -> IntTile:
    """F(4, 3): ``diag(s) G`` is integer for s = (12, 6, 6, 24, 24, 3) (|entries| <= 4), and
    ``A^T diag(24 / s)`` too, so the output transform yields 24 * 24 * Y = 2**6 * 9 * Y.

    Every scale dividing 24 with ``diag(s) G`` integer gives that ``24 * 24``; this one makes
    ``24 / s = (2, 4, 4, 1, 1, 8)`` powers of two, so the output transform is shifts and adds
    (``s = (4, 6, 6, 24, 24, 1)`` multiplied by 6 and 24: three ops each), while ``|U|`` and
    the GEMM bound (:func:`gemm_fits`) keep their maxima (the taps of rows 3 and 4)."""
    _, g, at = matrices(4)
    s = np.array([12, 6, 6, 24, 24, 3], dtype=np.float64)
    return IntTile(4, np.rint(s[:, None] * g).astype(np.int64),
                   np.rint(at * (24 / s)[None, :]).astype(np.int64), 6, 9, True)  # fmt: skip


F2 = IntTile(2, G2, matrices(2)[2].astype(np.int64), ACC_SHIFT, 1)
F4 = _f4_tile()
TILES = {2: F2, 4: F4}

_LLVM_PMADDWD = {4: "llvm.x86.sse2.pmadd.wd", 8: "llvm.x86.avx2.pmadd.wd",
                 16: "llvm.x86.avx512.pmaddw.d.512"}
_LLVM_VPDPWSSD = {16: "llvm.x86.avx512.vpdpwssd.512"}

# One GEMM step (2 input channels) per accumulator vector: vpmaddwd, plus the vpaddd into the
# accumulator at half the cost of a multiply (latency 1 on the accumulator chain); vpdpwssd
# does both in one op with the FMA latency. Register blocks stay below STACK_ACC_BYTES: on the
# skylake-avx512 build, 16-zmm blocks (1 KiB, a heap buffer) ran 7-20 % slower than the best
# block of at most 8 zmm (ResNet-20's 3x3 layers at batch 16 on the Zen 4 host).
# Transforms: F(4, 3)'s input and every output transform run in two passes, and F(4, 3)'s
# output is multiplied by the odd scale's inverse (see below).
_PASSES = {"split_input": tuple(m for m, t in TILES.items() if t.split_input),
           "split_output": True, "odd_multiply": tuple(m for m, t in TILES.items() if t.odd != 1)}
PMADDWD_ARITH = WinoArith(StepFmt(1.5, 2, 1.0, bcast_ops=1.0), "dot", 2, 2, STACK_ACC_BYTES,
                          **_PASSES)
VPDPWSSD_ARITH = WinoArith(StepFmt(1.0, 2, 4.0, bcast_ops=1.0), "dot", 2, 2, STACK_ACC_BYTES,
                           **_PASSES)


def arith(cpu) -> WinoArith:
    """The GEMM arithmetic the target has (``vpdpwssd`` needs 512-bit VNNI)."""
    return VPDPWSSD_ARITH if _use_vpdpwssd(cpu) else PMADDWD_ARITH


def _use_vpdpwssd(cpu) -> bool:
    return cpu.dot.name == "vpdpbusd" and cpu.lanes in _LLVM_VPDPWSSD


def winograd_plan(spec: ConvSpec, cpu, sizes: tuple[int, ...]):
    """The planner's cheapest plan over the tile edges ``sizes``, F(4, 3) only where its
    modelled cost is below F(2, 3)'s by ``F4_MARGIN``."""
    plans = {m: _tile_plan(spec, cpu, (m,), arith(cpu)) for m in sizes}
    if len(plans) > 1 and plans[F4.m].cost * F4_MARGIN >= plans[F2.m].cost:
        del plans[F4.m]
    return min(plans.values(), key=lambda p: p.cost)


# Measured by scripts/bench_winograd_int8.py on the Zen 4 host (one thread, CPU time): with
# F(2, 3) / F(4, 3) cost ratios of 1.10-1.53 in the model, F(4, 3) ran 1.09-1.53x faster than
# F(2, 3) (ResNet-20's 3x3 layers at batch 1 and 16, ResNet-18/50's at 224 x 224 at batch 1
# and 8, skylake-avx512, docs/performance_isa.md);
# at 7x7x512, batch 8, the model put F(4, 3) 1.05x ahead, and it ran 1.27x slower (its U,
# 2.25x F(2, 3)'s, streamed per group of output channels).
F4_MARGIN = 1.08


def applies(spec: ConvSpec, cpu) -> bool:
    """3x3 stride-1 groups-1 layers, on x86 targets with a 16-bit multiply-add intrinsic
    (``pmaddwd`` at the target's width; AArch64's 4-lane levels have none here)."""
    from .winograd import applies as shape_applies

    return (shape_applies(spec) and cpu.caps.arch == "x86_64"
            and cpu.lanes in _LLVM_PMADDWD)


def transform_weight(q: np.ndarray, ocb: int, tile: IntTile = F2) -> np.ndarray:
    """``U = g q g^T`` of OIHW codes as int16 ``[a, a, K/ocb, Cp/2, ocb, 2]`` (output
    channels padded to ``ocb``, input channels to a pair, with zeros)."""
    o, c = q.shape[:2]
    a = tile.alpha
    u = np.einsum("ei,ocij,uj->euoc", tile.g, q.astype(np.int64), tile.g)
    kp, cp = round_up(o, ocb), round_up(c, 2)
    full = np.zeros((a, a, kp, cp), np.int64)
    full[:, :, :o, :c] = u
    blk = full.reshape(a, a, kp // ocb, ocb, cp // 2, 2).transpose(0, 1, 2, 4, 3, 5)
    return np.ascontiguousarray(blk.astype(np.int16))


def fits_int32(u: np.ndarray, zp: int) -> bool:
    """F(2, 3): every intermediate of the kernel fits int32: ``|V| <= 4 * max|x - zp|``, a
    GEMM output is at most ``|V|`` times the column sum of ``max |U|``, and the output
    transform adds 9 of them (A^T entries 0 / +-1)."""
    v_max = 4 * max(int(zp), 255 - int(zp))
    # u: [e, u, Kb, Cp/2, ocb, 2] -> per output channel: sum over channels of max over (e, u).
    per_channel = np.abs(u.astype(np.int64)).max(axis=(0, 1)).sum(axis=(1, 3))
    return 9 * v_max * int(per_channel.max(initial=0)) < 2**31


def fits(tile: IntTile, u: np.ndarray, q: np.ndarray, zp: int) -> bool:
    """The kernel of ``tile`` computes this layer exactly: F(2, 3) in int32 throughout
    (:func:`fits_int32`); F(4, 3) with every GEMM sum in int32 (:func:`gemm_fits`) and the
    modular output transform's ``2**shift * Y`` too (:func:`output_fits`)."""
    if tile.odd == 1:
        return fits_int32(u, zp)
    return gemm_fits(tile, u, zp) and output_fits(tile, q, zp)


def output_fits(tile: IntTile, q: np.ndarray, zp: int) -> bool:
    """``|Y| <= max|x - zp| * sum |q|`` (per output channel) is below ``2**(31 - shift)``."""
    x_max = max(int(zp), 255 - int(zp))
    y_max = x_max * int(np.abs(q.astype(np.int64)).sum(axis=(1, 2, 3)).max(initial=0))
    return y_max < 2 ** (31 - tile.shift)


def gemm_fits(tile: IntTile, u: np.ndarray, zp: int) -> bool:
    """Every GEMM sum ``sum_c V[e, u] U[e, u]`` fits int32, bounded per tap ``(e, u)`` and
    output channel: ``|V[e, u]| <= max|x - zp| * |B^T[e]|_1 * |B^T[u]|_1`` times the sum over
    the input channels of ``|U[e, u]|`` (the int16 ``V`` and ``U`` themselves always fit:
    ``|V| <= 100 * 255``, ``|U| <= 49 * 127`` for F(4, 3))."""
    rows = np.abs(matrices(tile.m)[0]).sum(axis=1).astype(np.int64)
    v_max = max(int(zp), 255 - int(zp)) * np.outer(rows, rows)
    # u: [e, u, Kb, Cp/2, ocb, 2] -> [e, u, Kb, ocb]: sum over the input channels.
    per_channel = np.abs(u.astype(np.int64)).sum(axis=(3, 5))
    return int((v_max[:, :, None, None] * per_channel).max(initial=0)) < 2**31


def _bcast_pair(A, lanes: int):
    """Two int16 activations broadcast to every 32-bit lane."""
    return T.reinterpret(
        T.broadcast(T.reinterpret(A.vload([0], "int16x2"), dtype="int32"), lanes),
        dtype=f"int16x{2 * lanes}",
    )


def _pair_step(A, B, C, lanes: int, vnni: bool):
    """``C + A-pair . B-pairs`` on ``lanes`` int32 lanes: one ``vpdpwssd``, or ``vpmaddwd``
    and an add."""
    i32, i16 = f"int32x{lanes}", f"int16x{2 * lanes}"
    if vnni:
        return T.call_llvm_pure_intrin(i32, _LLVM_VPDPWSSD[lanes], C.vload([0], i32),
                                       _bcast_pair(A, lanes), B.vload([0, 0], i16))
    return C.vload([0], i32) + T.call_llvm_pure_intrin(
        i32, _LLVM_PMADDWD[lanes], _bcast_pair(A, lanes), B.vload([0, 0], i16))


def _i16_pair(lanes: int, vnni: bool):
    @T.prim_func(s_tir=True)
    def desc(
        A: T.Buffer((2,), "int16", offset_factor=1),
        B: T.Buffer((lanes, 2), "int16", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:2], B[0:lanes, 0:2])
            T.writes(C[0:lanes])
            for i, k in T.grid(lanes, 2):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    @T.prim_func(s_tir=True)
    def impl(
        A: T.Buffer((2,), "int16", offset_factor=1),
        B: T.Buffer((lanes, 2), "int16", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:2], B[0:lanes, 0:2])
            T.writes(C[0:lanes])
            C[T.ramp(T.int32(0), 1, lanes)] = _pair_step(A, B, C, lanes, vnni)

    return desc, impl


@functools.cache
def pair_intrin(lanes: int, vnni: bool) -> str:
    """Name of the int16-pair multiply-add intrinsic (``vpmaddwd`` + ``vpaddd``, or
    ``vpdpwssd`` with ``vnni``) on ``lanes`` 32-bit lanes, registered on first use."""
    desc, impl = _i16_pair(lanes, vnni)
    kind = "vpdpwssd" if vnni else "vpmaddwd"
    return register_once(f"aiq_{kind}{32 * lanes}_i16pair", desc, impl)


def intrin_for(cpu) -> str:
    return pair_intrin(cpu.lanes, _use_vpdpwssd(cpu))


def _coef(mat: np.ndarray, row, col: int, dtype: str):
    """``mat[row, col]`` for a loop variable ``row`` (folded once ``row`` is unrolled)."""
    val = tvm.tirx.const(0, dtype)
    for r in range(mat.shape[0]):
        if mat[r, col] != 0:
            val = tvm.tirx.Select(row == r, tvm.tirx.const(int(mat[r, col]), dtype), val)
    return val


def winograd_int8_compute(spec: ConvSpec, tile: IntTile, ocb: int, zp: int, x, wt, epilogue):
    """TE blocks ``pad``, ``wino_in``, ``acc``, ``wino_out`` and ``out`` (names as the fp32
    kernel's, so ``winograd.schedule_winograd``'s outer structure applies);
    ``epilogue(y, b, i, j, k)`` gives the stored value of the int32
    ``y = 2**tile.shift * sum (x - zp) q``."""
    m, a = tile.m, tile.alpha
    n, h, w, c = spec.in_shape
    pt, pl = spec.padding[0], spec.padding[1]
    n_h, n_w = -(-spec.OH // m), -(-spec.OW // m)
    kp, cp = round_up(spec.O, ocb), round_up(c, 2)
    zero = tvm.tirx.const(0, "int16")

    def pad_body(b, i, j, k):
        conds = [i >= pt, i < pt + h, j >= pl, j < pl + w] + ([k < c] if cp > c else [])
        val = x[b, i - pt, j - pl, k].astype("int16") - tvm.tirx.const(zp, "int16")
        return tvm.tirx.if_then_else(tvm.tirx.all(*conds), val, zero)

    xp = te.compute((n, n_h * m + 2, n_w * m + 2, cp), pad_body, name="pad")

    v = _input_transform(tile, xp, (n, n_h, a, a, n_w, cp))
    rco = te.reduce_axis((0, cp // 2), "rco")
    rci = te.reduce_axis((0, 2), "rci")
    acc = te.compute(
        (n, n_h, a, a, n_w, kp),
        lambda b, th, e, u, tw, k: te.sum(
            v[b, th, e, u, tw, rco * 2 + rci].astype("int32")
            * wt[e, u, k // ocb, rco, k % ocb, rci].astype("int32"),
            axis=[rco, rci],
        ),
        name="acc",
    )
    return _output_transform(spec, tile, acc, epilogue)


def _input_transform(tile: IntTile, xp, shape):
    """``V = B^T d B`` of every tile in int16: below 32 bits TVM's adds wrap (no nsw), and
    every partial sum of the terms is bounded by the total of their absolute values (<= 100
    * 255). F(4, 3) takes two passes (``wino_in_rows`` = ``B^T d``, then ``V``: 6 * 22 + 6 *
    22 products per tile and channel vector instead of 22 * 22)."""
    m, a = tile.m, tile.alpha
    bt = matrices(m)[0]
    zero = tvm.tirx.const(0, "int16")
    if not tile.split_input:

        def in_body(b, th, e, u, tw, k):
            total = zero
            for i in range(a):
                for j in range(a):
                    coef = _coef(bt, e, i, "int16") * _coef(bt, u, j, "int16")
                    total = total + coef * xp[b, th * m + i, tw * m + j, k]
            return total

        return te.compute(shape, in_body, name="wino_in")

    def rows_body(b, th, e, j, tw, k):
        terms = [_coef(bt, e, i, "int16") * xp[b, th * m + i, tw * m + j, k] for i in range(a)]
        return functools.reduce(lambda s, t: s + t, terms, zero)

    r = te.compute(shape, rows_body, name="wino_in_rows")

    def cols_body(b, th, e, u, tw, k):
        terms = [_coef(bt, u, j, "int16") * r[b, th, e, j, tw, k] for j in range(a)]
        return functools.reduce(lambda s, t: s + t, terms, zero)

    return te.compute(shape, cols_body, name="wino_in")


def _output_transform(spec: ConvSpec, tile: IntTile, acc, epilogue):
    """``at M at^T`` in two passes (rows, then columns: for F(2, 3) 24 adds per tile and
    channel vector instead of 32), then the multiply by ``tile.odd_inverse``."""
    m, a, at = tile.m, tile.alpha, tile.at
    n, kp = spec.N, acc.shape[-1]
    n_h, n_w = -(-spec.OH // m), -(-spec.OW // m)

    def rows_body(b, th, mi, u, tw, k):
        total = tvm.tirx.const(0, "int32")
        for e in range(a):
            total = total + _coef(at, mi, e, "int32") * acc[b, th, e, u, tw, k]
        return total

    t = te.compute((n, n_h, m, a, n_w, kp), rows_body, name="wino_out")

    def out_body(b, i, j, k):
        total = tvm.tirx.const(0, "int32")
        for u in range(a):
            total = total + _coef(at, j % m, u, "int32") * t[b, i // m, i % m, u, j // m, k]
        if tile.odd != 1:
            total = _opaque(total) * tvm.tirx.const(_signed32(tile.odd_inverse), "int32")
        return epilogue(total, b, i, j, k)

    return te.compute(spec.out_shape, out_body, name="out")


def _opaque(val):
    """``val`` behind a bit cast pair: TVM's simplifier would otherwise distribute a
    multiply by a constant over the sum (coefficients beyond int32); LLVM removes the pair."""
    return tvm.tirx.reinterpret("int32", tvm.tirx.reinterpret("float32", val))


def _signed32(v: int) -> int:
    return v - 2**32 if v >= 2**31 else v


def schedule_gemm(sch, acc, plan, intrin: str):
    """The GEMM as register blocks of ``plan.tiles`` tiles x ``plan.ocv`` channel vectors over
    channel pairs, the innermost (lanes x pair) block tensorized with ``intrin``."""
    th, e, u, tw, k, rco, rci = sch.get_loops(acc)[-7:]
    two, twi = sch.split(tw, [None, plan.tiles])
    ko, kv, kl = sch.split(k, [None, plan.ocv, plan.lanes])
    unroll = PAIR_UNROLL if sch.get(rco).extent % PAIR_UNROLL == 0 else 1
    rco, rcoi = sch.split(rco, [None, unroll])
    # A U block (C x ocb) is reused by every tile of the task before the next one is read.
    sch.reorder(e, u, ko, th, two, rco, rcoi, twi, kv, kl, rci)
    register_block_copy_out(sch, acc, two, plan.lanes)
    reg = sch.fuse(twi, kv)
    vectorized_init(sch, acc, rco)
    sch.tensorize(kl, intrin)
    sch.unroll(reg)
    sch.unroll(rcoi)


# Channel-pair steps per GEMM loop iteration: unrolling by 2 ran 2-3 % faster on haswell
# (ResNet-20's 16x16x32 and 8x8x64 layers at batch 16 and 8x8x64 at batch 1, Zen 4 host),
# no change at 32x32x16 or on skylake-avx512; 4 was slower than 2 at 8x8x64.
PAIR_UNROLL = 2


def select_margin(cpu) -> float:
    """The int8 Winograd kernel replaces the direct one when its modelled cost times this is
    lower (see the calibration note at the constants)."""
    return VPDPWSSD_MARGIN if _use_vpdpwssd(cpu) else PMADDWD_MARGIN


# Measured per layer by scripts/bench_winograd_int8.py on the Zen 4 host (one thread, ResNet-20
# shapes at batch 1 and 16, docs/performance_isa.md): with vpmaddwd (haswell, skylake-avx512
# builds) every layer the model put at >= 1.13x the direct kernel's cost ran 1.22-1.80x
# faster, those it put below 1 (C = 3) ran 0.79-0.88x; the margin keeps near-ties direct. With
# vpdpwssd (znver4 build) the direct vpdpbusd kernel (4 products per lane and op, no separate
# add) ran faster on 8 of 10 shapes (Winograd 0.72-0.91x) and at most 1.03x slower, where the
# model put both within 3 %: the margin keeps AVX-512 VNNI targets direct with F(2, 3). F(4, 3)
# with vpdpwssd (znver4, one thread, CPU time) ran 1.24-1.61x faster than the direct kernel
# on ResNet-18/50's 56x56x64, 28x28x128 and 14x14x256 layers at batch 1 and 8 (model ratios
# 1.34-1.43, so it is picked there) and 1.05-1.39x on ResNet-20's layers at batch 16 (model
# 0.87-1.20: direct kept); at 7x7x512, batch 1, it ran 0.53x (model 0.19). Since session 38
# the model prices the two-pass transforms as such (``winograd.transform_ops``), which puts
# ResNet-20's 32- and 64-channel layers at batch 16 at 1.42 / 1.56 and picks F(4, 3) there,
# as the Zen 4 times favour; on the Intel host of session 38 (rocketlake code without AMX,
# one thread) the direct kernel ran faster there (F(4, 3) 0.83x / 0.95x) and level at
# ResNet-18's 56x56x64 / 28x28x128 at batch 1 (0.92x / 1.03x;
# docs/runs/s38/wino_tiles_host{16,1}.txt): the margin stays, a vendor's VNNI rates differ.
PMADDWD_MARGIN = 1.05
VPDPWSSD_MARGIN = 1.25

