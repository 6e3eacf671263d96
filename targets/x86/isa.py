"""What the kernel library needs to know per ISA level, in tables another ISA can extend.

A target's :class:`~aiq_tvm.targets.TargetCaps` names its ISA level and int8 dot-product
family; this module maps those names to

* :class:`KernelIsa`: vector lanes, register budget and the planner's throughput constants
  (:data:`KERNEL_ISAS`, keyed by ``caps.isa``);
* :class:`DotFamily`: how uint8 x int weights reach int32 accumulators, i.e. the packed weight
  formats and tensor intrinsics of the integer schemes and the largest 8-bit weight code that
  stays exact (:data:`DOT_FAMILIES`, keyed by ``caps.int8_dot``).

Kernels ask :func:`cpu_model` for a target and never test an ISA by name, so another
backend plugs in by registering its own :class:`KernelIsa` and :class:`DotFamily` entries
(``register_isa`` / ``register_dot_family``): the AArch64 dot families (``usmmla`` /
``usdot``, ``sdot``, ``smull``, 4 lanes) are registered by :mod:`aiq_tvm.targets.arm.neon`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from aiq_tvm.schemes import FULL_INT8_QMAX, PrecisionScheme
from aiq_tvm.targets.capabilities import INT8_WEIGHT_QMAX, TargetCaps, capabilities

from .common import WeightFormat, as_target

__all__ = [
    "CpuModel",
    "DOT_FAMILIES",
    "DotFamily",
    "KERNEL_ISAS",
    "KernelIsa",
    "Throughput",
    "cpu_model",
    "numerics_qmax",
    "register_dot_family",
    "register_isa",
]


@dataclass(frozen=True)
class Throughput:
    """Per-core throughput model of the tile planner (cycles; one vector = ``lanes`` lanes).

    Attributes
    ----------
    vector_ops_per_cycle : float
        Multiply-class vector ops (FMA, ``vpdpbusd``, ``vpmaddubsw``, ``vpmaddwd``) per cycle.
    loads_per_cycle : float
        Vector loads, including broadcast loads, per cycle.
    fma_latency : float
        Latency of an FMA / ``vpdpbusd`` into its accumulator (every accumulator chain advances
        once per such op).
    unpack_weight : float
        Cost of one weight-unpacking op (shift, mask, subtract) relative to a multiply: they
        partly issue on the vector pipes the multiplies leave free.
    epi_cycles : float
        Fused epilogue per output vector, including the store.
    pad_pixel_cycles : float
        Padded-copy cost per pixel (border test + copy of one 64-byte line).
    source : str
        Where the figures come from.
    """

    vector_ops_per_cycle: float
    loads_per_cycle: float
    fma_latency: float
    unpack_weight: float
    epi_cycles: float
    pad_pixel_cycles: float
    source: str


AVX512_THROUGHPUT = Throughput(
    2.0, 2.0, 4.0, 0.5, 2.0, 1.5,
    "fitted to kernel timings on a 2-core AMD EPYC (Zen 5, AVX-512 VNNI): two 512-bit "
    "FMA/vpdpbusd and two loads per cycle, 4-cycle accumulator latency")  # fmt: skip
AVX2_THROUGHPUT = Throughput(
    2.0, 2.0, 4.0, 0.5, 1.5, 1.5,
    "Zen 3 / Haswell-class 256-bit core: two FMA or integer-multiply ports, two vector loads "
    "per cycle (Zen 3: three), FMA latency 4 (Zen 3; Haswell 5)")  # fmt: skip
SSE_THROUGHPUT = Throughput(
    2.0, 2.0, 4.0, 0.5, 1.5, 1.5,
    "assumed: same issue model as AVX2 on 128-bit vectors")  # fmt: skip
NEON_THROUGHPUT = Throughput(
    2.0, 2.0, 4.0, 0.5, 1.5, 1.5,
    "assumed: two 128-bit FMA pipes and two loads per cycle (Cortex-A76 / Neoverse-N1 class)")


@dataclass(frozen=True)
class KernelIsa:
    """Vector facts of one ISA level.

    Attributes
    ----------
    name : str
        The :data:`~aiq_tvm.targets.capabilities.ISA_LEVELS` key.
    vector_bits : int
        Width of the vectors the kernels use.
    registers : int
        Architectural vector registers.
    acc_reserve : dict
        Registers per schedule mode (``"bcast"``, ``"dot"``, ``"dw"``) that hold broadcasts,
        temporaries and up to ``weight_allowance`` weight vectors, not accumulators.
    weight_allowance : int
        Weight vectors (live across a block's positions) the reserve already covers; a block
        whose unpacked weights need more registers gets fewer accumulators.
    throughput : Throughput
        Planner constants.
    dw_input_window : bool
        Integer depthwise blocks keep the widened inputs of one kernel row live in registers
        (LLVM unrolls ``kw`` and reuses each input across the taps that read it), so a block
        must fit its accumulators, that window and the weights (``conv2d._dw_window_fits``).
        Measured on AVX-512 (Zen 4); AVX2 blocks that break it were the fastest on haswell.
    dw_float_input : bool
        Integer depthwise convs of more than 9 taps may read a float32 copy of their input
        (``conv2d._float_input``). Measured on AVX-512 (Xeon); on haswell the copy lost
        where it won on AVX-512 (7x7 192 @ 28 x 28: 276 -> 367 us; 98 -> 115 on AVX-512).
    """

    name: str
    vector_bits: int
    registers: int
    acc_reserve: dict
    weight_allowance: int
    throughput: Throughput
    dw_input_window: bool = False
    dw_float_input: bool = False

    @property
    def lanes(self) -> int:
        """32-bit lanes per vector."""
        return self.vector_bits // 32

    def max_acc(self, mode: str, ocv: int = 1, weight_regs: int = 1) -> int:
        """Accumulator vectors one register block of ``ocv`` channel vectors may use in
        schedule ``mode`` when each channel vector needs ``weight_regs`` weight registers."""
        extra = max(0, ocv * weight_regs - self.weight_allowance)
        return self.registers - self.acc_reserve[mode] - extra


KERNEL_ISAS: dict[str, KernelIsa] = {}


def register_isa(isa: KernelIsa) -> None:
    """Add (or replace) the kernel facts of an ISA level."""
    KERNEL_ISAS[isa.name] = isa


# 32 zmm: 24 accumulators; the other 8 hold up to 8 weight vectors, broadcasts and temporaries
# (fitted on the Zen 5 EPYC; the VNNI formats never need more).
_ZMM_RESERVE = {"bcast": 8, "dot": 8, "dw": 8}
# 16 ymm: besides the weights, fp32 needs a broadcast register and a spare; the vpmaddubsw
# chain a broadcast, an int16 temporary and the vector of ones.
_YMM_RESERVE = {"bcast": 2, "dot": 3, "dw": 2}
for _isa in (
    KernelIsa("avx512_vnni", 512, 32, _ZMM_RESERVE, 8, AVX512_THROUGHPUT, True, True),
    KernelIsa("avx512bw", 512, 32, _ZMM_RESERVE, 8, AVX512_THROUGHPUT, True, True),
    KernelIsa("avx_vnni", 256, 16, _YMM_RESERVE, 0, AVX2_THROUGHPUT),
    KernelIsa("avx2", 256, 16, _YMM_RESERVE, 0, AVX2_THROUGHPUT),
    KernelIsa("ssse3", 128, 16, _YMM_RESERVE, 0, SSE_THROUGHPUT),
    KernelIsa("sse", 128, 16, _YMM_RESERVE, 0, SSE_THROUGHPUT),
    # AArch64 levels: 32 128-bit registers; their dot families live in targets/arm/neon.py.
    KernelIsa("neon_i8mm", 128, 32, _ZMM_RESERVE, 8, NEON_THROUGHPUT),
    KernelIsa("neon_dotprod", 128, 32, _ZMM_RESERVE, 8, NEON_THROUGHPUT),
    KernelIsa("neon", 128, 32, _ZMM_RESERVE, 8, NEON_THROUGHPUT),
    KernelIsa("generic", 128, 16, _YMM_RESERVE, 0, SSE_THROUGHPUT),
):
    register_isa(_isa)


# ---------------------------------------------------------------------------------------------
# Integer dot-product families
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DotFamily:
    """How one int8 dot-product instruction family runs the integer schemes.

    Attributes
    ----------
    name : str
        ``caps.int8_dot`` key (``"vpdpbusd"``, ``"vpmaddubsw"``, ``"vpmaddwd"``, ``"none"``).
    weight_qmax : int
        Largest 8-bit weight code the family multiplies exactly (the ``int8_qmax`` of targets
        whose numerics follow it).
    formats : callable
        ``formats(weight_bits, lanes, reduction, throughput)`` -> candidate
        :class:`WeightFormat` list of a regular (non-depthwise) layer with ``weight_bits``
        integer weights and ``reduction`` = KH*KW*C products per output; the planner picks
        the cheapest. Must only offer formats exact for codes up to ``weight_qmax``.
    decoded : callable or None
        ``decoded(lanes, throughput)`` -> the decode-once int4 formats
        (:attr:`WeightFormat.packed`): int4 stored, decoded once per call into int8 and
        multiplied by the int8 path. Offered to layers whose kernels support them (conv2d).
    """

    name: str
    weight_qmax: int
    formats: Callable[[int, int, int, Throughput], list[WeightFormat]]
    decoded: Callable[[int, Throughput], list[WeightFormat]] | None = None


DOT_FAMILIES: dict[str, DotFamily] = {}


def register_dot_family(family: DotFamily) -> None:
    """Add (or replace) an int8 dot-product family."""
    DOT_FAMILIES[family.name] = family


def plain_format(weight_bits: int, acc_dtype: str, tp: Throughput) -> WeightFormat:
    """Weights widened to the accumulator dtype and multiplied one channel at a time: float
    FMAs for ``acc_dtype`` float32 (fp32 and the weight-only schemes), 32-bit integer
    multiply-adds for int32. The integer form is exact for any code: it serves targets
    without a dot instruction, depthwise layers (no channel reduction to feed one) and codes a
    dot family would saturate on.
    """
    lat = tp.fma_latency
    per_mac = 1.0 if acc_dtype == "float32" else 1.5  # vpmulld + vpaddd vs one FMA
    in_dtype = "float32" if acc_dtype == "float32" else "uint8"
    if weight_bits == 32:
        return WeightFormat("f32", "f32", 1, acc_dtype, in_dtype, 0, dot_ops=1.0,
                            acc_latency=lat)  # fmt: skip
    if weight_bits == 8:
        return WeightFormat("i8", "i8", 1, acc_dtype, in_dtype, 2, dot_ops=per_mac,
                            acc_latency=lat)  # fmt: skip
    unpack = 7 if acc_dtype == "float32" else 6
    return WeightFormat("i4", "i4", 2, acc_dtype, in_dtype, unpack, dot_ops=2 * per_mac,
                        acc_latency=2 * lat)  # fmt: skip


def decoded_plain_format(tp: Throughput) -> WeightFormat:
    """Depthwise int4 decoded once per call: stored as ``i4`` nibble pairs, multiplied as
    ``i8`` weights by the exact 32-bit path (no unpacking per register block)."""
    i8 = plain_format(8, "int32", tp)
    return replace(i8, name="i4d", packed=plain_format(4, "int32", tp))


def _vpdpbusd_formats(bits: int, lanes: int, reduction: int, tp: Throughput):
    from .vnni import I4X16_MAX_REDUCTION, vnni_intrin

    lat = tp.fma_latency
    if bits == 8:
        return [WeightFormat("v8", "v8", 4, "int32", "uint8", 0, vnni_intrin("u8i8", lanes),
                             dot_ops=1.0, acc_latency=lat, bcast_ops=1.0)]  # fmt: skip
    v4s = WeightFormat("v4s", "v4s", 4, "int32", "uint8", 4, vnni_intrin("u8i4", lanes),
                       dot_ops=1.0, acc_latency=lat, bcast_ops=1.0)  # fmt: skip
    if reduction > I4X16_MAX_REDUCTION:  # 16 * acc would overflow int32
        return [v4s]
    v4 = WeightFormat("v4", "v4", 8, "int32", "uint8", 3, vnni_intrin("u8i4x16", lanes),
                      acc_shift=4, dot_ops=2.0, acc_latency=2 * lat, bcast_ops=2.0,
                      weight_regs=2)  # fmt: skip
    return [v4, v4s]


def _vpdpbusd_decoded(lanes: int, tp: Throughput):
    from .vnni import vnni_intrin

    # Stored as v4 (8-channel groups) or v4s (4: less padding for few channels), multiplied
    # as v8 by the int8 intrinsic. The decoded codes are plain q, no x16 scaling, so any
    # reduction length fits int32.
    u8i8 = vnni_intrin("u8i8", lanes)
    lat = tp.fma_latency
    return [
        WeightFormat(f"{name}d", "v8", 4, "int32", "uint8", 0, u8i8, dot_ops=1.0,
                     acc_latency=lat, bcast_ops=1.0,
                     packed=WeightFormat(name, name, group, "int32", "uint8", 0))
        for name, group in (("v4", 8), ("v4s", 4))
    ]  # fmt: skip


def _pmaddubsw_decoded(lanes: int, tp: Throughput):
    from .pmadd import pmadd_intrin

    # The decoded codes are int4 values (|q| <= 8), so the int16 sums of 2 or 4 vpmaddubsw
    # stay exact as in the in-loop int4 intrinsics: same multiplies, no unpacking.
    def fmt(name, packed_layout, group, intrin, dot_ops, bcast_ops):
        layout = "v8" if group == 4 else "v8b"
        return WeightFormat(f"{name}d", layout, group, "int32", "uint8", 0, intrin,
                            dot_ops=dot_ops, acc_latency=1.0, bcast_ops=bcast_ops,
                            weight_regs=group // 4,
                            packed=WeightFormat(name, packed_layout, group, "int32", "uint8",
                                                0))  # fmt: skip

    return [
        fmt("m4w", "v4w", 16, pmadd_intrin("u8i8b4", lanes), 7.0, 4.0),
        fmt("m4", "v4", 8, pmadd_intrin("u8i8b2", lanes), 4.0, 2.0),
        fmt("m4s", "v4s", 4, pmadd_intrin("u8i8", lanes), 2.5, 1.0),
    ]


def _pmaddubsw_formats(bits: int, lanes: int, reduction: int, tp: Throughput):
    from .pmadd import pmadd_intrin

    # vpmaddubsw + vpmaddwd are multiplies, the vpaddd into the accumulator (and the int16
    # add of int4's two halves) an add at half the cost; only the vpaddd (latency 1) is on
    # the accumulator's dependency chain.
    if bits == 8:
        return [WeightFormat("m8", "v8", 4, "int32", "uint8", 0, pmadd_intrin("u8i8", lanes),
                             dot_ops=2.5, acc_latency=1.0, bcast_ops=1.0)]  # fmt: skip
    # int4: 16, 8 or 4 channels per block (the planner weighs fewer multiplies against zero
    # channel padding); unpacking is 5 ops per 8 channels (4 for the 4-channel layout). The
    # unpacked weights stay in registers across the block's positions, one more register
    # holds the nibble mask (fewer accumulators measured faster than spilling on Zen 3).
    return [
        WeightFormat("m4w", "v4w", 16, "int32", "uint8", 10, pmadd_intrin("u8i4w", lanes),
                     dot_ops=7.0, acc_latency=1.0, bcast_ops=4.0, weight_regs=5),
        WeightFormat("m4", "v4", 8, "int32", "uint8", 5, pmadd_intrin("u8i4", lanes),
                     dot_ops=4.0, acc_latency=1.0, bcast_ops=2.0, weight_regs=3),
        WeightFormat("m4s", "v4s", 4, "int32", "uint8", 4, pmadd_intrin("u8i4s", lanes),
                     dot_ops=2.5, acc_latency=1.0, bcast_ops=1.0),
    ]  # fmt: skip


def _pmaddwd_formats(bits: int, lanes: int, reduction: int, tp: Throughput):
    from .pmadd import pmaddwd_intrin

    # Per 4 input channels and channel vector: two pmaddwd (multiplies) and two paddd (half);
    # the weights' widening (psllw, psraw, psraw) stays in two registers across the block's
    # positions, the activations' split (broadcast, pand, psrlw) is shared by its channel
    # vectors. int4 weights: nibbles turned into those int16 words in the loop (punpcklbw,
    # pand, psrlw, two psubw: 5 ops, "w4p": the only int4 dot path of grouped convs), or
    # decoded once (_pmaddwd_decoded).
    if bits == 8:
        return [WeightFormat("w8", "v8", 4, "int32", "uint8", 3, pmaddwd_intrin("u8i8", lanes),
                             dot_ops=3.0, acc_latency=1.0, bcast_ops=3.0,
                             weight_regs=2)]  # fmt: skip
    # The exact 32-bit path costs more here than on later levels: SSE2 has no pmulld, so LLVM
    # multiplies int32 lanes with pmaddwd after assembling every broadcast with pinsrw (a 1x1
    # conv measured 13x slower than w8).
    i4 = plain_format(bits, "int32", tp)
    return [WeightFormat("w4p", "v4p", 4, "int32", "uint8", 5, pmaddwd_intrin("u8i4p", lanes),
                         dot_ops=3.0, acc_latency=1.0, bcast_ops=3.0, weight_regs=2),
            replace(i4, dot_ops=4 * i4.dot_ops)]  # fmt: skip


def _pmaddwd_decoded(lanes: int, tp: Throughput):
    # Stored as int4, decoded once per call into the v8 int8 layout the w8 intrinsic reads
    # (which still widens them to int16 in registers).
    (w8,) = _pmaddwd_formats(8, lanes, 0, tp)
    return [replace(w8, name=f"w{name[1:]}d",
                    packed=WeightFormat(name, name, group, "int32", "uint8", 0))
            for name, group in (("v4", 8), ("v4s", 4))]  # fmt: skip


def _no_dot_formats(bits: int, lanes: int, reduction: int, tp: Throughput):
    return [plain_format(bits, "int32", tp)]


for _fam in (
    DotFamily("vpdpbusd", FULL_INT8_QMAX, _vpdpbusd_formats, _vpdpbusd_decoded),
    DotFamily("vpmaddubsw", INT8_WEIGHT_QMAX["vpmaddubsw"], _pmaddubsw_formats,
              _pmaddubsw_decoded),
    DotFamily("vpmaddwd", FULL_INT8_QMAX, _pmaddwd_formats, _pmaddwd_decoded),
    DotFamily("none", FULL_INT8_QMAX, _no_dot_formats),
):
    register_dot_family(_fam)


# ---------------------------------------------------------------------------------------------
# The planner's view of a target
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuModel:
    """What the kernels and the tile planner need to know about a code target.

    Attributes
    ----------
    target : tvm.target.Target
        The code target.
    caps : TargetCaps
        Its capabilities.
    isa : KernelIsa
        Its vector facts.
    dot : DotFamily
        Its int8 dot-product family.
    threads : int
        Threads the work is balanced over (``caps.cores``).
    """

    target: object
    caps: TargetCaps
    isa: KernelIsa
    dot: DotFamily
    threads: int

    @property
    def lanes(self) -> int:
        return self.isa.lanes

    @property
    def throughput(self) -> Throughput:
        return self.isa.throughput

    def max_acc(self, mode: str, ocv: int = 1, weight_regs: int = 1) -> int:
        return self.isa.max_acc(mode, ocv, weight_regs)

    def for_scheme(self, scheme: PrecisionScheme) -> CpuModel:
        """The model a layer of ``scheme`` is planned on: float kernels (fp32 and the
        weight-only schemes) take ``caps.float_vector_bits`` where that is wider than the
        level's integer vectors (AVX without AVX2: ymm floats, xmm integers)."""
        bits = self.caps.float_vector_bits
        if scheme.quantizes_activations or bits == self.isa.vector_bits:
            return self
        return replace(self, isa=replace(self.isa, vector_bits=bits))

    def acc_budget(self, mode: str, weight_regs: int) -> tuple[int, ...]:
        """Accumulator vectors per register block with 1, 2, 3 and 4 channel vectors."""
        return tuple(self.max_acc(mode, v, weight_regs) for v in (1, 2, 3, 4))

    def weight_formats(
        self, scheme: PrecisionScheme, qmax: int | None, reduction: int, depthwise: bool,
        decode: bool = False,
    ) -> list[WeightFormat]:
        """Candidate weight formats of a layer (the planner picks the cheapest).

        Parameters
        ----------
        scheme : PrecisionScheme
            The layer's precision.
        qmax : int or None
            Largest |weight code| (from the numerics target), ``None`` for float weights.
        reduction : int
            Products per output (KH*KW*C/groups).
        depthwise : bool
            Depthwise layers have no channel reduction for a dot instruction.
        decode : bool
            Also offer the family's decode-once int4 formats (:attr:`DotFamily.decoded`).
        """
        tp = self.throughput
        if not scheme.quantizes_activations:  # fp32 and weight-only: float accumulation
            return [plain_format(scheme.weight_bits, "float32", tp)]
        if depthwise or qmax > self.dot.weight_qmax:
            # Codes of a numerics target with a wider exact range (8-bit codes from a VNNI or
            # Arm deploy target on a vpmaddubsw host) take the exact path, never a saturating
            # one.
            fmts = [plain_format(scheme.weight_bits, "int32", tp)]
            if decode and depthwise and scheme.weight_bits == 4:
                fmts.append(decoded_plain_format(tp))
            return fmts
        fmts = self.dot.formats(scheme.weight_bits, self.lanes, reduction, tp)
        if decode and scheme.weight_bits == 4 and self.dot.decoded is not None:
            fmts = fmts + self.dot.decoded(self.lanes, tp)
        return fmts


def _lookup(table: dict, key: str, what: str, caps: TargetCaps):
    try:
        return table[key]
    except KeyError:
        raise ValueError(
            f"no kernels for {what} {key!r} of target {caps.mcpu or caps.triple!r} "
            f"(known: {', '.join(table)})"
        ) from None


def cpu_model(target) -> CpuModel:
    """The :class:`CpuModel` of a code target (``tvm.target.Target`` or JSON dict).

    An int8 dot family without registered kernels runs the integer schemes on the exact 32-bit
    path of family ``"none"``; kernel records say so (``Kernel.info["int8_dot"]``).
    """
    tgt = as_target(target)
    caps = capabilities(tgt)
    isa = _lookup(KERNEL_ISAS, caps.isa, "ISA level", caps)
    dot = DOT_FAMILIES.get(caps.int8_dot, DOT_FAMILIES["none"])
    return CpuModel(tgt, caps, isa, dot, caps.cores)


def numerics_qmax(numerics_target, depthwise: bool = False) -> int:
    """Largest 8-bit weight code of a layer on the numerics target
    (``caps.layer_int8_weight_qmax``: 127 with ``vpdpbusd``, an Arm dot product or no dot
    instruction, and for depthwise convs everywhere; 63 with ``vpmaddubsw``)."""
    return capabilities(as_target(numerics_target)).layer_int8_weight_qmax(depthwise)
