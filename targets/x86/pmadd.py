"""``vpmaddubsw`` + ``vpmaddwd`` tensor intrinsics: the int8 dot product without VNNI.

AVX2 (ymm, ``llvm.x86.avx2.pmadd.ub.sw`` / ``llvm.x86.avx2.pmadd.wd``) and AVX-512BW (zmm,
``llvm.x86.avx512.pmaddubs.w.512`` / ``llvm.x86.avx512.pmaddw.d.512``) have no ``vpdpbusd``. The
production recipe (oneDNN, ONNX Runtime's MLAS) multiplies uint8 activations by int8 weights
with ``vpmaddubsw`` (adjacent byte products summed into int16, **with signed saturation**),
widens the int16 pair sums with ``vpmaddwd`` against a vector of ones (adjacent int16 summed
into int32, exact), and adds the result to the int32 accumulator. The weight layout is the
VNNI one (4 input channels per 32-bit lane), so the same packed blocks and schedule serve both.

Saturation: a pair sum ``a0*w0 + a1*w1`` with ``a <= 255`` stays below 2**15 only if
``|w| <= 64``. So int8 weights on these targets are 7-bit codes (``|q| <= 63``, ``2*255*63 =
32130``; the ``int8`` scheme's ``weight_qmax`` on such a numerics target, see docs/isa.md),
and the ``u8i8`` intrinsic is exact for them. int4 codes (``|q| <= 7``) leave far more
headroom: ``2*255*7 = 3570`` per pair, so the ``u8i4`` intrinsic adds the two ``vpmaddubsw``
results of an 8-channel group in int16 before a single ``vpmaddwd`` (``2*3570 = 7140``): three
multiplies per 8 channels instead of four.

As in ``vnni.py``, every operand is built inline with the LLVM signature's own types.

* ``u8i8``: 4 input channels; ``B[lanes, 4]`` int8, exact for ``|q| <= 64``.
* ``u8i4``: 8 input channels; the ``v4`` int4 layout of ``vnni.py``'s ``u8i4x16`` (byte j of an
  output channel holds channels (j, j + 4) as ``q + 8``), unpacked to plain ``q`` (mask, shift,
  byte subtraction: no x16 scaling, which would saturate int16).
* ``u8i4w``: 16 input channels, two ``v4`` blocks (``B[2, lanes, 4]``, the second one
  ``ocb * 4`` bytes further: layout ``v4w``); four ``vpmaddubsw`` summed in int16
  (``4 * 3570 < 2**15``), one ``vpmaddwd``: 2.5 multiplies per 8 channels.
* ``u8i4s``: 4 input channels in the ``v4s`` layout (byte j = channels (j, j + 2)), for layers
  with few input channels (less zero padding than 8 or 16-channel groups).
* ``u8i8b2`` / ``u8i8b4``: 8 / 16 input channels of int8 weights in 2 / 4 ``v8`` blocks
  (``B[blocks, lanes, 4]``, blocks ``ocb * 4`` bytes apart: layout ``v8b``), the
  ``vpmaddubsw`` results summed in int16 before one ``vpmaddwd``. Exact only for int4 codes
  (``|q| <= 8``: ``4 * 2 * 255 * 8 < 2**15``): the decode-once int4 kernels, which decode the
  packed nibbles once per call and then multiply like ``u8i4`` / ``u8i4w`` without unpacking.
"""

from __future__ import annotations

import functools

from tvm.script import tirx as T

from .vnni import bcast4, register_once, u8i8_desc, v4s_codes

# (vpmaddubsw, vpmaddwd) LLVM intrinsics per 32-bit lane count.
_LLVM_PMADD = {
    4: ("llvm.x86.ssse3.pmadd.ub.sw.128", "llvm.x86.sse2.pmadd.wd"),  # grouped convs
    8: ("llvm.x86.avx2.pmadd.ub.sw", "llvm.x86.avx2.pmadd.wd"),
    16: ("llvm.x86.avx512.pmaddubs.w.512", "llvm.x86.avx512.pmaddw.d.512"),
}
# Largest |weight code| for which no vpmaddubsw pair sum saturates: 2 * 255 * 64 = 32640.
PAIR_SAFE_QMAX = 64


