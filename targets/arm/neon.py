"""AArch64 NEON int8 dot-product kernels: tensor intrinsics and the kernel library's dot families.

The kernel library (:mod:`aiq_tvm.targets.x86`) builds conv2d/dense kernels for any target from
the tables of :mod:`~aiq_tvm.targets.x86.isa`; this module registers the three AArch64 int8
dot-product families there (keys are ``TargetCaps.int8_dot``), so integer layers of an aarch64
build run these instructions on 128-bit vectors (4 int32 lanes):

=================  ===============  ==================================================  ======
``caps.int8_dot``  target feature   instruction per block of 4 outputs x 4 channels     offset
=================  ===============  ==================================================  ======
``smmla``          ``+i8mm``        ``usdot`` (unsigned activations x signed weights)   0
``sdot``           ``+dotprod``     ``sdot`` on activations flipped by ``XOR 0x80``    128
``smull``          AdvSIMD only     flip, ``smull`` x2, ``addp``, ``sadalp``             128
=================  ===============  ==================================================  ======

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

``smmla`` itself (a 2 x 2 output tile from 2 x 8 byte matrices) is not used: its accumulator
interleaves two output positions with two channels, which the library's register blocks
(positions x channel vectors) do not hold. ``+i8mm`` targets run ``usdot`` at the ``sdot``
rate and save the flip.

Weight layouts are the library's ``v8`` (int8: 4 channels of 4 output channels, 16 bytes) and
``v4`` (int4: 8 channels; byte ``j`` of an output channel holds channels ``j`` and ``j + 4``
as ``q + 8``).
"""

from __future__ import annotations

import functools

from tvm.script import tirx as T

from aiq_tvm.schemes import FULL_INT8_QMAX

from ..x86.common import WeightFormat
from ..x86.isa import DotFamily, Throughput, register_dot_family
from ..x86.vnni import register_once

__all__ = ["ACT_OFFSET", "FAMILY_INSTRUCTION", "LANES", "intrinsic_for", "neon_intrin"]

LANES = 4  # int32 lanes of a 128-bit NEON register
# int8 dot family (TargetCaps.int8_dot) -> the instruction its blocks use.
FAMILY_INSTRUCTION = {"smmla": "usdot", "sdot": "sdot", "smull": "smull"}
# Activation offset each instruction needs (uint8 a enters as a - offset).
ACT_OFFSET = {"usdot": 0, "sdot": 128, "smull": 128}
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


_BUILDERS = {"u8i8": _u8i8, "u8i4": _u8i4}


@functools.cache
def neon_intrin(instr: str, kind: str) -> str:
    """Name of the NEON tensor intrinsic ``kind`` (``"u8i8"``: ``v8`` blocks of 4 channels,
    ``"u8i4"``: ``v4`` blocks of 8) built on ``instr`` (``"usdot"``, ``"sdot"``,
    ``"smull"``), registered on first use. Its description multiplies ``a - ACT_OFFSET[instr]``
    by the weight codes."""
    if instr not in ACT_OFFSET:
        raise ValueError(f"unknown NEON dot instruction {instr!r} (known: {', '.join(ACT_OFFSET)})")
    if kind not in _BUILDERS:
        raise ValueError(f"unknown NEON intrinsic kind {kind!r} (known: {', '.join(_BUILDERS)})")
    desc, impl = _BUILDERS[kind](instr)
    return register_once(f"aiq_neon_{instr}_{kind}", desc, impl)


def intrinsic_for(target, kind: str = "u8i8") -> str:
    """The intrinsic the kernels of ``target`` (an aarch64 target) use for ``kind``."""
    from aiq_tvm.targets import capabilities

    caps = capabilities(target)
    if caps.arch != "aarch64":
        raise ValueError(f"NEON intrinsics need an aarch64 target, got {caps.arch} "
                         f"({caps.triple or caps.mcpu})")
    return neon_intrin(FAMILY_INSTRUCTION[caps.int8_dot], kind)


# ---------------------------------------------------------------------------------------------
# Dot families of the kernel library
# ---------------------------------------------------------------------------------------------

# Vector ops per 4x4 (int8) or 4x8 (int4) block, besides the broadcast: usdot/sdot one per 4
# channels; smull two smull, addp and sadalp per 4 channels (int4: the high nibbles' smull
# fold into smlal).
_BLOCK_OPS = {"usdot": (1.0, 2.0), "sdot": (1.0, 2.0), "smull": (4.0, 6.0)}


def _formats(instr: str):
    def formats(bits: int, lanes: int, reduction: int, tp: Throughput) -> list[WeightFormat]:
        if lanes != LANES:
            raise ValueError(f"NEON kernels have {LANES} lanes, got {lanes}")
        off = ACT_OFFSET[instr]
        bcast = 2.0 if off else 1.0  # the flip is one eor per broadcast
        ops8, ops4 = _BLOCK_OPS[instr]
        lat = tp.fma_latency
        if bits == 8:
            return [WeightFormat(f"{instr}8", "v8", 4, "int32", "uint8", 0,
                                 neon_intrin(instr, "u8i8"), dot_ops=ops8, acc_latency=lat,
                                 bcast_ops=bcast, act_offset=off)]  # fmt: skip
        # int4: mask and shift, two byte subtractions per weight vector.
        return [WeightFormat(f"{instr}4", "v4", 8, "int32", "uint8", 4,
                             neon_intrin(instr, "u8i4"), dot_ops=ops4, acc_latency=lat,
                             bcast_ops=2 * bcast, weight_regs=2, act_offset=off)]  # fmt: skip

    return formats


for _family, _instr in FAMILY_INSTRUCTION.items():
    register_dot_family(DotFamily(_family, FULL_INT8_QMAX, _formats(_instr)))
