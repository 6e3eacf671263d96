"""Which precisions a build tries by default on a target.

Low-bit precisions are candidates by default only where int8 pays on the target: it has an
int8 dot-product instruction (``TargetCaps.has_int8_dot``) *and* the target's roofline preset
puts the int8 peak above the FP32 peak.

* Without an int8 dot instruction (CPUs other than x86 and AArch64: level ``generic``) int8
  products are widened to int32 and multiplied at about a quarter of the FP32 rate (measured
  0.23x on x86 before the SSE2 level got its ``pmaddwd`` kernels), so plans with 8-bit
  activations are slower.
* A preset whose int8 peak is not above its FP32 peak says the same of the instruction the
  target has.

Where int8 pays, weight-only precisions are still left out on x86 targets whose float vectors
are 128-bit (SSE2, SSSE3 without AVX): dequantizing into xmm floats measured slower than FP32
there (:func:`weight_only_pays`).

Where int8 does not pay, weight-only precisions do not either: they compute in FP32 after
dequantizing every weight, which never beats FP32 on compute-bound layers (docs/performance.md:
ResNet-20, batch 64, w8 12.21 ms vs fp32 11.88 ms).  The default is then FP32 alone, so no
default plan is slower than FP32; a user can still pass ``precisions=`` (with
``objective="roofline"`` the search quantizes only where the roofline predicts a gain).

Int8 does not pay either where its instructions retire no more products than FP32's
multiply-add (:func:`int8_products_per_instruction`): Armv8.0 NEON without ``+dotprod``,
whose ``smull`` path (two ``smull``, ``addp``, ``sadalp``) takes four instructions per 16
products, as many as ``fmla`` takes for FP32, which also runs 3 x 3 layers as Winograd with
fewer multiplies.
Executed on the emulated board (docs/arm.md, "Executed instructions"), every low-bit plan of
ResNet-20 and MobileNetV2 tried there ran more instructions than FP32 but one (int8 under the
FP32 speed floor, 0.98x), the default AIQ plan under that floor included (1.05x and 1.31x).
Pure Python: no TVM import.
"""

from __future__ import annotations

from aiq_tvm.schemes import PRECISIONS, get_precision

__all__ = ["default_precisions", "int8_pays", "int8_products_per_instruction",
           "weight_only_pays", "weight_only_verdict"]

# Int8 products an int8 path retires per instruction, per 128 bits of vector, by dot family
# (the instructions of one accumulation step, in the kernels of targets/x86 and targets/arm):
# vpdpbusd 16 in one; vpmaddubsw + vpmaddwd + vpaddd 16 in three; SSE2 widens to int16
# (punpck) before pmaddwd: 8 in two; sdot 16 in one; smmla 32 in one; smull8 (two smull,
# addp, sadalp) 16 in four.
_INT8_PRODUCTS = {"vpdpbusd": 16.0, "vpmaddubsw": 16 / 3, "vpmaddwd": 4.0, "sdot": 16.0,
                  "smmla": 32.0, "smull": 4.0, "none": 0.0}


def int8_pays(caps, preset=None) -> tuple[bool, str]:
    """Whether int8 kernels can beat FP32 on a target, and why not when they cannot.

    Parameters
    ----------
    caps : TargetCaps
        From :func:`aiq_tvm.targets.capabilities`.
    preset : CpuPreset, optional
        The target's roofline preset (:func:`aiq_tvm.targets.resolve_target`); without one,
        only the instruction counts.
    """
    if not caps.has_int8_dot:
        return False, (f"{caps.isa} has no int8 dot-product instruction: int8 products are "
                       "widened to int32 and run slower than FP32")
    int8, fp32 = int8_products_per_instruction(caps)
    if int8 <= fp32:
        return False, (f"{caps.isa}: int8 via {caps.int8_dot} retires {int8:g} products per "
                       f"instruction per 128 bits, no more than FP32's {fp32:g}: it can gain "
                       "only on layers bound by their bytes")
    if preset is not None and preset.peak_gops_int8 <= preset.peak_gflops_fp32:
        return False, (f"preset {preset.name} puts the int8 peak ({preset.peak_gops_int8:g} "
                       f"GOP/s via {caps.int8_dot}) at or below the FP32 peak "
                       f"({preset.peak_gflops_fp32:g} GFLOP/s)")
    return True, ""


def default_precisions(caps, preset=None) -> tuple[list[str], dict[str, str]]:
    """Default candidate precisions for a target and the ones left out, with the reason.

    Parameters
    ----------
    caps : TargetCaps
        From :func:`aiq_tvm.targets.capabilities`.
    preset : CpuPreset, optional
        The target's roofline preset (see :func:`int8_pays`).

    Returns
    -------
    (list of str, dict of str to str)
        The candidates in registry order, and ``{precision: why it is excluded}``.
    """
    pays, why = int8_pays(caps, preset)
    weight_only = weight_only_verdict(caps, preset)
    excluded = {}
    for name in PRECISIONS:
        scheme = get_precision(name)
        if scheme.quantizes_activations and not pays:
            excluded[name] = why
        elif not scheme.quantizes_activations and scheme.quantizes_weights and not weight_only[0]:
            excluded[name] = weight_only[1]
    return [p for p in PRECISIONS if p not in excluded], excluded


def int8_products_per_instruction(caps) -> tuple[float, float]:
    """(int8, FP32) multiply-accumulates per instruction per 128 bits on a target: its int8
    dot family's (:data:`_INT8_PRODUCTS`) and FP32's (4 with a fused multiply-add, which every
    AArch64 core and x86 targets with ``fma`` have; 2 for ``mulps`` + ``addps``)."""
    fused = caps.arch == "aarch64" or "fma" in caps.features
    return _INT8_PRODUCTS.get(caps.int8_dot, 0.0), 4.0 if fused else 2.0


def weight_only_verdict(caps, preset=None) -> tuple[bool, str]:
    """Whether weight-only kernels (``w8``, ``w4``) can beat FP32 on a target, and why not:
    never where int8 does not pay (:func:`int8_pays`), else :func:`weight_only_pays`. The
    default precisions and the speed floor (:mod:`aiq_tvm.floor`) both follow it."""
    if not int8_pays(caps, preset)[0]:
        return False, ("weight-only kernels compute in FP32 after dequantizing weights: not "
                       f"faster than FP32 where int8 does not pay ({caps.isa})")
    return weight_only_pays(caps)


def weight_only_pays(caps) -> tuple[bool, str]:
    """Whether weight-only kernels (``w8``, ``w4``) can beat FP32 on a target where int8 pays.

    They dequantize every weight into float vectors before the FP32 multiply-adds, which
    pays only where reading the smaller weights saves more than the unpacking costs. On x86
    with 128-bit float vectors (SSE2, SSSE3 without AVX) the unpacking costs more: MobileNetV2
    at 32 x 32, batch 1, one thread, `scripts/profile_insitu.py` (docs/performance_isa.md):
    w4 1.74x and w8 1.34x FP32's time on an ``x86-64`` build, 1.17x and 1.08x on ``goldmont``.
    """
    if caps.arch == "x86_64" and caps.float_vector_bits <= 128:
        return False, (f"weight-only kernels unpack weights into {caps.float_vector_bits}-bit "
                       "float vectors, measured slower than FP32 on such x86 targets")
    return True, ""
