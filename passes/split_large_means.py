"""SplitLargeMeans: a mean over several large axes becomes a mean of means, one axis at a time.

TVM lowers ``mean(x, axis=[H, W])`` to one float32 accumulator per output element that adds
the ``H * W`` inputs in sequence. Its rounding error grows with the count: for the global
average pooling of squeeze-and-excitation blocks at 112 x 112 (EfficientNet at 224) the pooled
value was ~1e-5 off (relative), against ~4e-7 for torch, and through the network's many SE
blocks the logits drifted by ~1e-4 to 3e-4 of their largest value.

Averaging over the last reduced axis first, then over the others, changes nothing in exact
arithmetic (equal-size groups) and sums at most ``max(H, W)`` values per accumulator, so
the error stays near torch's. Means whose reduced extent is at most ``min_count`` (7 x 7
pooling before a classifier) are left alone.
"""

from __future__ import annotations

import math

import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

__all__ = ["SplitLargeMeans"]


def _split_axes(call, min_count: int) -> tuple[list[int], int] | None:
    """``(other axes, last axis)`` of a float mean over >= 2 static axes with a large count."""
    if not (isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op)
            and call.op.name == "relax.mean" and call.attrs.axis is not None):
        return None
    ty = call.args[0].ty
    if getattr(ty, "shape", None) is None or not str(ty.dtype).startswith("float"):
        return None
    dims = list(ty.shape)
    axes = sorted(int(a) % len(dims) for a in call.attrs.axis)
    if len(axes) < 2 or not all(isinstance(dims[a], tvm.tirx.IntImm) for a in axes):
        return None
    if math.prod(int(dims[a]) for a in axes) <= min_count:
        return None
    return axes[:-1], axes[-1]


@mutator
class _MeanSplitter(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, min_count: int):
        super().__init__(mod)
        self.min_count = min_count

    def visit_call_(self, call):
        split = _split_axes(call, self.min_count)
        if split is None:
            return super().visit_call_(call)
        others, last = split
        x = self.visit_expr(call.args[0])
        # keepdims on the first stage keeps the other axes' indices valid for the second.
        inner = self.builder_.emit(relax.op.mean(x, axis=[last], keepdims=True))
        return relax.op.mean(inner, axis=others + [last], keepdims=bool(call.attrs.keepdims))


@tvm.transform.module_pass(opt_level=0, name="SplitLargeMeans")
class SplitLargeMeans:
    """Split float means over more than ``min_count`` elements (see the module docstring)."""

    def __init__(self, min_count: int = 256):
        self.min_count = int(min_count)

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        updates = {}
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                updates[gv] = _MeanSplitter(mod, self.min_count).visit_expr(func)
        mod = mod.clone()  # the caller's module stays as it was
        for gv, func in updates.items():
            mod[gv] = func
        return mod