def _ones16(lanes: int):
    return T.broadcast(T.int16(1), 2 * lanes)


def _u8i8(lanes: int):
    i32 = f"int32x{lanes}"
    i16 = f"int16x{2 * lanes}"
    i8 = f"int8x{4 * lanes}"
    ubsw, wd = _LLVM_PMADD[lanes]

    @T.prim_func(s_tir=True)
    def impl(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((lanes, 4), "int8", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            C[T.ramp(T.int32(0), 1, lanes)] = C.vload([0], i32) + T.call_llvm_pure_intrin(
                i32,
                wd,
                T.call_llvm_pure_intrin(i16, ubsw, bcast4(A, 0, lanes), B.vload([0, 0], i8)),
                _ones16(lanes),
            )

    return u8i8_desc(lanes), impl


def _nibbles(word, shift: int, lanes: int):
    """int8 weights from 4 nibbles per 32-bit lane (``q + 8`` each; ``shift`` 0 takes the low
    nibbles, 4 the high ones): mask (after a shift) and one byte subtraction."""
    if shift:
        word = T.shift_right(word, T.broadcast(T.int32(shift), lanes))
    return T.reinterpret(
        T.bitwise_and(word, T.broadcast(T.int32(0x0F0F0F0F), lanes)), dtype=f"int8x{4 * lanes}"
    ) - T.broadcast(T.int8(8), 4 * lanes)


def _u8i4(lanes: int):
    i32 = f"int32x{lanes}"
    i16 = f"int16x{2 * lanes}"
    u8 = f"uint8x{4 * lanes}"
    ubsw, wd = _LLVM_PMADD[lanes]

    @T.prim_func(s_tir=True)
    def desc(
        A: T.Buffer((8,), "uint8", offset_factor=1),
        B: T.Buffer((lanes, 4), "uint8", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:8], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            for i, k in T.grid(lanes, 8):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.cast(A[vk], "int32") * (
                        T.bitwise_and(
                            T.shift_right(T.cast(B[vi, vk % 4], "int32"), vk // 4 * 4), 15
                        )
                        - 8
                    )

    @T.prim_func(s_tir=True)
    def impl(
        A: T.Buffer((8,), "uint8", offset_factor=1),
        B: T.Buffer((lanes, 4), "uint8", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:8], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            # Low nibbles are channels 0..3, high nibbles 4..7; the two int16 pair sums are
            # added before the one widening vpmaddwd.
            C[T.ramp(T.int32(0), 1, lanes)] = C.vload([0], i32) + T.call_llvm_pure_intrin(
                i32,
                wd,
                T.call_llvm_pure_intrin(
                    i16, ubsw, bcast4(A, 0, lanes),
                    _nibbles(T.reinterpret(B.vload([0, 0], u8), dtype=i32), 0, lanes),
                )
                + T.call_llvm_pure_intrin(
                    i16, ubsw, bcast4(A, 4, lanes),
                    _nibbles(T.reinterpret(B.vload([0, 0], u8), dtype=i32), 4, lanes),
                ),
                _ones16(lanes),
            )  # fmt: skip

    return desc, impl


def _u8i4w(lanes: int):
    i32 = f"int32x{lanes}"
    i16 = f"int16x{2 * lanes}"
    u8 = f"uint8x{4 * lanes}"
    ubsw, wd = _LLVM_PMADD[lanes]

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (16,), "uint8", offset_factor=1)
        B = T.match_buffer(b, (2, lanes, 4), "uint8", offset_factor=1,
                           strides=[T.int32(), 4, 1])  # fmt: skip
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:16], B[0:2, 0:lanes, 0:4])
            T.writes(C[0:lanes])
            for i, k in T.grid(lanes, 16):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.cast(A[vk], "int32") * (
                        T.bitwise_and(
                            T.shift_right(
                                T.cast(B[vk // 8, vi, vk % 4], "int32"), vk % 8 // 4 * 4
                            ),
                            15,
                        )
                        - 8
                    )

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (16,), "uint8", offset_factor=1)
        B = T.match_buffer(b, (2, lanes, 4), "uint8", offset_factor=1,
                           strides=[T.int32(), 4, 1])  # fmt: skip
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:16], B[0:2, 0:lanes, 0:4])
            T.writes(C[0:lanes])
            # Four vpmaddubsw (channels 0-3, 4-7 of the first half, 8-11, 12-15 of the
            # second) summed in int16 (4 * 3570 < 2**15), then one vpmaddwd.
            C[T.ramp(T.int32(0), 1, lanes)] = C.vload([0], i32) + T.call_llvm_pure_intrin(
                i32,
                wd,
                T.call_llvm_pure_intrin(
                    i16, ubsw, bcast4(A, 0, lanes),
                    _nibbles(T.reinterpret(B.vload([0, 0, 0], u8), dtype=i32), 0, lanes),
                )
                + T.call_llvm_pure_intrin(
                    i16, ubsw, bcast4(A, 4, lanes),
                    _nibbles(T.reinterpret(B.vload([0, 0, 0], u8), dtype=i32), 4, lanes),
                )
                + T.call_llvm_pure_intrin(
                    i16, ubsw, bcast4(A, 8, lanes),
                    _nibbles(T.reinterpret(B.vload([1, 0, 0], u8), dtype=i32), 0, lanes),
                )
                + T.call_llvm_pure_intrin(
                    i16, ubsw, bcast4(A, 12, lanes),
                    _nibbles(T.reinterpret(B.vload([1, 0, 0], u8), dtype=i32), 4, lanes),
                ),
                _ones16(lanes),
            )  # fmt: skip

    return desc, impl


def _u8i4s(lanes: int):
    i32 = f"int32x{lanes}"
    i16 = f"int16x{2 * lanes}"
    ubsw, wd = _LLVM_PMADD[lanes]

    @T.prim_func(s_tir=True)
    def desc(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((lanes, 2), "uint8", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:2])
            T.writes(C[0:lanes])
            for i, k in T.grid(lanes, 4):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.cast(A[vk], "int32") * (
                        T.bitwise_and(
                            T.shift_right(T.cast(B[vi, vk % 2], "int32"), vk // 2 * 4), 15
                        )
                        - 8
                    )

    @T.prim_func(s_tir=True)
    def impl(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((lanes, 2), "uint8", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:2])
            T.writes(C[0:lanes])
            # byte0 = c0 | c2 << 4, byte1 = c1 | c3 << 4: (w | w << 12) & 0x0F0F0F0F puts
            # c0..c3 in bytes 0..3 (as in vnni.py's u8i4).
            C[T.ramp(T.int32(0), 1, lanes)] = C.vload([0], i32) + T.call_llvm_pure_intrin(
                i32,
                wd,
                T.call_llvm_pure_intrin(
                    i16,
                    ubsw,
                    bcast4(A, 0, lanes),
                    v4s_codes(B, lanes),
                ),
                _ones16(lanes),
            )

    return desc, impl


def _u8i8b(lanes: int, blocks: int):
    i32 = f"int32x{lanes}"
    i16 = f"int16x{2 * lanes}"
    i8 = f"int8x{4 * lanes}"
    ubsw, wd = _LLVM_PMADD[lanes]
    red = 4 * blocks

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (red,), "uint8", offset_factor=1)
        B = T.match_buffer(b, (blocks, lanes, 4), "int8", offset_factor=1,
                           strides=[T.int32(), 4, 1])  # fmt: skip
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:red], B[0:blocks, 0:lanes, 0:4])
            T.writes(C[0:lanes])
            for i, k in T.grid(lanes, red):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vk // 4, vi, vk % 4],
                                                                    "int32")  # fmt: skip

    def pair_sums(A, B, j):
        return T.call_llvm_pure_intrin(i16, ubsw, bcast4(A, 4 * j, lanes), B.vload([j, 0, 0], i8))

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (red,), "uint8", offset_factor=1)
        B = T.match_buffer(b, (blocks, lanes, 4), "int8", offset_factor=1,
                           strides=[T.int32(), 4, 1])  # fmt: skip
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:red], B[0:blocks, 0:lanes, 0:4])
            T.writes(C[0:lanes])
            C[T.ramp(T.int32(0), 1, lanes)] = C.vload([0], i32) + T.call_llvm_pure_intrin(
                i32, wd, _int16_sum([pair_sums(A, B, j) for j in range(blocks)]), _ones16(lanes)
            )

    return desc, impl


