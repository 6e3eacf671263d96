"""AVX512-VNNI tensor intrinsics (``vpdpbusd``) that build with TVM 0.27 / its bundled LLVM.

Why TVM's own ``dot_16x4_vnni`` (tvm/s_tir/tensor_intrin/x86.py) fails in 0.27: it passes the
broadcast activations and the weights to ``llvm.x86.avx512.vpdpbusd.512`` as ``int32x16``, but the
bundled LLVM declares that intrinsic as ``<16 x i32> (<16 x i32>, <64 x i8>, <64 x i8>)``. A
direct ``sch.tensorize`` + ``tvm.compile`` therefore dies in LLVM module verification ("Call
parameter type does not match function signature"); under meta-schedule the same lane mismatch
(an ``int32x16`` broadcast where ``int8x64`` operands are expected) surfaces earlier, in TVM's
``VectorizeLoop`` pass, as "Cannot broadcast lanes=16 to 64". The intrinsics below build every
operand with the signature's own types: the 4 activation bytes are reinterpreted as one int32,
broadcast to 16 lanes and reinterpreted back to ``int8x64``; weights are loaded as ``int8x64``.
Every operand expression is built inline: a named temporary (``a = ...``) would be lowered by
TVM 0.27 to a heap workspace buffer allocated per parallel task and round-tripped through memory.

Intrinsics (all accumulate 16 output channels in one ``int32x16``):

* ``aiq_dot_16x4_vnni_u8i8i32``: uint8 activations x int8 weights, 4 input channels.
* ``aiq_dot_16x8_vnni_u8i4x16i32`` (the int4 default): 8 input channels from one 64-byte load;
  byte j (0..3) of an output channel holds input channels (j, j + 4) in its (low, high) nibble
  as ``q + 8`` (per-channel reduction order c0, c4, c1, c5, ... inside every group of eight).
  XOR with 8 turns ``q + 8`` into the two's-complement nibble of ``q``; masking it into the high
  half of the byte yields ``16 * q`` as int8 with no subtraction, so the two weight operands
  cost one shift and two ternary-logic ops. The accumulator is therefore ``16 * acc`` (exact;
  kernels shift it right by 4 in the epilogue), which bounds the reduction length to
  :data:`I4X16_MAX_REDUCTION`.
* ``aiq_dot_16x4_vnni_u8i4i32`` (int4 for long reductions or few channels): 4 input channels
  from a 32-byte load; byte j of an output channel holds channels (j, j + 2) as ``q + 8``;
  unpacked with one zero-extension, one shift, one ternary-logic op and one byte subtraction.
"""

from __future__ import annotations

from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

VNNI_U8I8 = "aiq_dot_16x4_vnni_u8i8i32"
VNNI_U8I4 = "aiq_dot_16x4_vnni_u8i4i32"
VNNI_U8I4X16 = "aiq_dot_16x8_vnni_u8i4x16i32"
# |acc| <= 255 * 128 * K must fit int32 for the x16-scaled int4 intrinsic.
I4X16_MAX_REDUCTION = (2**31 - 1) // (255 * 128)


@T.prim_func(s_tir=True)
def _dot_u8i8_desc(
    A: T.Buffer((4,), "uint8", offset_factor=1),
    B: T.Buffer((16, 4), "int8", offset_factor=1),
    C: T.Buffer((16,), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:4], B[0:16, 0:4])
        T.writes(C[0:16])
        for i, k in T.grid(16, 4):
            with T.sblock("update"):
                vi, vk = T.axis.remap("SR", [i, k])
                C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")


@T.prim_func(s_tir=True)
def _dot_u8i8_vnni(
    A: T.Buffer((4,), "uint8", offset_factor=1),
    B: T.Buffer((16, 4), "int8", offset_factor=1),
    C: T.Buffer((16,), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:4], B[0:16, 0:4])
        T.writes(C[0:16])
        C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
            "int32x16",
            "llvm.x86.avx512.vpdpbusd.512",
            C.vload([0], "int32x16"),
            T.reinterpret(
                T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), 16),
                dtype="int8x64",
            ),
            B.vload([0, 0], "int8x64"),
        )


