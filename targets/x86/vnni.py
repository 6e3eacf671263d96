"""``vpdpbusd`` tensor intrinsics (AVX512-VNNI on zmm, AVX-VNNI on ymm) that build with TVM 0.27.

Why TVM's own ``dot_16x4_vnni`` (tvm/s_tir/tensor_intrin/x86.py) fails in 0.27: it passes the
broadcast activations and the weights to ``llvm.x86.avx512.vpdpbusd.512`` as ``int32x16``, but the
bundled LLVM declares that intrinsic as ``<16 x i32> (<16 x i32>, <64 x i8>, <64 x i8>)``. A
direct ``sch.tensorize`` + ``tvm.compile`` therefore dies in LLVM module verification ("Call
parameter type does not match function signature"); under meta-schedule the same lane mismatch
(an ``int32x16`` broadcast where ``int8x64`` operands are expected) surfaces earlier, in TVM's
``VectorizeLoop`` pass, as "Cannot broadcast lanes=16 to 64". The intrinsics below build every
operand with the signature's own types: the 4 activation bytes are reinterpreted as one int32,
broadcast to ``lanes`` lanes and reinterpreted back to ``int8 x 4*lanes``; weights are loaded as
``int8 x 4*lanes``. Every operand expression is built inline: a named temporary (``a = ...``)
would be lowered by TVM 0.27 to a heap workspace buffer allocated per parallel task and
round-tripped through memory.

One family per vector width: ``lanes`` 16 uses ``llvm.x86.avx512.vpdpbusd.512`` (zmm), ``lanes``
8 ``llvm.x86.avx512.vpdpbusd.256``, which LLVM emits as the VEX-encoded AVX-VNNI instruction
when the target has ``avxvnni`` but not ``avx512vl`` (and EVEX with AVX512-VL). Intrinsics (all
accumulate ``lanes`` output channels in one ``int32 x lanes``; :func:`vnni_intrin` names them):

* ``u8i8``: uint8 activations x int8 weights, 4 input channels.
* ``u8i4x16`` (the int4 default): 8 input channels from one ``4*lanes``-byte load; byte j (0..3)
  of an output channel holds input channels (j, j + 4) in its (low, high) nibble as ``q + 8``
  (per-channel reduction order c0, c4, c1, c5, ... inside every group of eight). XOR with 8
  turns ``q + 8`` into the two's-complement nibble of ``q``; masking it into the high half of the
  byte yields ``16 * q`` as int8 with no subtraction, so the two weight operands cost one shift
  and two ternary-logic ops. The accumulator is therefore ``16 * acc`` (exact; kernels shift it
  right by 4 in the epilogue), which bounds the reduction length to :data:`I4X16_MAX_REDUCTION`.
* ``u8i4`` (int4 for long reductions or few channels): 4 input channels from a
  ``2*lanes``-byte load; byte j of an output channel holds channels (j, j + 2) as ``q + 8``;
  unpacked with one zero-extension, one shift, one ternary-logic op and one byte subtraction.
"""

from __future__ import annotations

import functools

from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

# |acc| <= 255 * 128 * K must fit int32 for the x16-scaled int4 intrinsic.
I4X16_MAX_REDUCTION = (2**31 - 1) // (255 * 128)
_LLVM_VPDPBUSD = {
    16: "llvm.x86.avx512.vpdpbusd.512",
    8: "llvm.x86.avx512.vpdpbusd.256",
    4: "llvm.x86.avx512.vpdpbusd.128",  # grouped convs with 4 output channels per group
}


def register_once(name: str, desc, impl) -> str:
    """Register a tensor intrinsic unless it exists (the registry is process-global, and a
    module reload must not trip "already registered"); return its name."""
    if TensorIntrin.get(name, allow_missing=True) is None:
        TensorIntrin.register(name, desc, impl)
    return name


def bcast4(A, offset: int, lanes: int):
    """Four activation bytes at ``offset`` broadcast to every 32-bit lane, as int8 bytes."""
    return T.reinterpret(
        T.broadcast(T.reinterpret(A.vload([offset], "uint8x4"), dtype="int32"), lanes),
        dtype=f"int8x{4 * lanes}",
    )