def _int16_sum(terms):
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


def _pmaddwd_dot(A, w8, lanes: int):
    """int32 sums of 4 uint8 activations (``A[0:4]``, every lane) times the int8 weights
    ``w8`` (``int8x{4 * lanes}``, 4 per lane) with ``pmaddwd`` alone (SSE2 has no byte
    multiply): the activation bytes are split into the int16 words ``(a0, a2)`` (mask) and
    ``(a1, a3)`` (logical shift), the weight bytes into ``(w0, w2)`` (shift left, arithmetic
    shift right) and ``(w1, w3)`` (arithmetic shift); two ``pmaddwd`` sum the four products,
    exact for any int8 code (``2 * 255 * 128 < 2**31``)."""
    i16 = f"int16x{2 * lanes}"
    w = T.reinterpret(w8, dtype=i16)
    eight = _words(lanes, "int16", 8)
    return _pmaddwd_pairs(A, T.shift_right(T.shift_left(w, eight), eight),
                          T.shift_right(w, eight), lanes)  # fmt: skip


def _words(lanes: int, dtype: str, value: int):
    """``value`` in each of the ``2 * lanes`` 16-bit words (``dtype`` int16 or uint16)."""
    return T.broadcast(T.Cast(dtype, value), 2 * lanes)


def _pmaddwd_pairs(A, w_even, w_odd, lanes: int):
    """int32 sums of 4 uint8 activations (``A[0:4]``, every lane) times the int16 weight
    words ``w_even`` = ``(w0, w2)`` and ``w_odd`` = ``(w1, w3)`` of each lane: the activation
    bytes split into the words ``(a0, a2)`` (mask) and ``(a1, a3)`` (logical shift), two
    ``pmaddwd``."""
    i32, i16, u16 = f"int32x{lanes}", f"int16x{2 * lanes}", f"uint16x{2 * lanes}"
    wd = _LLVM_PMADD[lanes][1]
    a = T.reinterpret(bcast4(A, 0, lanes), dtype=u16)
    even = T.call_llvm_pure_intrin(
        i32, wd, T.reinterpret(T.bitwise_and(a, _words(lanes, "uint16", 0xFF)), dtype=i16),
        w_even)
    odd = T.call_llvm_pure_intrin(
        i32, wd, T.reinterpret(T.shift_right(a, _words(lanes, "uint16", 8)), dtype=i16), w_odd)
    return even + odd


