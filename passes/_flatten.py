"""Dense layers that read a flattened conv output flatten the channels-last tensor instead.

torch's ``flatten(x, 1)`` before a classifier orders the features (c, h, w). The layer kernels
keep activations NHWC, so lowered as written that flatten is an NHWC -> NCHW transpose of the
whole feature map (a 10 x 10 x 256 map at batch 8 on haswell: 253 us of a 0.56 ms network,
more than its conv and its classifier together). Ordering the dense layer's weight columns
(h, w, c) instead makes the flatten a free reshape of the NHWC tensor: the same products,
summed in another order. Both lowerings of a layer (:class:`QuantizeAnnotated` and
:class:`SelectPrecisionAtRuntime`) apply it after any weight correction, whose calibration
statistics are in torch's order.
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from aiq_tvm._ir import is_op, static_shape

from ._lowering import NCHW_TO_NHWC, NHWC_TO_NCHW
from .cancel_transposes import _POOLS, _UNARY

__all__ = ["channels_last_flatten", "flatten_order"]

# The ops CancelTransposes moves an NHWC -> NCHW permute across (its rules): behind them the
# permute back to NHWC added here cancels.
_ACROSS = (*_UNARY, *_POOLS)
_MAX_HOPS = 16


def flatten_order(c: int, h: int, w: int) -> np.ndarray:
    """Index of torch's (c, h, w) flatten at each position of the (h, w, c) flatten."""
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)


def _value(expr, lookup):
    """What ``expr`` is bound to, through variables bound to other variables."""
    for _ in range(_MAX_HOPS):
        val = lookup(expr) if isinstance(expr, relax.Var) else None
        if val is None:
            return expr
        expr = val
    return expr


def _from_nhwc(expr, lookup) -> bool:
    """True when ``expr`` is an NHWC -> NCHW ``permute_dims``, possibly under ops that
    CancelTransposes moves it across."""
    for _ in range(_MAX_HOPS):
        val = _value(expr, lookup)
        if not isinstance(val, relax.Call):
            return False
        if is_op(val, "relax.permute_dims"):
            axes = val.attrs.axes
            return axes is not None and tuple(int(a) for a in axes) == NHWC_TO_NCHW
        if not is_op(val, _ACROSS):
            return False
        expr = val.args[0]
    return False


def channels_last_flatten(bb: relax.BlockBuilder, data: relax.Expr, lookup
                          ) -> tuple[relax.Expr, np.ndarray] | None:
    """For a dense layer's ``data`` that flattens an NCHW map which the layer kernels produce
    as NHWC: ``(flat, order)``, where ``flat`` (emitted into ``bb``) flattens the NHWC tensor
    and ``order`` (:func:`flatten_order`) maps its features to torch's, so the layer's
    ``[O, K]`` weight becomes ``weight[:, order]``. ``None`` when ``data`` is not such a
    flatten (then it stays as it is). ``lookup(var)`` returns a variable's bound value or
    None (``PyExprMutator.lookup_binding``)."""
    val = _value(data, lookup)
    if not is_op(val, "relax.reshape"):
        return None
    x = val.args[0]
    shape, out = static_shape(x), static_shape(data)
    if shape is None or len(shape) != 4 or out is None:
        return None
    n, c, h, w = shape
    # 1 x 1 maps are flattened in the same order either way.
    if out != (n, c * h * w) or h * w == 1 or not _from_nhwc(x, lookup):
        return None
    nhwc = bb.emit(relax.op.permute_dims(x, NCHW_TO_NHWC))
    flat = bb.emit(relax.op.reshape(nhwc, [n, h * w * c]))
    return flat, flatten_order(c, h, w)
