"""AArch64 NEON tensor intrinsics: uint8 activations x int8 weights into int32, exactly.

Every intrinsic implements one block of the ``v8`` packed-weight layout with 4 lanes: 4 output
channels x 4 input channels, ``C[i] += int32(A[k]) * int32(B[i, k])`` with ``A`` uint8 (our
activations, zero point included) and ``B`` int8 (symmetric weight codes, never -128). They
differ in the instruction that does the multiply-accumulate:

* ``aiq_dot_4x4_neon_usdot_u8i8i32`` (Armv8.6 I8MM, ``+i8mm``): ``usdot`` multiplies unsigned
  by signed bytes directly; one instruction per block.
* ``aiq_dot_4x4_neon_sdot_u8i8i32`` (Armv8.2 DotProd, ``+dotprod``): ``sdot`` takes signed
  bytes only, so the activations are flipped to int8 by ``XOR 0x80`` (``a - 128``) and the
  block adds back ``128 * sum_k B[i, k]``, itself one ``sdot`` of the weights with a vector of
  -128 (it depends on the weights only: LLVM computes it once per weight vector and register
  block, shared by every output position of the block).
* ``aiq_dot_4x4_neon_smull_u8i8i32`` (Armv8.0 AdvSIMD): the same flip, ``smull`` /
  ``smull2`` into int16 products, ``addp`` of adjacent products (two products of
  ``|a - 128| <= 128`` and ``|w| <= 127`` fit int16) and ``sadalp`` into the int32
  accumulator; the weight term the same way.

The accumulators hold the exact ``sum_k A * B`` in every variant, so kernels, their ``corr``
zero-point correction and the numpy references in :mod:`aiq_tvm.quant` are those of the x86
``vpdpbusd`` path.
"""

from __future__ import annotations

import numpy as np
from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

__all__ = ["NEON_USDOT", "NEON_SDOT", "NEON_SMULL", "NEON_INTRINSICS", "LANES"]

LANES = 4  # int32 lanes of a 128-bit NEON register
NEON_USDOT = "aiq_dot_4x4_neon_usdot_u8i8i32"
NEON_SDOT = "aiq_dot_4x4_neon_sdot_u8i8i32"
NEON_SMULL = "aiq_dot_4x4_neon_smull_u8i8i32"
# int32 0x80808080: XOR flips every byte of 4 activations from uint8 a to int8 a - 128.
_FLIP = -2139062144


@T.prim_func(s_tir=True)
def _dot_desc(
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
                C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")


@T.prim_func(s_tir=True)
def _usdot_impl(
    A: T.Buffer((4,), "uint8", offset_factor=1),
    B: T.Buffer((4, 4), "int8", offset_factor=1),
    C: T.Buffer((4,), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:4], A[0:4], B[0:4, 0:4])
        T.writes(C[0:4])
        C[T.ramp(T.int32(0), 1, 4)] = T.call_llvm_pure_intrin(
            "int32x4",
            "llvm.aarch64.neon.usdot.v4i32.v16i8",
            C.vload([0], "int32x4"),
            T.reinterpret(
                T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), 4),
                dtype="int8x16",
            ),
            B.vload([0, 0], "int8x16"),
        )


@T.prim_func(s_tir=True)
def _sdot_impl(
    A: T.Buffer((4,), "uint8", offset_factor=1),
    B: T.Buffer((4, 4), "int8", offset_factor=1),
    C: T.Buffer((4,), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:4], A[0:4], B[0:4, 0:4])
        T.writes(C[0:4])
        # sum (a - 128) * w  -  sum (-128) * w  ==  sum a * w
        C[T.ramp(T.int32(0), 1, 4)] = T.call_llvm_pure_intrin(
            "int32x4",
            "llvm.aarch64.neon.sdot.v4i32.v16i8",
            C.vload([0], "int32x4"),
            T.reinterpret(
                T.bitwise_xor(
                    T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), 4),
                    T.broadcast(T.int32(_FLIP), 4),
                ),
                dtype="int8x16",
            ),
            B.vload([0, 0], "int8x16"),
        ) - T.call_llvm_pure_intrin(
            "int32x4",
            "llvm.aarch64.neon.sdot.v4i32.v16i8",
            T.broadcast(T.int32(0), 4),
            T.broadcast(T.int8(-128), 16),
            B.vload([0, 0], "int8x16"),
        )


