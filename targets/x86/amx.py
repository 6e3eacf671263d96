"""AMX-INT8 conv2d: ``tdpbusd`` tile multiplies for the int8 and int4 layers (int4 codes
stored a byte each) of a target with ``amx-int8`` (Sapphire Rapids and later Xeons, the
cloud vCPUs of AWS m7i / GCP c3 / Azure Dsv6 class).

One ``tdpbusd`` multiplies a 16 x 64 uint8 tile by a 16 x 64 int8 tile (16 x 16 int32 += 16
rows x 64 reduction), 16 384 multiply-adds: per core-cycle 8x what ``vpdpbusd`` on zmm does.
The kernel is a direct (implicit GEMM) NHWC conv:

* **M** (tile rows): ``rows`` consecutive output columns of one output row. Their inputs at
  tap (kh, kw) are ``rows`` pixels ``sw`` apart in a row of the padded NHWC input, each
  ``kc`` channels: one ``tileloadd`` with stride ``sw * Cp`` bytes, no im2col copy.
* **N**: 16 output channels per tile; the weights are packed
  ``[O/32, KH, KW, Cp/4, 32, 4]`` so a B tile (``kc/4`` rows of 16 channels x 4 reduction
  bytes, the layout ``tdpbusd`` reads) is one strided load (128 bytes apart).
* **Register blocking** 2 x 2: tiles 0-3 accumulate 2 output rows x 32 channels, tiles 4-5
  hold the two rows' activations, 6-7 the two channel halves' weights: 4 loads per 4
  multiplies.

The accumulation is exact int32, as on every other int8 path, so the kernel's outputs are
bit-identical to the ``vpdpbusd`` kernel's for the same weight codes. The epilogue (zero-point
correction, scales, bias, residual, activation, requantize) is the shared one
(:func:`~aiq_tvm.targets.x86.common.layer_output`), vectorized over the 32 channels.

Linux hands out AMX tile state only to processes that ask (``arch_prctl(ARCH_REQ_XCOMP_PERM,
XFEATURE_XTILEDATA)``); every kernel asks on entry (one cheap, idempotent system call), so an
exported library runs in any process. Tile configuration is per thread: every parallel task
loads it (``ldtilecfg``) before its tile instructions and releases the tiles after its stores.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import te, tirx
from tvm.s_tir import SBlock, SBlockRealize
from tvm.script import tirx as T

from .common import ConvSpec, nhwc_pad_body, round_up
from .vnni import register_once

__all__ = ["AmxPlan", "amx_plan", "has_amx", "pack_weight_amx", "amx_acc", "schedule_amx",
           "request_tile_permission", "config_words"]

# Linux x86-64: SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA.
SYS_ARCH_PRCTL = 158
ARCH_REQ_XCOMP_PERM = 0x1023
XFEATURE_XTILEDATA = 18

TILE_ROWS = 16  # rows of a tile (M)
TILE_BYTES = 64  # bytes of a tile row (K x 1 byte of A, 16 channels x 4 bytes of B)
OC_BLOCK = 32  # two N tiles of 16 channels
ROW_BLOCK = 2  # two M tiles: two output rows
# Output rows narrower than this leave most of every tile multiply idle (and a 1 x 1 map,
# a squeeze-and-excitation conv's, has no row loop to tensorize).
MIN_ROWS = 4
# Fewer channels per reduction step than this waste most of the tile's 64-byte rows:
# MobileNetV2 INT8 ran 3-6 % slower with 16 (docs/performance_224.md, session 25).
MIN_KC = 32


def has_amx(caps) -> bool:
    """True when the target's features include AMX tiles and their int8 multiply."""
    return caps.amx


@dataclass(frozen=True)
class AmxPlan:
    """How a conv maps onto tiles: ``rows`` output columns per M tile, ``kc`` channels per
    reduction step, the padded input ``(hp, wp, cp)`` and the padded output ``(ohp, owp)``."""

    rows: int
    kc: int
    cp: int
    ohp: int
    owp: int
    hp: int
    wp: int
    need_pad: bool

    def describe(self) -> str:
        return (f"amx_tdpbusd_rows{self.rows}_kc{self.kc}_oc{OC_BLOCK}_"
                f"r{ROW_BLOCK}")