@T.prim_func(s_tir=True)
def _dot_u8i4_desc(
    A: T.Buffer((4,), "uint8", offset_factor=1),
    B: T.Buffer((16, 2), "uint8", offset_factor=1),
    C: T.Buffer((16,), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:4], B[0:16, 0:2])
        T.writes(C[0:16])
        for i, k in T.grid(16, 4):
            with T.sblock("update"):
                vi, vk = T.axis.remap("SR", [i, k])
                C[vi] = C[vi] + T.cast(A[vk], "int32") * (
                    T.bitwise_and(T.shift_right(T.cast(B[vi, vk % 2], "int32"), vk // 2 * 4), 15)
                    - 8
                )


@T.prim_func(s_tir=True)
def _dot_u8i4_vnni(
    A: T.Buffer((4,), "uint8", offset_factor=1),
    B: T.Buffer((16, 2), "uint8", offset_factor=1),
    C: T.Buffer((16,), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:4], B[0:16, 0:2])
        T.writes(C[0:16])
        # One uint16 per output channel: byte0 = c0 | c2 << 4, byte1 = c1 | c3 << 4;
        # (w | w << 12) & 0x0F0F0F0F puts c0, c1, c2, c3 in bytes 0..3 (one vpternlogd).
        C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
            "int32x16",
            "llvm.x86.avx512.vpdpbusd.512",
            C.vload([0], "int32x16"),
            T.reinterpret(
                T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), 16),
                dtype="int8x64",
            ),
            T.reinterpret(
                T.bitwise_and(
                    T.bitwise_or(
                        T.Cast(
                            "int32x16",
                            T.reinterpret(B.vload([0, 0], "uint8x32"), dtype="uint16x16"),
                        ),
                        T.shift_left(
                            T.Cast(
                                "int32x16",
                                T.reinterpret(B.vload([0, 0], "uint8x32"), dtype="uint16x16"),
                            ),
                            T.broadcast(T.int32(12), 16),
                        ),
                    ),
                    T.broadcast(T.int32(0x0F0F0F0F), 16),
                ),
                dtype="int8x64",
            )
            - T.broadcast(T.int8(8), 64),
        )


@T.prim_func(s_tir=True)
def _dot_u8i4x16_desc(
    A: T.Buffer((8,), "uint8", offset_factor=1),
    B: T.Buffer((16, 4), "uint8", offset_factor=1),
    C: T.Buffer((16,), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:8], B[0:16, 0:4])
        T.writes(C[0:16])
        for i, k in T.grid(16, 8):
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
def _dot_u8i4x16_vnni(
    A: T.Buffer((8,), "uint8", offset_factor=1),
    B: T.Buffer((16, 4), "uint8", offset_factor=1),
    C: T.Buffer((16,), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:8], B[0:16, 0:4])
        T.writes(C[0:16])
        # Low nibbles move into the high half of their byte and high nibbles stay; XOR flips
        # the offset bit (q + 8 -> two's-complement q); masking with 0xF0 leaves 16 * q.
        C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
            "int32x16",
            "llvm.x86.avx512.vpdpbusd.512",
            T.call_llvm_pure_intrin(
                "int32x16",
                "llvm.x86.avx512.vpdpbusd.512",
                C.vload([0], "int32x16"),
                T.reinterpret(
                    T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), 16),
                    dtype="int8x64",
                ),
                T.reinterpret(
                    T.bitwise_and(
                        T.bitwise_xor(
                            T.shift_left(
                                T.reinterpret(B.vload([0, 0], "uint8x64"), dtype="int32x16"),
                                T.broadcast(T.int32(4), 16),
                            ),
                            T.broadcast(T.int32(-2139062144), 16),  # 0x80808080
                        ),
                        T.broadcast(T.int32(-252645136), 16),  # 0xF0F0F0F0
                    ),
                    dtype="int8x64",
                ),
            ),
            T.reinterpret(
                T.broadcast(T.reinterpret(A.vload([4], "uint8x4"), dtype="int32"), 16),
                dtype="int8x64",
            ),
            T.reinterpret(
                T.bitwise_and(
                    T.bitwise_xor(
                        T.reinterpret(B.vload([0, 0], "uint8x64"), dtype="int32x16"),
                        T.broadcast(T.int32(-2004318072), 16),  # 0x88888888
                    ),
                    T.broadcast(T.int32(-252645136), 16),  # 0xF0F0F0F0
                ),
                dtype="int8x64",
            ),
        )


def _register() -> None:
    for name, desc, impl in (
        (VNNI_U8I8, _dot_u8i8_desc, _dot_u8i8_vnni),
        (VNNI_U8I4, _dot_u8i4_desc, _dot_u8i4_vnni),
        (VNNI_U8I4X16, _dot_u8i4x16_desc, _dot_u8i4x16_vnni),
    ):
        # The registry is process-global; a module reload must not trip "already registered".
        if TensorIntrin.get(name, allow_missing=True) is None:
            TensorIntrin.register(name, desc, impl)


_register()
