"""AArch64 NEON int8 dot-product kernels: tensor intrinsics and the kernel library's dot families.

The kernel library (:mod:`aiq_tvm.targets.x86`) builds conv2d/dense kernels for any target from
the tables of :mod:`~aiq_tvm.targets.x86.isa`; this module registers the three AArch64 int8
dot-product families there (keys are ``TargetCaps.int8_dot``), so integer layers of an aarch64
build run these instructions on 128-bit vectors (4 int32 lanes):

=================  ===============  ==================================================  ======
``caps.int8_dot``  target feature   instruction of a block (4 int32 outputs)            offset
=================  ===============  ==================================================  ======
``smmla``          ``+i8mm``        ``usmmla`` (2 positions x 2 channels x 8 input      0
                                    channels), else ``usdot`` (unsigned activations x
                                    signed weights)
``sdot``           ``+dotprod``     ``sdot`` on activations flipped by ``XOR 0x80``    128
``smull``          AdvSIMD only     flip, ``smull`` x2, ``addp``, ``sadalp``             128
=================  ===============  ==================================================  ======

``sdot`` and ``usdot`` also have 16-channel int8 blocks (formats ``sdot8x4`` / ``usdot8x4``,
intrinsic kind ``u8i8x4``, weights as four ``v8`` blocks: layout ``v8b``): one 16-byte
activation load (and one flip) per position feeds four dots that take their 4 bytes as a
lane of it, the instructions' indexed form (``usdot``'s is written ``sudot``), instead of a
4-byte load, ``dup`` and ``eor`` before every dot. int4 keeps unpacking in the loop: no
decode-once formats here (decoding into these blocks' layout was tried; its decode stage
compiled to per-byte lane loads on aarch64 and executed up to 6x int8's instructions per
layer; docs/arm.md).

``usmmla`` (not ``smmla``: the activations are uint8, the weights int8, so the unsigned x
signed form needs no offset) multiplies a 2 x 8 byte matrix (8 input channels of two output
positions) by an 8 x 2 one (two output channels) into a 2 x 2 int32 tile, twice the
multiply-adds of a ``usdot``. Its formats (``usmmla8``: ``v8`` layout with groups of 8
channels; ``usmmla4``: ``v4`` with groups of 16, low nibbles channels 0-7, high nibbles 8-15,
two ``usmmla``) set ``WeightFormat.pairs``: the planner pairs neighbouring output columns of a
conv (an even column tile; an odd width computes one padding column; a column stride ``s > 1``
stores the padded input copy in ``s`` column phases so that a pair's input columns are
neighbours again) or rows of a dense layer with an even row count, and the schedule lays the
accumulator out in the 2 x 2 tiles (one register each,
:func:`~aiq_tvm.targets.x86.schedules.apply_tiled`). Dense layers with an odd row count
(batch 1) and convs with an output width of 1 keep the ``usdot`` formats. The two
positions' 8 activation bytes are loaded separately (a symbolic row stride in the intrinsic)
and joined into one register.

``sdot`` and ``smull`` multiply signed bytes only, so the uint8 activations ``a`` enter as the
int8 ``a - 128`` (one ``eor`` per broadcast). The kernel then accumulates
``sum (a - 128) * w`` exactly; the weight format's ``act_offset`` (128) tells the kernel
builder, which writes the same offset into the kernel's TE definition (so the tensorized
block and the unscheduled kernel agree) and folds it into the zero-point correction constant:
``corr = (zp - 128) * sum(w)``. ``acc - corr`` is ``sum (a - zp) * w`` bit for bit, as on every
other target, with no per-block correction instructions.

Exactness: 8-bit weight codes are ``|q| <= 127``. ``smull`` products of ``|a - 128| <= 128``
and ``|q| <= 127`` are at most 16256, and ``addp`` adds two of them (32512 < 2**15) before
``sadalp`` widens to int32. int4 codes (``|q| <= 7``) are unpacked to int8 (mask / shift and
subtract 8, no scaling), so int4 has no reduction-length limit on any family.

Weight layouts are the library's ``v8`` (int8: 4 channels of 4 output channels, 16 bytes;
``usmmla``: 8 channels) and ``v4`` (int4: 8 channels; byte ``j`` of an output channel holds
channels ``j`` and ``j + 4`` as ``q + 8``; ``usmmla``: 16 channels, ``j`` and ``j + 8``).
"""

