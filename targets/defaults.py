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

Where int8 does not pay, weight-only precisions do not either: they compute in FP32 after
dequantizing every weight, which never beats FP32 on compute-bound layers (docs/performance.md:
ResNet-20, batch 64, w8 12.21 ms vs fp32 11.88 ms).  The default is then FP32 alone, so no
default plan is slower than FP32; a user can still pass ``precisions=`` (with
``objective="roofline"`` the search quantizes only where the roofline predicts a gain).
Pure Python: no TVM import.
"""

from __future__ import annotations

from aiq_tvm.schemes import PRECISIONS, get_precision

__all__ = ["default_precisions", "int8_pays"]


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
    if pays:
        return list(PRECISIONS), {}
    excluded = {}
    for name in PRECISIONS:
        scheme = get_precision(name)
        if scheme.quantizes_activations:
            excluded[name] = why
        elif scheme.quantizes_weights:
            excluded[name] = ("weight-only kernels compute in FP32 after dequantizing weights: "
                              f"not faster than FP32 where int8 does not pay ({caps.isa})")
    return [p for p in PRECISIONS if p not in excluded], excluded