def v4s_codes(B, lanes: int):
    """int8 codes ``q`` (``int8x{4 * lanes}``, 4 input channels per lane) of a ``v4s`` int4
    block ``B[lanes, 2]`` (one uint16 per output channel: byte0 = c0 | c2 << 4, byte1 = c1 |
    c3 << 4, each ``q + 8``): ``(w | w << 12) & 0x0F0F0F0F`` puts c0..c3 in bytes 0..3 (one
    ``vpternlogd`` on AVX-512), then 8 is subtracted."""
    i32, u16 = f"int32x{lanes}", f"uint16x{lanes}"
    w = T.Cast(i32, T.reinterpret(B.vload([0, 0], f"uint8x{2 * lanes}"), dtype=u16))
    nibbles = T.bitwise_and(T.bitwise_or(w, T.shift_left(w, T.broadcast(T.int32(12), lanes))),
                            T.broadcast(T.int32(0x0F0F0F0F), lanes))
    return T.reinterpret(nibbles, dtype=f"int8x{4 * lanes}") - T.broadcast(T.int8(8), 4 * lanes)


def u8i8_desc(lanes: int):
    """Description of the 4-channel int8 block every x86 dot family computes: ``lanes``
    int32 accumulators += 4 uint8 activations x ``B[lanes, 4]`` int8 weights (the ``v8``
    layout)."""

    @T.prim_func(s_tir=True)
    def desc(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((lanes, 4), "int8", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            for i, k in T.grid(lanes, 4):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    return desc


def _u8i8(lanes: int):
    i32 = f"int32x{lanes}"
    i8 = f"int8x{4 * lanes}"
    llvm = _LLVM_VPDPBUSD[lanes]

    @T.prim_func(s_tir=True)
    def impl(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((lanes, 4), "int8", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            C[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                i32, llvm, C.vload([0], i32), bcast4(A, 0, lanes), B.vload([0, 0], i8)
            )

    return u8i8_desc(lanes), impl


def _u8i4(lanes: int):
    i32 = f"int32x{lanes}"
    llvm = _LLVM_VPDPBUSD[lanes]

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
            # One uint16 per output channel: byte0 = c0 | c2 << 4, byte1 = c1 | c3 << 4;
            # (w | w << 12) & 0x0F0F0F0F puts c0, c1, c2, c3 in bytes 0..3 (one vpternlogd).
            C[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                i32,
                llvm,
                C.vload([0], i32),
                bcast4(A, 0, lanes),
                v4s_codes(B, lanes),
            )

    return desc, impl


def _u8i4x16(lanes: int):
    i32 = f"int32x{lanes}"
    u8 = f"uint8x{4 * lanes}"
    i8 = f"int8x{4 * lanes}"
    llvm = _LLVM_VPDPBUSD[lanes]

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
                        (
                            T.bitwise_and(
                                T.shift_right(T.cast(B[vi, vk % 4], "int32"), vk // 4 * 4), 15
                            )
                            - 8
                        )
                        * 16
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
            # Low nibbles move into the high half of their byte and high nibbles stay; XOR
            # flips the offset bit (q + 8 -> two's-complement q); masking with 0xF0 leaves
            # 16 * q.
            C[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                i32,
                llvm,
                T.call_llvm_pure_intrin(
                    i32,
                    llvm,
                    C.vload([0], i32),
                    bcast4(A, 0, lanes),
                    T.reinterpret(
                        T.bitwise_and(
                            T.bitwise_xor(
                                T.shift_left(
                                    T.reinterpret(B.vload([0, 0], u8), dtype=i32),
                                    T.broadcast(T.int32(4), lanes),
                                ),
                                T.broadcast(T.int32(-2139062144), lanes),  # 0x80808080
                            ),
                            T.broadcast(T.int32(-252645136), lanes),  # 0xF0F0F0F0
                        ),
                        dtype=i8,
                    ),
                ),
                bcast4(A, 4, lanes),
                T.reinterpret(
                    T.bitwise_and(
                        T.bitwise_xor(
                            T.reinterpret(B.vload([0, 0], u8), dtype=i32),
                            T.broadcast(T.int32(-2004318072), lanes),  # 0x88888888
                        ),
                        T.broadcast(T.int32(-252645136), lanes),  # 0xF0F0F0F0
                    ),
                    dtype=i8,
                ),
            )

    return desc, impl


_BUILDERS = {"u8i8": _u8i8, "u8i4": _u8i4, "u8i4x16": _u8i4x16}


@functools.cache
def vnni_intrin(kind: str, lanes: int) -> str:
    """Name of the ``vpdpbusd`` intrinsic ``kind`` (``"u8i8"``, ``"u8i4"``, ``"u8i4x16"``) on
    ``lanes`` 32-bit lanes (16: zmm, 8: ymm, 4: xmm), registered on first use."""
    if lanes not in _LLVM_VPDPBUSD:
        raise ValueError(f"vpdpbusd has 16 (zmm), 8 (ymm) or 4 (xmm) lanes, got {lanes}")
    desc, impl = _BUILDERS[kind](lanes)
    return register_once(f"aiq_vpdpbusd{32 * lanes}_{kind}", desc, impl)
