"""Which precisions a build tries by default on a target.

Low-bit precisions are candidates by default only where their kernels can beat FP32 on the
target.  Without an int8 dot-product instruction (``TargetCaps.int8_dot == "none"``: SSE-only
x86, generic CPUs) int8 products are widened to int32 and multiplied at about half the FP32
rate, so 8-bit-activation plans are slower; weight-only plans compute in FP32 after
dequantizing every weight, which never beats FP32 on compute-bound layers (docs/performance.md:
ResNet-20, batch 64, w8 12.21 ms vs fp32 11.88 ms).  There the default is FP32 alone, and a
user can still pass ``precisions=`` explicitly.  Pure Python: no TVM import.
"""

from __future__ import annotations

from aiq_tvm.schemes import PRECISIONS, get_precision

__all__ = ["default_precisions"]


def default_precisions(caps) -> tuple[list[str], dict[str, str]]:
    """Default candidate precisions for a target and the ones left out, with the reason.

    Parameters
    ----------
    caps : TargetCaps
        From :func:`aiq_tvm.targets.capabilities`.

    Returns
    -------
    (list of str, dict of str to str)
        The candidates in registry order, and ``{precision: why it is excluded}``.
    """
    if caps.has_int8_dot:
        return list(PRECISIONS), {}
    excluded = {}
    for name in PRECISIONS:
        scheme = get_precision(name)
        if scheme.quantizes_activations:
            excluded[name] = (f"{caps.isa} has no int8 dot-product instruction: int8 products "
                              "are widened to int32 and run slower than FP32")
        elif scheme.quantizes_weights:
            excluded[name] = ("weight-only kernels compute in FP32 after dequantizing weights: "
                              f"not faster than FP32 where int8 does not pay ({caps.isa})")
    return [p for p in PRECISIONS if p not in excluded], excluded