from __future__ import annotations

import functools

from tvm.script import tirx as T

from aiq_tvm.schemes import FULL_INT8_QMAX

from ..x86.common import WeightFormat
from ..x86.isa import DotFamily, Throughput, register_dot_family
from ..x86.vnni import register_once

__all__ = ["ACT_OFFSET", "FAMILY_INSTRUCTION", "LANES", "PAIR_INSTRUCTION", "intrinsic_for",
           "neon_intrin"]

LANES = 4  # int32 lanes of a 128-bit NEON register
# int8 dot family (TargetCaps.int8_dot) -> the instruction of its 4-channel blocks (one
# position), and of its 2 x 2 blocks (two positions x two channels) where it has them.
FAMILY_INSTRUCTION = {"smmla": "usdot", "sdot": "sdot", "smull": "smull"}
PAIR_INSTRUCTION = {"smmla": "usmmla"}
PAIR_INSTRUCTIONS = frozenset(PAIR_INSTRUCTION.values())
# Instructions with an indexed form (a 32-bit lane of a register as the 4 bytes of every
# lane): their 16-channel blocks load the activations once (``_u8i8x4``).
LANE_DOT_INSTRUCTIONS = frozenset({"sdot", "usdot"})
# Activation offset each instruction needs (uint8 a enters as a - offset).
ACT_OFFSET = {"usmmla": 0, "usdot": 0, "sdot": 128, "smull": 128}
_FLIP = -2139062144  # int32 0x80808080: XOR maps each uint8 byte a to the int8 a - 128


def _act(a, offset: int):
    """An activation byte as the instruction sees it, in the description's int32 arithmetic
    (the kernel's TE definition writes the same expression)."""
    v = T.cast(a, "int32")
    return v - offset if offset else v


def _bcast(A, start: int, words: int, flip: bool):
    """Bytes ``A[start:start + 4]`` in every one of ``words`` 32-bit lanes, as int8 (flipped
    to ``a - 128`` for the signed instructions)."""
    v = T.broadcast(T.reinterpret(A.vload([start], "uint8x4"), dtype="int32"), words)
    if flip:
        v = T.bitwise_xor(v, T.broadcast(T.int32(_FLIP), words))
    return T.reinterpret(v, dtype=f"int8x{4 * words}")


def _nibbles(B, row: int, nbytes: int, high: bool):
    """int8 codes ``q`` of the low (channels 0-3) or high (4-7) nibbles of ``nbytes`` packed
    bytes from output channel ``row`` on: ``(b & 15) - 8`` or ``(b >> 4) - 8``."""
    u8, i8 = f"uint8x{nbytes}", f"int8x{nbytes}"
    b = B.vload([row, 0], u8)
    nib = T.shift_right(b, T.broadcast(T.uint8(4), nbytes)) if high else T.bitwise_and(
        b, T.broadcast(T.uint8(15), nbytes))
    return T.reinterpret(nib, dtype=i8) - T.broadcast(T.int8(8), nbytes)


def _int8_weights(B, row: int, nbytes: int):
    return B.vload([row, 0], f"int8x{nbytes}")


def _dot4(instr: str, acc, a16, w16):
    """``acc[i] += sum_k a16[4i + k] * w16[4i + k]`` with ``usdot`` / ``sdot``."""
    return T.call_llvm_pure_intrin("int32x4", f"llvm.aarch64.neon.{instr}.v4i32.v16i8",
                                   acc, a16, w16)


def _smull8(a8, w8):
    return T.call_llvm_pure_intrin("int16x8", "llvm.aarch64.neon.smull.v8i16", a8, w8)


def _pairs_to_acc(acc, p01, p23):
    """``p01`` holds int16 products (or sums) of channels 0-1, ``p23`` of channels 2-3, four
    per channel: ``addp`` pairs them, ``saddlp`` (fused into ``sadalp``) sums each channel."""
    return acc + T.call_llvm_pure_intrin(
        "int32x4", "llvm.aarch64.neon.saddlp.v4i32.v8i16",
        T.call_llvm_pure_intrin("int16x8", "llvm.aarch64.neon.addp.v8i16", p01, p23))


