"""CancelTransposes: push layout transposes through elementwise ops until they cancel.

QuantizeAnnotated runs convolutions in NHWC and wraps each in ``permute_dims`` pairs. Between
two layers those pairs meet (directly, or across residual adds, activations and pooling) and
this pass removes them, so activations stay NHWC through the network:

* ``permute(permute(x, p), q)``  ->  ``x`` when ``q . p`` is the identity, else one permute
* ``f(permute(x, p))``  ->  ``permute(f(x), p)`` for unary elementwise ``f`` (relu, clip, ...)
* ``g(permute(a, p), permute(b, p))``  ->  ``permute(g(a, b), p)`` for binary elementwise ``g``
  on equal shapes, or with a scalar constant
* ``mean(permute(x, p), axes, keepdims=True)``  ->  ``permute(mean(x, p[axes]), p)``
* ``reshape(permute(x, p), s)``  ->  ``reshape(x, s)`` when ``p`` only moves size-1 axes

Each rule returns the expression unchanged when it does not apply.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.dpl import is_op, rewrite_call, wildcard

from aiq_tvm._ir import const_value, is_const, static_shape

__all__ = ["CancelTransposes"]

_UNARY = ("relax.nn.relu", "relax.clip", "relax.sigmoid", "relax.tanh", "relax.nn.silu")
_BINARY = ("relax.add", "relax.subtract", "relax.multiply", "relax.maximum", "relax.minimum")


def _axes(call: relax.Call, ndim: int) -> list[int]:
    axes = call.attrs.axes
    if axes is None:
        return list(range(ndim))[::-1]
    return [int(a) % ndim for a in axes]


def _ndim(expr) -> int:
    return len(expr.ty.shape)


def _scalar_const(expr) -> bool:
    return is_const(expr) and const_value(expr).size == 1


@tvm.transform.module_pass(opt_level=0, name="CancelTransposes")
class CancelTransposes:
    """Sink and cancel ``permute_dims`` (see the module docstring)."""

    def __init__(self):
        self.x, self.y = wildcard(), wildcard()
        self.perm_x = is_op("relax.permute_dims")(self.x)
        self.perm_y = is_op("relax.permute_dims")(self.y)
        self.double = is_op("relax.permute_dims")(self.perm_x)
        unary = None
        for op in _UNARY:
            pat = is_op(op)(self.perm_x) if op != "relax.clip" else is_op(op)(
                self.perm_x, wildcard(), wildcard())
            unary = pat if unary is None else unary | pat
        self.unary = unary
        # Distinct wildcards tell the rewriter which operand order matched.
        self.c_right, self.c_left = wildcard(), wildcard()
        binary = None
        for op in _BINARY:
            pats = [is_op(op)(self.perm_x, self.perm_y), is_op(op)(self.perm_x, self.c_right),
                    is_op(op)(self.c_left, self.perm_x)]
            for pat in pats:
                binary = pat if binary is None else binary | pat
        self.binary = binary
        self.mean = is_op("relax.mean")(self.perm_x)
        self.reshape = is_op("relax.reshape")(self.perm_x, wildcard())
        self.pattern = self.double | self.unary | self.binary | self.mean | self.reshape

    # ---------------------------------------------------------------- rules
    def _rewrite(self, expr, matches):
        op = expr.op.name
        if op == "relax.permute_dims":
            return self._double(expr, matches)
        if op in _UNARY:
            return self._unary(expr, matches)
        if op in _BINARY:
            return self._binary(expr, matches)
        if op == "relax.mean":
            return self._mean(expr, matches)
        if op == "relax.reshape":
            return self._reshape(expr, matches)
        return expr

    def _double(self, expr, m):
        inner = m[self.perm_x]
        x = m[self.x]
        n = _ndim(x)
        p, q = _axes(inner, n), _axes(expr, n)
        composed = [p[i] for i in q]
        if composed == list(range(n)):
            return x
        return relax.op.permute_dims(x, composed)

    def _unary(self, expr, m):
        perm, x = m[self.perm_x], m[self.x]
        args = [x, *expr.args[1:]]
        inner = relax.Call(expr.op, args, expr.attrs, expr.ty_args)
        return relax.op.permute_dims(inner, _axes(perm, _ndim(x)))

    def _binary(self, expr, m):
        perm, x = m[self.perm_x], m[self.x]
        axes = _axes(perm, _ndim(x))
        if self.perm_y in m:
            other = m[self.y]
            if _axes(m[self.perm_y], _ndim(other)) != axes:
                return expr
            if static_shape(x) is None or static_shape(x) != static_shape(other):
                return expr
            args = [x, other]
        else:
            right = self.c_right in m
            other = m[self.c_right] if right else m[self.c_left]
            if not _scalar_const(other):
                return expr
            args = [x, other] if right else [other, x]
        inner = relax.Call(expr.op, args, expr.attrs, expr.ty_args)
        return relax.op.permute_dims(inner, axes)

    def _mean(self, expr, m):
        perm, x = m[self.perm_x], m[self.x]
        if not expr.attrs.keepdims or expr.attrs.axis is None:
            return expr
        n = _ndim(x)
        p = _axes(perm, n)
        axes = sorted(p[int(a) % n] for a in expr.attrs.axis)
        return relax.op.permute_dims(relax.op.mean(x, axes, keepdims=True), p)

    def _reshape(self, expr, m):
        perm, x = m[self.perm_x], m[self.x]
        shape = static_shape(x)
        if shape is None:
            return expr
        p = _axes(perm, len(shape))
        moved = [a for a in p if shape[a] != 1]
        if moved != sorted(moved):
            return expr  # non-unit axes change order: a real transpose
        return relax.op.reshape(x, expr.args[1])

    # ---------------------------------------------------------------- pass
    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        out = tvm.IRModule({gv: f for gv, f in mod.functions_items()}, attrs=mod.attrs)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function) and not (
                func.attrs is not None and "Primitive" in func.attrs
            ):
                out[gv] = rewrite_call(self.pattern, self._rewrite, func)
        return relax.transform.DeadCodeElimination()(out)