@T.prim_func(s_tir=True)
def _smull_impl(
    A: T.Buffer((4,), "uint8", offset_factor=1),
    B: T.Buffer((4, 4), "int8", offset_factor=1),
    C: T.Buffer((4,), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:4], A[0:4], B[0:4, 0:4])
        T.writes(C[0:4])
        # int16 products of channels 0-1 (low 8 bytes of B) and 2-3 (high 8 bytes), addp
        # pairs adjacent products -> [c0 k01, c0 k23, c1 k01, ...], saddlp sums each channel.
        C[T.ramp(T.int32(0), 1, 4)] = (
            C.vload([0], "int32x4")
            + T.call_llvm_pure_intrin(
                "int32x4",
                "llvm.aarch64.neon.saddlp.v4i32.v8i16",
                T.call_llvm_pure_intrin(
                    "int16x8",
                    "llvm.aarch64.neon.addp.v8i16",
                    T.call_llvm_pure_intrin(
                        "int16x8",
                        "llvm.aarch64.neon.smull.v8i16",
                        T.reinterpret(
                            T.bitwise_xor(
                                T.broadcast(
                                    T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), 2
                                ),
                                T.broadcast(T.int32(_FLIP), 2),
                            ),
                            dtype="int8x8",
                        ),
                        B.vload([0, 0], "int8x8"),
                    ),
                    T.call_llvm_pure_intrin(
                        "int16x8",
                        "llvm.aarch64.neon.smull.v8i16",
                        T.reinterpret(
                            T.bitwise_xor(
                                T.broadcast(
                                    T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), 2
                                ),
                                T.broadcast(T.int32(_FLIP), 2),
                            ),
                            dtype="int8x8",
                        ),
                        B.vload([2, 0], "int8x8"),
                    ),
                ),
            )
            # + 128 * sum_k w: -(sum (-128) * w), the same instruction chain on the weights
            - T.call_llvm_pure_intrin(
                "int32x4",
                "llvm.aarch64.neon.saddlp.v4i32.v8i16",
                T.call_llvm_pure_intrin(
                    "int16x8",
                    "llvm.aarch64.neon.addp.v8i16",
                    T.call_llvm_pure_intrin(
                        "int16x8",
                        "llvm.aarch64.neon.smull.v8i16",
                        T.broadcast(T.int8(-128), 8),
                        B.vload([0, 0], "int8x8"),
                    ),
                    T.call_llvm_pure_intrin(
                        "int16x8",
                        "llvm.aarch64.neon.smull.v8i16",
                        T.broadcast(T.int8(-128), 8),
                        B.vload([2, 0], "int8x8"),
                    ),
                ),
            )
        )


# int8 dot family (TargetCaps.int8_dot) -> (intrinsic, the LLVM feature it needs).
NEON_INTRINSICS = {
    "smmla": (NEON_USDOT, "i8mm"),  # the i8mm level: its usdot
    "sdot": (NEON_SDOT, "dotprod"),
    "smull": (NEON_SMULL, "neon"),
}


def _register() -> None:
    for name, impl in ((NEON_USDOT, _usdot_impl), (NEON_SDOT, _sdot_impl),
                       (NEON_SMULL, _smull_impl)):
        if TensorIntrin.get(name, allow_missing=True) is None:  # module reloads
            TensorIntrin.register(name, _dot_desc, impl)


_register()


def intrinsic_for(target) -> str:
    """The best of the intrinsics above that ``target`` (an aarch64 target) can execute."""
    from aiq_tvm.targets import capabilities

    caps = capabilities(target)
    if caps.arch != "aarch64":
        raise ValueError(f"NEON intrinsics need an aarch64 target, got {caps.arch} "
                         f"({caps.triple or caps.mcpu})")
    return NEON_INTRINSICS[caps.int8_dot][0]


def dot_kernel(n: int, k: int, o: int, intrin: str):
    """``C[n, o] = sum_k A[n, k] * W[o, k]`` (uint8 x int8 -> int32), tensorized with ``intrin``.

    ``W`` comes packed as ``[o / 4, k / 4, 4, 4]`` (the ``v8`` layout with 4 lanes). The
    smallest kernel that exercises an intrinsic: the instruction checks and the emulated
    numerics tests build it.
    """
    from tvm import s_tir, te

    if k % 4 or o % 4:
        raise ValueError(f"k and o must be multiples of 4, got k={k}, o={o}")
    a = te.placeholder((n, k), "uint8", name="A")
    w = te.placeholder((o // 4, k // 4, LANES, 4), "int8", name="W")
    r = te.reduce_axis((0, k), "k")
    c = te.compute((n, o), lambda i, j: te.sum(
        a[i, r].astype("int32") * w[j // 4, r // 4, j % 4, r % 4].astype("int32"), axis=r),
        name="C")
    sch = s_tir.Schedule(te.create_prim_func([a, w, c]))
    block = sch.get_sblock("C")
    i, j, kk = sch.get_loops(block)
    jo, ji = sch.split(j, [None, LANES])
    ko, ki = sch.split(kk, [None, 4])
    sch.reorder(i, jo, ko, ji, ki)
    sch.decompose_reduction(block, ko)
    sch.tensorize(ji, intrin)
    return sch.mod["main"]


def pack_dot_weight(w: np.ndarray) -> np.ndarray:
    """``[o, k]`` int8 -> the ``[o / 4, k / 4, 4, 4]`` layout of :func:`dot_kernel`."""
    o, k = w.shape
    return np.ascontiguousarray(w.reshape(o // 4, 4, k // 4, 4).transpose(0, 2, 1, 3))