def _u8i8_block(instr: str, A, B, C):
    """The accumulator vector after one int8 block: ``C + sum_k (a_k - offset) * B[:, k]``."""
    acc = C.vload([0], "int32x4")
    if instr == "smull":
        a8 = _bcast(A, 0, 2, True)
        return _pairs_to_acc(acc, _smull8(a8, _int8_weights(B, 0, 8)),
                             _smull8(a8, _int8_weights(B, 2, 8)))
    return _dot4(instr, acc, _bcast(A, 0, 4, ACT_OFFSET[instr] != 0), _int8_weights(B, 0, 16))


def _u8i4_block(instr: str, A, B, C):
    """The same for one int4 block: low nibbles (channels 0-3) with activations 0-3, high
    nibbles (4-7) with activations 4-7."""
    acc = C.vload([0], "int32x4")
    if instr == "smull":
        # int4 products are small (|p| <= 128 * 7): the low- and high-nibble products of a
        # channel add in int16 (smull + smlal) before addp / sadalp.
        lo, hi = _bcast(A, 0, 2, True), _bcast(A, 4, 2, True)
        return _pairs_to_acc(
            acc,
            _smull8(lo, _nibbles(B, 0, 8, False)) + _smull8(hi, _nibbles(B, 0, 8, True)),
            _smull8(lo, _nibbles(B, 2, 8, False)) + _smull8(hi, _nibbles(B, 2, 8, True)),
        )
    flip = ACT_OFFSET[instr] != 0
    acc = _dot4(instr, acc, _bcast(A, 0, 4, flip), _nibbles(B, 0, 16, False))
    return _dot4(instr, acc, _bcast(A, 4, 4, flip), _nibbles(B, 0, 16, True))


def _u8i8(instr: str):
    off = ACT_OFFSET[instr]

    @T.prim_func(s_tir=True)
    def desc(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((4, 4), "int8", offset_factor=1),
        C: T.Buffer((4,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:4], A[0:4], B[0:4, 0:4])
            T.writes(C[0:4])
            for i, k in T.grid(4, 4):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + _act(A[vk], off) * T.cast(B[vi, vk], "int32")

    @T.prim_func(s_tir=True)
    def impl(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((4, 4), "int8", offset_factor=1),
        C: T.Buffer((4,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:4], A[0:4], B[0:4, 0:4])
            T.writes(C[0:4])
            C[T.ramp(T.int32(0), 1, 4)] = _u8i8_block(instr, A, B, C)

    return desc, impl


def _lane_dots(instr: str, acc, A, B, blocks: int):
    """``blocks`` dots of 4 channels from one 16-byte activation load: the flip (``sdot``) is
    one ``eor`` for all of them and each dot takes its 4 bytes as a lane of that register
    (the indexed form ``sdot vd.4s, vn.16b, vm.4b[j]``: no ``dup`` per block). The lane
    operand goes last, the position of LLVM's indexed-form patterns."""
    a = T.reinterpret(A.vload([0], f"uint8x{4 * blocks}"), dtype=f"int32x{blocks}")
    if ACT_OFFSET[instr]:
        a = T.bitwise_xor(a, T.broadcast(T.int32(_FLIP), blocks))
    for j in range(blocks):
        lane = T.reinterpret(T.Shuffle([a], [j] * LANES), dtype="int8x16")
        w = B.vload([j, 0, 0], "int8x16")
        # usdot multiplies unsigned x signed; its indexed form (sudot) takes the unsigned
        # operand as the lane: the same product, operands swapped.
        acc = _dot4(instr, acc, w, lane) if instr == "sdot" else _dot4(instr, acc, lane, w)
    return acc


def _u8i8x4(instr: str):
    """16 input channels per block: four ``v8`` blocks of 4 channels (``B[4, 4, 4]``, the
    blocks ``ocb * 4`` bytes apart: layout ``v8b``) against one 16-byte activation load."""
    off = ACT_OFFSET[instr]
    blocks = 4
    red = 4 * blocks

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (red,), "uint8", offset_factor=1)
        B = T.match_buffer(b, (blocks, 4, 4), "int8", offset_factor=1,
                           strides=[T.int32(), 4, 1])  # fmt: skip
        C = T.match_buffer(c, (4,), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:4], A[0:red], B[0:blocks, 0:4, 0:4])
            T.writes(C[0:4])
            for i, k in T.grid(4, red):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + _act(A[vk], off) * T.cast(B[vk // 4, vi, vk % 4], "int32")

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (red,), "uint8", offset_factor=1)
        B = T.match_buffer(b, (blocks, 4, 4), "int8", offset_factor=1,
                           strides=[T.int32(), 4, 1])  # fmt: skip
        C = T.match_buffer(c, (4,), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:4], A[0:red], B[0:blocks, 0:4, 0:4])
            T.writes(C[0:4])
            C[T.ramp(T.int32(0), 1, 4)] = _lane_dots(instr, C.vload([0], "int32x4"), A, B,
                                                     blocks)

    return desc, impl


