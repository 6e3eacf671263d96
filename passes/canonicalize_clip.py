"""CanonicalizeClip: turn ONNX's lowered Clip back into ``relax.clip`` / ``relax.nn.relu``.

TVM's ONNX importer lowers ``Clip(x, lo, hi)`` straight to TE kernels, after guarding each
bound against NaN::

    lo' = where(isnan(lo), -inf, lo)
    y   = call_tir(maximum, (x, lo'))
    y   = call_tir(minimum, (y, hi'))

With constant bounds (ReLU6, ReLU exported as Clip) that hides the activation from the AIQ
layer patterns, which fuse ``relax.clip`` and ``relax.nn.relu`` into the layer's epilogue.
After constant folding the guarded bounds are scalar constants; this pass rewrites

* ``minimum(maximum(x, lo), hi)``  ->  ``clip(x, lo, hi)``
* ``maximum(x, 0)``                ->  ``relu(x)``

where ``maximum``/``minimum`` are the importer's ``call_tir`` kernels and the bounds are
finite scalar constants.  Anything else is left as it is.
"""

from __future__ import annotations

import re

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from aiq_tvm._ir import const_value, is_const

__all__ = ["CanonicalizeClip"]

_KERNEL = re.compile(r"(maximum|minimum)\d*")


def _tir_kernel(call) -> tuple[str, relax.Expr, float] | None:
    """``(kind, tensor, bound)`` of ``call_tir(maximum|minimum, (x, scalar constant))``."""
    if not (isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op)
            and call.op.name == "relax.call_tir"):
        return None
    gv, args = call.args[0], call.args[1]
    match = _KERNEL.fullmatch(gv.name_hint) if isinstance(gv, relax.GlobalVar) else None
    if match is None or not isinstance(args, relax.Tuple) or len(args.fields) != 2:
        return None
    x, bound = args.fields
    if not is_const(bound) or const_value(bound).size != 1:
        return None
    value = float(const_value(bound).reshape(()))
    if not np.isfinite(value) or str(bound.ty.dtype) != str(x.ty.dtype):
        return None
    return match.group(1), x, value


@mutator
class _ClipRewriter(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, var2val: dict):
        super().__init__(mod)
        self.var2val = var2val

    def visit_call_(self, call):
        k = _tir_kernel(call)
        if k is not None and k[0] == "minimum":
            inner = self.var2val.get(k[1]) if isinstance(k[1], relax.Var) else None
            lo = _tir_kernel(inner)
            if lo is not None and lo[0] == "maximum" and lo[2] <= k[2]:
                return relax.op.clip(self.visit_expr(lo[1]), lo[2], k[2])
        if k is not None and k[0] == "maximum" and k[2] == 0.0:
            return relax.op.nn.relu(self.visit_expr(k[1]))
        return super().visit_call_(call)


@tvm.transform.module_pass(opt_level=0, name="CanonicalizeClip")
class CanonicalizeClip:
    """Rewrite the ONNX importer's Clip kernels (see the module docstring)."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        mod = relax.transform.FoldConstant()(mod)
        updates = {}
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                rewriter = _ClipRewriter(mod, relax.analysis.get_var2val(func))
                updates[gv] = rewriter.visit_expr(func)
        for gv, func in updates.items():
            mod[gv] = func
        return tvm.transform.Sequential([
            relax.transform.DeadCodeElimination(), relax.transform.CanonicalizeBindings()])(mod)