def _rows(ow: int) -> int:
    """Tile rows: the whole output row when it fits a tile, else the divisor of the row in
    12..16 (no padded columns), else 16."""
    if ow <= TILE_ROWS:
        return ow
    for r in range(TILE_ROWS, 11, -1):
        if ow % r == 0:
            return r
    return TILE_ROWS


def _kc(cp: int) -> int:
    """Channels per reduction step: the largest multiple of 4 dividing ``cp``, at most 64."""
    return max(k for k in range(4, TILE_BYTES + 1, 4) if cp % k == 0)


def amx_plan(spec: ConvSpec) -> AmxPlan | None:
    """The tile plan of a regular (groups 1, dilation 1) conv, or None where AMX does not
    pay or apply: output channels not a multiple of 32, outputs narrower than
    :data:`MIN_ROWS` columns, or fewer than :data:`MIN_KC` channels per reduction step."""
    if spec.groups != 1 or spec.dilation != (1, 1) or spec.O % OC_BLOCK:
        return None
    if (spec.KH == 1) != (spec.KW == 1):  # 1 x k / k x 1 windows: no tile description
        return None
    cp = round_up(spec.C, 4)
    kc = _kc(cp)
    if kc < MIN_KC or spec.OW < MIN_ROWS:
        return None
    sh, sw = spec.stride
    rows = _rows(spec.OW)
    owp = round_up(spec.OW, rows)
    ohp = round_up(spec.OH, ROW_BLOCK)
    hp = max((ohp - 1) * sh + spec.KH, spec.H + spec.padding[0])
    wp = max((owp - 1) * sw + spec.KW, spec.W + spec.padding[1])
    need_pad = (any(spec.padding) or cp != spec.C or hp != spec.H or wp != spec.W)
    return AmxPlan(rows, kc, cp, ohp, owp, hp, wp, need_pad)