def _u8i4(instr: str):
    off = ACT_OFFSET[instr]

    @T.prim_func(s_tir=True)
    def desc(
        A: T.Buffer((8,), "uint8", offset_factor=1),
        B: T.Buffer((4, 4), "uint8", offset_factor=1),
        C: T.Buffer((4,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:4], A[0:8], B[0:4, 0:4])
            T.writes(C[0:4])
            for i, k in T.grid(4, 8):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + _act(A[vk], off) * (
                        T.bitwise_and(
                            T.shift_right(T.cast(B[vi, vk % 4], "int32"), vk // 4 * 4), 15
                        )
                        - 8
                    )

    @T.prim_func(s_tir=True)
    def impl(
        A: T.Buffer((8,), "uint8", offset_factor=1),
        B: T.Buffer((4, 4), "uint8", offset_factor=1),
        C: T.Buffer((4,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:4], A[0:8], B[0:4, 0:4])
            T.writes(C[0:4])
            C[T.ramp(T.int32(0), 1, 4)] = _u8i4_block(instr, A, B, C)

    return desc, impl


# ---------------------------------------------------------------------------------------------
# usmmla: 2 positions x 2 output channels per instruction
# ---------------------------------------------------------------------------------------------


def _pair_rows(A, k0: int):
    """Activation bytes ``k0 .. k0 + 7`` of both positions (rows of ``A``, ``sa`` bytes apart)
    as the 16-byte left operand of ``usmmla``: one 8-byte load per position."""
    return T.Shuffle([A.vload([0, k0], "uint8x8"), A.vload([1, k0], "uint8x8")], list(range(16)))


def _mmla(acc, a16, w16):
    """``acc[2p + o] += sum_k a16[8p + k] * w16[8o + k]`` (unsigned x signed bytes)."""
    return T.call_llvm_pure_intrin("int32x4", "llvm.aarch64.neon.usmmla.v4i32.v16i8",
                                   acc, a16, w16)


def _mm_u8i8_block(A, B, C):
    return _mmla(C.vload([0, 0], "int32x4"), _pair_rows(A, 0), B.vload([0, 0], "int8x16"))


def _mm_u8i4_block(A, B, C):
    """Two ``usmmla``: channels 0-7 from the low nibbles of the 2 x 8 packed bytes, 8-15 from
    the high ones."""
    acc = _mmla(C.vload([0, 0], "int32x4"), _pair_rows(A, 0), _nibbles(B, 0, 16, False))
    return _mmla(acc, _pair_rows(A, 8), _nibbles(B, 0, 16, True))


def _mm_u8i8(instr: str):
    """2 positions (rows of ``A``, a symbolic stride apart) x 2 output channels x 8 input
    channels into the 2 x 2 accumulator tile ``C[position, channel]`` (contiguous: the
    kernels lay their accumulators out in these tiles)."""

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        sa = T.int32()
        A = T.match_buffer(a, (2, 8), "uint8", offset_factor=1, strides=[sa, 1])
        B = T.match_buffer(b, (2, 8), "int8", offset_factor=1)
        C = T.match_buffer(c, (2, 2), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:2, 0:2], A[0:2, 0:8], B[0:2, 0:8])
            T.writes(C[0:2, 0:2])
            for p, o, k in T.grid(2, 2, 8):
                with T.sblock("update"):
                    vp, vo, vk = T.axis.remap("SSR", [p, o, k])
                    C[vp, vo] = C[vp, vo] + T.cast(A[vp, vk], "int32") * T.cast(B[vo, vk],
                                                                                  "int32")

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        sa = T.int32()
        A = T.match_buffer(a, (2, 8), "uint8", offset_factor=1, strides=[sa, 1])
        B = T.match_buffer(b, (2, 8), "int8", offset_factor=1)
        C = T.match_buffer(c, (2, 2), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:2, 0:2], A[0:2, 0:8], B[0:2, 0:8])
            T.writes(C[0:2, 0:2])
            T.buffer_store(C, _mm_u8i8_block(A, B, C), [0, T.ramp(0, 1, 4)])

    return desc, impl


def _mm_u8i4(instr: str):
    """The same for 16 input channels of packed int4 weights: byte ``j`` of an output channel
    holds channels ``j`` (low nibble) and ``j + 8`` (high) as ``q + 8``."""

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        sa = T.int32()
        A = T.match_buffer(a, (2, 16), "uint8", offset_factor=1, strides=[sa, 1])
        B = T.match_buffer(b, (2, 8), "uint8", offset_factor=1)
        C = T.match_buffer(c, (2, 2), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:2, 0:2], A[0:2, 0:16], B[0:2, 0:8])
            T.writes(C[0:2, 0:2])
            for p, o, k in T.grid(2, 2, 16):
                with T.sblock("update"):
                    vp, vo, vk = T.axis.remap("SSR", [p, o, k])
                    C[vp, vo] = C[vp, vo] + T.cast(A[vp, vk], "int32") * (
                        T.bitwise_and(
                            T.shift_right(T.cast(B[vo, vk % 8], "int32"), vk // 8 * 4), 15
                        )
                        - 8
                    )

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        sa = T.int32()
        A = T.match_buffer(a, (2, 16), "uint8", offset_factor=1, strides=[sa, 1])
        B = T.match_buffer(b, (2, 8), "uint8", offset_factor=1)
        C = T.match_buffer(c, (2, 2), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:2, 0:2], A[0:2, 0:16], B[0:2, 0:8])
            T.writes(C[0:2, 0:2])
            T.buffer_store(C, _mm_u8i4_block(A, B, C), [0, T.ramp(0, 1, 4)])

    return desc, impl


