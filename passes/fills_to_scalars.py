"""FillsToScalars: a constant-filled tensor that feeds an elementwise op becomes a scalar.

PyTorch's attention exports ``where(row_is_masked, full_like(scores, 0), softmax(scores))``.
Once the batch is fixed, ``FoldConstant`` turns ``full_like(scores, 0)`` into a constant of
the scores' full shape, ``[batch, heads, tokens, tokens]`` float32 per attention layer
(ViT-B/16 at batch 64: 119 MB per layer, 1.4 GB in all), although one scalar would do:
``where`` and the arithmetic ops broadcast.

This pass rewrites an operand ``full_like(x, c)``, ``zeros_like(x)``, ``ones_like(x)``,
``full(shape, c)``, ``zeros(shape)`` or ``ones(shape)`` of ``where``, ``add``, ``subtract``,
``multiply``, ``divide``, ``maximum`` or ``minimum`` into the scalar constant ``c``, when another
operand already has the op's output shape (so the result keeps its shape).  The fill itself
is then dead and removed.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from aiq_tvm._ir import const_value, is_const, is_op, rewrite_function

__all__ = ["FillsToScalars"]

_CONSUMERS = tuple(f"relax.{n}" for n in (
    "where", "add", "subtract", "multiply", "divide", "maximum", "minimum"))
_FIXED = {"relax.zeros_like": 0.0, "relax.ones_like": 1.0, "relax.zeros": 0.0,
          "relax.ones": 1.0}


def _fill_value(call) -> float | None:
    """The value every element of a fill op takes, or None for anything else."""
    if is_op(call, tuple(_FIXED)):
        return _FIXED[call.op.name]
    if is_op(call, ("relax.full_like", "relax.full")):
        value = call.args[1]
        if is_const(value) and const_value(value).size == 1:
            return float(const_value(value).reshape(()))
    return None


def _same_shape(a, b) -> bool:
    sa = a.ty.shape if isinstance(a.ty, relax.TensorType) else None
    sb = b.ty.shape if isinstance(b.ty, relax.TensorType) else None
    if sa is None or sb is None or len(sa) != len(sb):
        return False
    return all(tvm_ffi.structural_equal(x, y) for x, y in zip(sa, sb, strict=True))


@mutator
class _Rewriter(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, func: relax.Function):
        super().__init__(mod)
        self.var2val = relax.analysis.get_var2val(func)

    def visit_call_(self, call):
        if not is_op(call, _CONSUMERS):
            return super().visit_call_(call)
        args = list(call.args)
        changed = False
        for i, arg in enumerate(args):
            fill = self.var2val.get(arg) if isinstance(arg, relax.Var) else None
            value = _fill_value(fill)
            others = [a for j, a in enumerate(args) if j != i]
            if value is None or not any(_same_shape(o, call) for o in others):
                continue
            args[i] = relax.const(value, str(arg.ty.dtype))
            changed = True
        if not changed:
            return super().visit_call_(call)
        new_args = [a if is_const(a) else self.visit_expr(a) for a in args]
        return relax.Call(call.op, new_args, call.attrs, call.ty_args)


@tvm.transform.module_pass(opt_level=0, name="FillsToScalars")
class FillsToScalars:
    """Replace constant fills feeding broadcasting ops by scalars (module docstring)."""

    def __init__(self, func_name: str = "main"):
        self.func_name = func_name

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return rewrite_function(mod, self.func_name, _Rewriter)