def pack_weight_amx(q: np.ndarray, plan: AmxPlan) -> np.ndarray:
    """int8 codes ``[O, C, KH, KW]`` -> ``[O/32, KH, KW, Cp/4, 32, 4]`` (zero channels pad)."""
    o, c, kh, kw = q.shape
    w = np.zeros((o, plan.cp, kh, kw), np.int8)
    w[:, :c] = q
    w = w.reshape(o // OC_BLOCK, OC_BLOCK, plan.cp // 4, 4, kh, kw)
    return np.ascontiguousarray(w.transpose(0, 4, 5, 2, 1, 3))


def pad_input(x: te.Tensor, spec: ConvSpec, plan: AmxPlan, pad_value) -> te.Tensor:
    """The padded NHWC input ``[N, hp, wp, cp]`` (:func:`~.common.nhwc_pad_body`: the zero
    point outside the image and in the padded channels)."""
    body = nhwc_pad_body(x, spec, plan.hp, plan.wp, plan.cp, pad_value)
    return te.compute((spec.N, plan.hp, plan.wp, plan.cp), body, name="pad")


def amx_acc(spec: ConvSpec, plan: AmxPlan, xp: te.Tensor, w: te.Tensor) -> te.Tensor:
    """int32 accumulators ``[N, ohp/2, owp/rows, O/32, 2, rows, 32]`` of the conv."""
    sh, sw = spec.stride
    kh = te.reduce_axis((0, spec.KH), "kh")
    kw = te.reduce_axis((0, spec.KW), "kw")
    ci = te.reduce_axis((0, plan.cp), "ci")
    shape = (spec.N, plan.ohp // ROW_BLOCK, plan.owp // plan.rows, spec.O // OC_BLOCK,
             ROW_BLOCK, plan.rows, OC_BLOCK)

    def body(b, i2, jt, ob, r, p, o):
        a = xp[b, (i2 * ROW_BLOCK + r) * sh + kh, (jt * plan.rows + p) * sw + kw, ci]
        wv = w[ob, kh, kw, ci // 4, o, ci % 4]
        return te.sum(a.astype("int32") * wv.astype("int32"), axis=[kh, kw, ci])

    return te.compute(shape, body, name="acc")


def _config_bytes(rows: int, kc: int) -> list[int]:
    """The 64-byte ``ldtilecfg`` operand: palette 1; tiles 0-3 C (rows x 16 int32), 4-5 A
    (rows x kc bytes), 6-7 B (kc/4 rows x 64 bytes)."""
    cfg = [0] * 64
    cfg[0] = 1
    shapes = [(rows, 64)] * 4 + [(rows, kc)] * 2 + [(kc // 4, 64)] * 2
    for t, (r, colsb) in enumerate(shapes):
        cfg[16 + 2 * t] = colsb & 0xFF
        cfg[17 + 2 * t] = colsb >> 8
        cfg[48 + t] = r
    return cfg


def config_words(rows: int, kc: int) -> list[int]:
    """:func:`_config_bytes` as the eight int64 words a kernel stores before ``ldtilecfg``
    (words 1, 4, 5 and 7 are zero)."""
    words = [int(w) for w in np.frombuffer(bytes(_config_bytes(rows, kc)), np.int64)]
    assert not any(words[i] for i in (1, 4, 5, 7))
    return words


def _call(name: str, *args):
    return T.evaluate(T.call_llvm_intrin("void", name, *args))


def _init_intrin(rows: int) -> tuple:
    """``init``: the description zeroes the block; the implementation does nothing (the tile
    multiply zeroes its accumulator tiles)."""

    @T.prim_func(s_tir=True)
    def init_desc(c: T.handle) -> None:
        C = T.match_buffer(c, (ROW_BLOCK, rows, OC_BLOCK), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads()
            T.writes(C[0:ROW_BLOCK, 0:rows, 0:OC_BLOCK])
            for r, p, o in T.grid(ROW_BLOCK, rows, OC_BLOCK):
                with T.sblock("init"):
                    vr, vp, vo = T.axis.remap("SSS", [r, p, o])
                    C[vr, vp, vo] = T.int32(0)

    @T.prim_func(s_tir=True)
    def init_impl(c: T.handle) -> None:
        C = T.match_buffer(c, (ROW_BLOCK, rows, OC_BLOCK), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads()
            T.writes(C[0:ROW_BLOCK, 0:rows, 0:OC_BLOCK])
            T.evaluate(0)

    return init_desc, init_impl


def _tile_desc(kh: int, kw: int, cp: int, rows: int, sh: int, sw: int):
    """The whole reduction of a 2 x rows x 32 block, as the layer's ``acc`` block reads."""
    ra, ca = (ROW_BLOCK - 1) * sh + kh, (rows - 1) * sw + kw

    @T.prim_func(s_tir=True)
    def tile_desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (ra, ca, cp), "uint8", offset_factor=1)
        B = T.match_buffer(b, (kh, kw, cp // 4, OC_BLOCK, 4), "int8", offset_factor=1)
        C = T.match_buffer(c, (ROW_BLOCK, rows, OC_BLOCK), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:ROW_BLOCK, 0:rows, 0:OC_BLOCK], A[0:ra, 0:ca, 0:cp],
                    B[0:kh, 0:kw, 0:cp // 4, 0:OC_BLOCK, 0:4])
            T.writes(C[0:ROW_BLOCK, 0:rows, 0:OC_BLOCK])
            for r, p, o, i, j, k in T.grid(ROW_BLOCK, rows, OC_BLOCK, kh, kw, cp):
                with T.sblock("update"):
                    vr, vp, vo, vi, vj, vk = T.axis.remap("SSSRRR", [r, p, o, i, j, k])
                    C[vr, vp, vo] = C[vr, vp, vo] + T.Cast(
                        "int32", A[vr * sh + vi, vp * sw + vj, vk]) * T.Cast(
                        "int32", B[vi, vj, vk // 4, vo, vk % 4])

    # A 1 x 1 layer's block has no (unit) window loops: its description has none either.
    @T.prim_func(s_tir=True)
    def pointwise_desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (ra, ca, cp), "uint8", offset_factor=1)
        B = T.match_buffer(b, (1, 1, cp // 4, OC_BLOCK, 4), "int8", offset_factor=1)
        C = T.match_buffer(c, (ROW_BLOCK, rows, OC_BLOCK), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:ROW_BLOCK, 0:rows, 0:OC_BLOCK], A[0:ra, 0:ca, 0:cp],
                    B[0:1, 0:1, 0:cp // 4, 0:OC_BLOCK, 0:4])
            T.writes(C[0:ROW_BLOCK, 0:rows, 0:OC_BLOCK])
            for r, p, o, k in T.grid(ROW_BLOCK, rows, OC_BLOCK, cp):
                with T.sblock("update"):
                    vr, vp, vo, vk = T.axis.remap("SSSR", [r, p, o, k])
                    C[vr, vp, vo] = C[vr, vp, vo] + T.Cast(
                        "int32", A[vr * sh, vp * sw, vk]) * T.Cast(
                        "int32", B[0, 0, vk // 4, vo, vk % 4])

    return pointwise_desc if kh == kw == 1 else tile_desc


def _tile_impl(kh: int, kw: int, cp: int, kc: int, rows: int, sh: int, sw: int):
    """Configure the tiles, zero 0-3, walk the window and channel steps (two A and two B
    loads, four multiplies each), store the four accumulator tiles."""
    ra, ca = (ROW_BLOCK - 1) * sh + kh, (rows - 1) * sw + kw
    words = config_words(rows, kc)
    w0, w2, w3, w6 = (words[i] for i in (0, 2, 3, 6))
    steps = cp // kc

    @T.prim_func(s_tir=True)
    def tile_impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        sa0 = T.int32()
        sa1 = T.int32()
        sb0 = T.int32()
        sb1 = T.int32()
        sb2 = T.int32()
        A = T.match_buffer(a, (ra, ca, cp), "uint8", offset_factor=1, strides=[sa0, sa1, 1])
        B = T.match_buffer(b, (kh, kw, cp // 4, OC_BLOCK, 4), "int8", offset_factor=1,
                           strides=[sb0, sb1, sb2, 4, 1])
        C = T.match_buffer(c, (ROW_BLOCK, rows, OC_BLOCK), "int32", offset_factor=1,
                           strides=[rows * OC_BLOCK, OC_BLOCK, 1])
        with T.sblock("root"):
            T.reads(C[0:ROW_BLOCK, 0:rows, 0:OC_BLOCK], A[0:ra, 0:ca, 0:cp],
                    B[0:kh, 0:kw, 0:cp // 4, 0:OC_BLOCK, 0:4])
            T.writes(C[0:ROW_BLOCK, 0:rows, 0:OC_BLOCK])
            cfg = T.alloc_buffer((8,), "int64", scope="local")
            cfg[0] = T.int64(w0)
            cfg[1] = T.int64(0)
            cfg[2] = T.int64(w2)
            cfg[3] = T.int64(w3)
            cfg[4] = T.int64(0)
            cfg[5] = T.int64(0)
            cfg[6] = T.int64(w6)
            cfg[7] = T.int64(0)
            _call("llvm.x86.ldtilecfg", T.address_of(cfg[0]))
            _call("llvm.x86.tilezero", T.uint8(0))
            _call("llvm.x86.tilezero", T.uint8(1))
            _call("llvm.x86.tilezero", T.uint8(2))
            _call("llvm.x86.tilezero", T.uint8(3))
            for i, j, s in T.grid(kh, kw, steps):
                _call("llvm.x86.tileloadd64", T.uint8(4), T.address_of(A[i, j, s * kc]),
                      T.Cast("int64", sw * sa1))
                _call("llvm.x86.tileloadd64", T.uint8(5), T.address_of(A[sh + i, j, s * kc]),
                      T.Cast("int64", sw * sa1))
                _call("llvm.x86.tileloadd64", T.uint8(6),
                      T.address_of(B[i, j, s * (kc // 4), 0, 0]), T.int64(OC_BLOCK * 4))
                _call("llvm.x86.tileloadd64", T.uint8(7),
                      T.address_of(B[i, j, s * (kc // 4), 16, 0]), T.int64(OC_BLOCK * 4))
                _call("llvm.x86.tdpbusd", T.uint8(0), T.uint8(4), T.uint8(6))
                _call("llvm.x86.tdpbusd", T.uint8(1), T.uint8(4), T.uint8(7))
                _call("llvm.x86.tdpbusd", T.uint8(2), T.uint8(5), T.uint8(6))
                _call("llvm.x86.tdpbusd", T.uint8(3), T.uint8(5), T.uint8(7))
            _call("llvm.x86.tilestored64", T.uint8(0), T.address_of(C[0, 0, 0]),
                  T.int64(OC_BLOCK * 4))
            _call("llvm.x86.tilestored64", T.uint8(1), T.address_of(C[0, 0, 16]),
                  T.int64(OC_BLOCK * 4))
            _call("llvm.x86.tilestored64", T.uint8(2), T.address_of(C[1, 0, 0]),
                  T.int64(OC_BLOCK * 4))
            _call("llvm.x86.tilestored64", T.uint8(3), T.address_of(C[1, 0, 16]),
                  T.int64(OC_BLOCK * 4))
            _call("llvm.x86.tilerelease")

    return tile_impl


@functools.cache
def _intrinsics(kh: int, kw: int, cp: int, kc: int, rows: int, sh: int, sw: int) -> tuple:
    """Register (once) the tensor intrinsics of one layer shape, ``init`` and ``tile``;
    return their names."""
    tag = f"aiq_amx_k{kh}x{kw}_c{cp}_kc{kc}_r{rows}_s{sh}x{sw}"
    return (register_once(f"{tag}_init", *_init_intrin(rows)),
            register_once(f"{tag}_tile", _tile_desc(kh, kw, cp, rows, sh, sw),
                          _tile_impl(kh, kw, cp, kc, rows, sh, sw)))


def schedule_amx(func: tirx.PrimFunc, spec: ConvSpec, plan: AmxPlan) -> tirx.PrimFunc:
    """Schedule the TE kernel (``pad`` if present, ``acc``, ``out``): one parallel task per
    (image, output row pair, column tile, 32 output channels), the accumulation tensorized
    into tile multiplies, the epilogue vectorized over the 32 channels."""
    sch = tvm.s_tir.Schedule(func)
    out = sch.get_sblock("out")
    acc = sch.get_sblock("acc")
    b, i, j, o = sch.get_loops(out)
    i2, r = sch.split(i, [None, ROW_BLOCK])
    jt, p = sch.split(j, [None, plan.rows])
    ob, oo = sch.split(o, [None, OC_BLOCK])
    # Output positions outermost: each core reads the input rows the previous layer's
    # kernels (parallel over positions too) left in its own caches, and a block's two rows
    # of activations stay in L1 across the channel blocks. Channel blocks outermost made
    # each core read the whole input: ResNet-50 INT8 ran 1.27x the vpdpbusd kernels' speed
    # at batch 8 that way, 1.97x this way (docs/runs/s25/).
    sch.reorder(b, i2, jt, ob, r, p, oo)
    task = sch.fuse(b, i2, jt, ob)
    sch.parallel(task)
    sch.vectorize(oo)
    sch.compute_at(acc, task)
    loops = sch.get_loops(acc)
    under = loops[1:]  # below the task loop
    # compute_at drops unit loops: the row-pair loop is the first of extent 2 followed by
    # the tile's rows (the image and tile loops above it have extent 1 here)
    extents = [int(sch.get(lp).extent) for lp in under]
    row = next(under[k] for k in range(len(under) - 1)
               if extents[k] == ROW_BLOCK and extents[k + 1] == plan.rows)
    init = sch.decompose_reduction(acc, row)
    init_name, tile_name = _intrinsics(spec.KH, spec.KW, plan.cp, plan.kc, plan.rows,
                                       *spec.stride)
    sch.tensorize(sch.get_loops(init)[-3], init_name)
    sch.tensorize(row, tile_name)
    if plan.need_pad:  # rows in parallel, channels in 64-byte vectors
        pad = sch.get_sblock("pad")
        pb, pi, _, pc = sch.get_loops(pad)
        sch.parallel(sch.fuse(pb, pi))
        sch.vectorize(sch.split(pc, [None, plan.kc])[1])
    return sch.mod["main"]


def request_tile_permission(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """``func`` asking Linux for the AMX tile state on entry (see the module docstring), as
    the first statement of its root block (passes that open the kernel as a schedule need
    the root block to stay the body)."""
    ask = tirx.Evaluate(tirx.call_extern("int64", "syscall", tirx.const(SYS_ARCH_PRCTL, "int64"),
                                         tirx.const(ARCH_REQ_XCOMP_PERM, "int64"),
                                         tirx.const(XFEATURE_XTILEDATA, "int64")))
    realize = func.body
    root = realize.block
    block = SBlock(list(root.iter_vars), list(root.reads), list(root.writes), root.name_hint,
                   tirx.SeqStmt([ask, root.body]), root.init, list(root.alloc_buffers),
                   list(root.match_buffers), root.annotations)
    return func.with_body(SBlockRealize(list(realize.iter_values), realize.predicate, block))