_BUILDERS = {"u8i8": _u8i8, "u8i4": _u8i4, "u8i8x4": _u8i8x4}
_PAIR_BUILDERS = {"u8i8": _mm_u8i8, "u8i4": _mm_u8i4}


@functools.cache
def neon_intrin(instr: str, kind: str) -> str:
    """Name of the NEON tensor intrinsic ``kind`` (``"u8i8"``: ``v8`` blocks of 4 channels,
    ``"u8i4"``: ``v4`` blocks of 8; with ``"usmmla"`` 2 positions x 2 channels x 8 or 16
    channels) built on ``instr`` (``"usmmla"``, ``"usdot"``, ``"sdot"``, ``"smull"``),
    registered on first use. Its description multiplies ``a - ACT_OFFSET[instr]`` by the
    weight codes."""
    if instr not in ACT_OFFSET:
        raise ValueError(f"unknown NEON dot instruction {instr!r} (known: {', '.join(ACT_OFFSET)})")
    if kind not in _BUILDERS:
        raise ValueError(f"unknown NEON intrinsic kind {kind!r} (known: {', '.join(_BUILDERS)})")
    desc, impl = (_PAIR_BUILDERS if instr in PAIR_INSTRUCTIONS else _BUILDERS)[kind](instr)
    return register_once(f"aiq_neon_{instr}_{kind}", desc, impl)


def intrinsic_for(target, kind: str = "u8i8", pairs: bool = False) -> str:
    """The intrinsic the kernels of ``target`` (an aarch64 target) use for ``kind``: the
    4-channel block's, or with ``pairs`` the 2 x 2 block's (``ValueError`` without one)."""
    from aiq_tvm.targets import capabilities

    caps = capabilities(target)
    if caps.arch != "aarch64":
        raise ValueError(f"NEON intrinsics need an aarch64 target, got {caps.arch} "
                         f"({caps.triple or caps.mcpu})")
    if pairs:
        if caps.int8_dot not in PAIR_INSTRUCTION:
            raise ValueError(f"int8 family {caps.int8_dot!r} has no 2 x 2 blocks")
        return neon_intrin(PAIR_INSTRUCTION[caps.int8_dot], kind)
    return neon_intrin(FAMILY_INSTRUCTION[caps.int8_dot], kind)


# ---------------------------------------------------------------------------------------------
# Dot families of the kernel library
# ---------------------------------------------------------------------------------------------