def _v4p_words(B, lanes: int):
    """``(w0, w2)`` and ``(w1, w3)`` int16 words of a ``v4p`` int4 block ``B[lanes, 2]`` (byte
    j of an output channel = channels 2j | 2j + 1 << 4, each ``q + 8``) without int8 codes in
    between: each byte zero-extended to a word (``punpcklbw``), then ``(w & 15) - 8`` gives
    ``(c0, c2)`` and ``(w >> 4) - 8`` ``(c1, c3)``: five ops per weight vector, against eight
    for unpacking to bytes and then widening them. (A sign-extending shift pair instead lets
    LLVM merge the high nibble's shifts into a ``punpcklbw`` with an undefined register, a false
    dependency that chained the accumulators: 2.8x int8's time on a batch-1 GEMV.)"""
    w = T.Cast(f"int16x{2 * lanes}", B.vload([0, 0], f"uint8x{2 * lanes}"))
    eight = _words(lanes, "int16", 8)
    low = T.bitwise_and(w, _words(lanes, "int16", 15)) - eight
    high = T.shift_right(w, _words(lanes, "int16", 4)) - eight
    return low, high


def _w16_u8i8(lanes: int):
    """``pmaddwd`` on 4 input channels of int8 weights (the ``v8`` layout), widened to int16
    in registers (:func:`_pmaddwd_dot`)."""
    i32 = f"int32x{lanes}"
    i8 = f"int8x{4 * lanes}"

    @T.prim_func(s_tir=True)
    def impl(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((lanes, 4), "int8", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            C[T.ramp(T.int32(0), 1, lanes)] = C.vload([0], i32) + _pmaddwd_dot(
                A, B.vload([0, 0], i8), lanes)

    return u8i8_desc(lanes), impl


def _w16_u8i4p(lanes: int):
    """``pmaddwd`` on 4 input channels of int4 weights in the ``v4p`` layout, the nibbles
    turned straight into the int16 words :func:`_pmaddwd_pairs` multiplies
    (:func:`_v4p_words`): SSE2's in-loop int4 path."""
    i32 = f"int32x{lanes}"

    @T.prim_func(s_tir=True)
    def desc(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((lanes, 2), "uint8", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:2])
            T.writes(C[0:lanes])
            for i, k in T.grid(lanes, 4):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.cast(A[vk], "int32") * (
                        T.bitwise_and(
                            T.shift_right(T.cast(B[vi, vk // 2], "int32"), vk % 2 * 4), 15
                        )
                        - 8
                    )

    @T.prim_func(s_tir=True)
    def impl(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((lanes, 2), "uint8", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:2])
            T.writes(C[0:lanes])
            C[T.ramp(T.int32(0), 1, lanes)] = C.vload([0], i32) + _pmaddwd_pairs(
                A, *_v4p_words(B, lanes), lanes)

    return desc, impl


_BUILDERS = {
    "u8i8": _u8i8, "u8i4": _u8i4, "u8i4w": _u8i4w, "u8i4s": _u8i4s,
    "u8i8b2": lambda lanes: _u8i8b(lanes, 2), "u8i8b4": lambda lanes: _u8i8b(lanes, 4),
}  # fmt: skip
_WD_BUILDERS = {"u8i8": _w16_u8i8, "u8i4p": _w16_u8i4p}


@functools.cache
def pmadd_intrin(kind: str, lanes: int) -> str:
    """Name of the ``vpmaddubsw`` intrinsic ``kind`` (``"u8i8"``, ``"u8i4"``, ``"u8i4w"``,
    ``"u8i4s"``, ``"u8i8b2"``, ``"u8i8b4"``) on ``lanes``
    32-bit lanes (8: AVX2 ymm, 16: AVX-512BW zmm, 4: xmm), registered on first use."""
    if lanes not in _LLVM_PMADD:
        raise ValueError(f"vpmaddubsw kernels have 4 (xmm), 8 (ymm) or 16 (zmm) lanes, got {lanes}")
    desc, impl = _BUILDERS[kind](lanes)
    return register_once(f"aiq_pmaddubsw{32 * lanes}_{kind}", desc, impl)


@functools.cache
def pmaddwd_intrin(kind: str, lanes: int) -> str:
    """Name of the ``pmaddwd``-only intrinsic ``kind`` (``"u8i8"``, ``"u8i4p"``) on ``lanes``
    32-bit lanes (4: SSE2 xmm; 8 and 16 build too), registered on first use."""
    if lanes not in _LLVM_PMADD:
        raise ValueError(f"pmaddwd kernels have 4 (xmm), 8 (ymm) or 16 (zmm) lanes, got {lanes}")
    desc, impl = _WD_BUILDERS[kind](lanes)
    return register_once(f"aiq_pmaddwd{32 * lanes}_{kind}", desc, impl)