# Vector ops per 4x4 (int8) or 4x8 (int4) block, besides the broadcast: usdot/sdot one per 4
# channels; smull two smull, addp and sadalp per 4 channels (int4: the high nibbles' smull
# fold into smlal).
_BLOCK_OPS = {"usdot": (1.0, 2.0), "sdot": (1.0, 2.0), "smull": (4.0, 6.0)}


def _pair_formats(instr: str, bits: int, lat: float) -> list[WeightFormat]:
    """``usmmla`` blocks: 2 positions x 2 channels x 8 input channels (int8, ``v8`` layout
    with groups of 8) or x 16 (int4, ``v4`` with groups of 16: low nibbles channels 0-7, high
    8-15) per instruction pair. Per accumulator vector (4 outputs) and step that is one
    ``usmmla`` per 8 channels, twice the channels of a ``usdot``; one 8-byte load per position
    (and an ``ins`` per pair) replaces the 4-byte broadcast. Kernels use them where the
    positions pair up (``WeightFormat.pairs``), else the 4-channel formats."""
    if bits == 8:
        return [WeightFormat(f"{instr}8", "v8", 8, "int32", "uint8", 0, neon_intrin(instr, "u8i8"),
                             dot_ops=1.0, acc_latency=lat, bcast_ops=1.0, pairs=True)]  # fmt: skip
    return [WeightFormat(f"{instr}4", "v4", 16, "int32", "uint8", 4, neon_intrin(instr, "u8i4"),
                         dot_ops=2.0, acc_latency=lat, bcast_ops=2.0, weight_regs=2,
                         pairs=True)]  # fmt: skip


def _formats(family: str):
    instr = FAMILY_INSTRUCTION[family]
    pair = PAIR_INSTRUCTION.get(family)

    def formats(bits: int, lanes: int, reduction: int, tp: Throughput) -> list[WeightFormat]:
        if lanes != LANES:
            raise ValueError(f"NEON kernels have {LANES} lanes, got {lanes}")
        paired = _pair_formats(pair, bits, tp.fma_latency) if pair else []
        return paired + _block_formats(instr, bits, tp)

    return formats


def _lane_format(instr: str, tp: Throughput) -> WeightFormat:
    """The 16-channel int8 blocks of ``instr``: four dots per step, one 16-byte activation
    load (and one flip) per position instead of four 4-byte broadcasts (and four flips)."""
    off = ACT_OFFSET[instr]
    # Per position and 16-channel step: the flip (one eor, sdot only) and a quarter of a
    # broadcast for the 16-byte load the four dots share; four weight vectors per channel
    # vector, each loaded once per step.
    return WeightFormat(f"{instr}8x4", "v8b", 16, "int32", "uint8", 0,
                        neon_intrin(instr, "u8i8x4"), dot_ops=4 * _BLOCK_OPS[instr][0],
                        acc_latency=tp.fma_latency, bcast_ops=1.25 if off else 0.25,
                        weight_regs=4, weight_loads=4, act_offset=off)  # fmt: skip


def _block_formats(instr: str, bits: int, tp: Throughput) -> list[WeightFormat]:
    """The 4-channel formats of ``instr`` (one position per block)."""
    off = ACT_OFFSET[instr]
    bcast = 2.0 if off else 1.0  # the flip is one eor per broadcast
    ops8, ops4 = _BLOCK_OPS[instr]
    lat = tp.fma_latency
    if bits == 8:
        fmts = [WeightFormat(f"{instr}8", "v8", 4, "int32", "uint8", 0,
                             neon_intrin(instr, "u8i8"), dot_ops=ops8, acc_latency=lat,
                             bcast_ops=bcast, act_offset=off)]  # fmt: skip
        if instr in LANE_DOT_INSTRUCTIONS:
            fmts.append(_lane_format(instr, tp))
        return fmts
    # int4: mask and shift, two byte subtractions per weight vector.
    return [WeightFormat(f"{instr}4", "v4", 8, "int32", "uint8", 4,
                         neon_intrin(instr, "u8i4"), dot_ops=ops4, acc_latency=lat,
                         bcast_ops=2 * bcast, weight_regs=2, act_offset=off)]  # fmt: skip


for _family in FAMILY_INSTRUCTION:
    register_dot_family(DotFamily(_family, FULL_INT8_QMAX, _formats(_family)))
