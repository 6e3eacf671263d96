"""CancelTransposes: push layout transposes through elementwise ops until they cancel.

QuantizeAnnotated runs convolutions in NHWC and wraps each in ``permute_dims`` pairs. Between
two layers those pairs meet (directly, or across residual adds, activations and pooling) and
this pass removes them, so activations stay NHWC through the network:

* ``permute(permute(x, p), q)``  ->  ``x`` when ``q . p`` is the identity, else one permute
* ``f(permute(x, p))``  ->  ``permute(f(x), p)`` for unary elementwise ``f`` (relu, clip, ...)
* ``g(permute(a, p), permute(b, p))``  ->  ``permute(g(a, b), p)`` for binary elementwise ``g``
  on equal shapes, or with a scalar constant
* ``g(permute(a, p), permute(b, p))``  ->  ``permute(g(a, b), p)`` for binary elementwise ``g``
  on operands of equal rank (broadcasting is per axis, so it commutes with ``p``: squeeze-and-
  excitation scales), or with a constant (transposed on the host: decomposed batch norms)
* ``where(permute(c, p), permute(a, p), permute(b, p))``  ->  ``permute(where(c, a, b), p)``,
  any operand but one may be a constant instead (torch's decomposed softplus, Mish, CELU,
  PReLU, shrink functions)
* ``mean(permute(x, p), axes, keepdims=True)``  ->  ``permute(mean(x, p[axes]), p)``, and
  ``sum`` / ``max`` / ``min`` alike; without ``keepdims`` the axes left keep their order
  (``permute(x, NHWC->NCHW).mean([2, 3])`` is ``x.mean([1, 2])``: MnasNet's pooling, ONNX
  ``ReduceMean`` with ``keepdims=0``) or get the one permute that orders them
* ``softmax(permute(x, p), axis)`` (and ``log_softmax``)  ->  ``permute(softmax(x, p[axis]), p)``
* ``group_norm(permute(x, p), channel_axis=c, axes=a)`` (and ``instance_norm``)  ->
  ``permute(group_norm(x, channel_axis=p[c], axes=p[a]), p)``
* ``pool(permute(x, NHWC->NCHW))`` -> ``permute(pool(x, layout="NHWC"), NHWC->NCHW)`` for
  max/avg/adaptive-avg pooling
* ``reshape(permute(x, p), s)``  ->  ``permute(reshape(permute(x, r), s'), q)`` where the
  reshape only splits or merges axes: applied when ``r`` is the identity (``p`` only moves
  whole groups, e.g. unit axes or a channel split) or when ``q`` is NHWC->NCHW (a channel
  shuffle: ``r`` is then the shuffle itself in NHWC, and ``q`` cancels with the next layer)
* ``concat([permute(a, p), permute(b, p)], axis)``  ->  ``permute(concat([a, b], p[axis]), p)``
* ``split(permute(x, p), axis)``  ->  the pieces of ``split(x, p[axis])``, each permuted
* ``strided_slice(permute(x, p), axes, ...)``  ->  ``permute(strided_slice(x, p[axes], ...), p)``
  (ONNX files write ``torch.chunk`` and other channel splits as slices)

Each rule returns the expression unchanged when it does not apply. Batch norms the frontend
left in the graph (those not after a conv, e.g. DenseNet's pre-activation ones) should be
decomposed and folded first (``DecomposeOpsForInference``, ``FoldConstant``), so their scale
and shift are constants the binary rule moves across.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_op, rewrite_call, wildcard
from tvm.relax.expr_functor import PyExprMutator, mutator

from aiq_tvm._ir import const_value, is_const
from aiq_tvm._ir import is_op as is_call_of

__all__ = ["CancelTransposes"]

_UNARY = ("relax.nn.relu", "relax.clip", "relax.sigmoid", "relax.tanh", "relax.nn.silu",
          "relax.nn.gelu", "relax.nn.gelu_tanh", "relax.exp", "relax.sqrt", "relax.rsqrt",
          "relax.negative", "relax.nn.leakyrelu", "relax.nn.softplus", "relax.log",
          "relax.abs", "relax.sign", "relax.erf", "relax.square", "relax.floor", "relax.ceil",
          "relax.round", "relax.trunc", "relax.sin", "relax.cos", "relax.logical_not",
          "relax.isnan", "relax.isinf", "relax.isfinite", "relax.astype")
_BINARY = ("relax.add", "relax.subtract", "relax.multiply", "relax.divide", "relax.maximum",
           "relax.minimum", "relax.power", "relax.floor_divide", "relax.floor_mod",
           # comparisons and logic: the masks of torch's decomposed activations (softplus's
           # threshold, ELU-like and shrink functions), which ``where`` then reads
           "relax.greater", "relax.greater_equal", "relax.less", "relax.less_equal",
           "relax.equal", "relax.not_equal", "relax.logical_and", "relax.logical_or",
           "relax.logical_xor")
# Reductions over one axis whose attrs name it: the axis moves with the permute.
_AXIS_OPS = {"relax.nn.softmax": relax.op.nn.softmax,
             "relax.nn.log_softmax": relax.op.nn.log_softmax}
# Normalizations over a channel axis and reduced axes named in their attrs (scale and shift
# per channel): the axes move with the permute.
_NORMS = ("relax.nn.group_norm", "relax.nn.instance_norm")
# Reductions over the axes named in their attrs (``axis``, ``keepdims``).
_REDUCTIONS = {"relax.mean": relax.op.mean, "relax.sum": relax.op.sum, "relax.max": relax.op.max,
               "relax.min": relax.op.min}
_POOLS = {
    "relax.nn.max_pool2d": relax.op.nn.max_pool2d,
    "relax.nn.avg_pool2d": relax.op.nn.avg_pool2d,
    "relax.nn.adaptive_avg_pool2d": relax.op.nn.adaptive_avg_pool2d,
}
NHWC_TO_NCHW = [0, 3, 1, 2]
_MAX_ROUNDS = 8  # rule rounds (each to a fixed point); real networks settle in two or three


def _axes(call: relax.Call, ndim: int) -> list[int]:
    axes = call.attrs.axes
    if axes is None:
        return list(range(ndim))[::-1]
    return [int(a) % ndim for a in axes]


def _ndim(expr) -> int:
    return len(expr.ty.shape)


def _inverse(perm: list[int]) -> list[int]:
    return [int(i) for i in np.argsort(perm)]


def _const_for(other, axes: list[int], ndim: int):
    """The constant ``c'`` with ``g(permute(x, p), c) == permute(g(x, c'), p)``, or None."""
    if not is_const(other):
        return None
    value = const_value(other)
    if value.size == 1:
        return other
    if value.ndim > ndim:
        return None
    full = value.reshape((1,) * (ndim - value.ndim) + value.shape)
    return relax.const(np.ascontiguousarray(full.transpose(_inverse(axes))), str(value.dtype))


def _static_dims(expr) -> list[int] | None:
    shape = expr.ty.shape
    if shape is None or not all(isinstance(d, tvm.tirx.IntImm) for d in shape):
        return None
    return [int(d) for d in shape]


def reshape_groups(src: list[int], dst: list[int]) -> list[tuple[list[int], list[int]]] | None:
    """Split a reshape into groups of consecutive source and destination axes with equal
    element counts (unit axes form their own groups); None if the sizes do not factor."""
    groups, i, j = [], 0, 0
    while i < len(src) or j < len(dst):
        if i < len(src) and src[i] == 1 and (j == len(dst) or dst[j] != 1):
            groups.append(([i], []))
            i += 1
            continue
        if j < len(dst) and dst[j] == 1 and (i == len(src) or src[i] != 1):
            groups.append(([], [j]))
            j += 1
            continue
        if i == len(src) or j == len(dst):
            return None
        si, dj, ps, pd = [i], [j], src[i], dst[j]
        i, j = i + 1, j + 1
        while ps != pd:
            if ps < pd and i < len(src):
                si.append(i)
                ps, i = ps * src[i], i + 1
            elif pd < ps and j < len(dst):
                dj.append(j)
                pd, j = pd * dst[j], j + 1
            else:
                return None
        groups.append((si, dj))
    return groups


@mutator
class _TupleRules(PyExprMutator):
    """``concat`` and ``split`` rules: their operands or results are tuples, which the
    call-pattern rewriter does not see through."""

    def __init__(self, mod: tvm.IRModule):
        super().__init__(mod)
        self.changed = False

    def _value(self, expr):
        """What ``expr`` is bound to, through variable aliases."""
        for _ in range(16):
            val = self.lookup_binding(expr) if isinstance(expr, relax.Var) else None
            if val is None:
                return expr
            expr = val
        return expr

    def _permuted(self, expr):
        """``(inner, axes)`` when ``expr`` is bound to ``permute_dims(inner)``."""
        val = self._value(expr)
        if is_call_of(val, "relax.permute_dims"):
            inner = val.args[0]
            return inner, _axes(val, _ndim(inner))
        return None

    def _fields(self, expr):
        val = self._value(expr)
        return list(val.fields) if isinstance(val, relax.Tuple) else None

    def visit_tuple_getitem_(self, op):
        op = super().visit_tuple_getitem_(op)
        fields = self._fields(op.tuple_value)
        return fields[op.index] if fields is not None else op

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if is_call_of(call, "relax.concat"):
            return self._concat(call)
        if is_call_of(call, "relax.split"):
            return self._split(call)
        return call

    def _concat(self, call):
        fields = self._fields(call.args[0])
        perms = [self._permuted(f) for f in fields] if fields else None
        if not perms or any(p is None for p in perms):
            return call
        axes = perms[0][1]
        if any(p[1] != axes for p in perms):
            return call
        axis = int(call.attrs.axis) % len(axes)
        inner = self.builder_.emit(relax.op.concat([p[0] for p in perms], axis=axes[axis]))
        self.changed = True
        return relax.op.permute_dims(inner, axes)

    def _split(self, call):
        perm = self._permuted(call.args[0])
        if perm is None:
            return call
        x, axes = perm
        ios = call.attrs.indices_or_sections
        ios = int(ios) if isinstance(ios, tvm.tirx.IntImm) else [int(i) for i in ios]
        axis = int(call.attrs.axis) % len(axes)
        parts = self.builder_.emit(relax.op.split(x, ios, axis=axes[axis]))
        count = len(call.ty.fields)
        pieces = [self.builder_.emit(relax.op.permute_dims(relax.TupleGetItem(parts, i), axes))
                  for i in range(count)]
        self.changed = True
        return relax.Tuple(pieces)


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
        reductions = None
        for op in _REDUCTIONS:
            pat = is_op(op)(self.perm_x)
            reductions = pat if reductions is None else reductions | pat
        self.reductions = reductions
        # where(c, a, b): every operand permuted alike, or a constant (at least one permuted).
        self.where_perms = [is_op("relax.permute_dims")(wildcard()) for _ in range(3)]
        self.where_others = [wildcard() for _ in range(3)]
        where = None
        for mask in range(1, 8):
            args = [self.where_perms[i] if mask >> i & 1 else self.where_others[i]
                    for i in range(3)]
            pat = is_op("relax.where")(*args)
            where = pat if where is None else where | pat
        self.where = where
        axis_ops = None
        for op in _AXIS_OPS:
            pat = is_op(op)(self.perm_x)
            axis_ops = pat if axis_ops is None else axis_ops | pat
        self.axis_ops = axis_ops
        norms = None
        for op in _NORMS:
            pat = is_op(op)(self.perm_x, wildcard(), wildcard())
            norms = pat if norms is None else norms | pat
        self.norms = norms
        self.reshape = is_op("relax.reshape")(self.perm_x, wildcard())
        self.slice = (is_op("relax.strided_slice")(self.perm_x, wildcard(), wildcard(), wildcard())
                      | is_op("relax.strided_slice")(self.perm_x, wildcard(), wildcard(),
                                                     wildcard(), wildcard()))
        pools = None
        for op in _POOLS:
            pools = is_op(op)(self.perm_x) if pools is None else pools | is_op(op)(self.perm_x)
        self.pattern = (self.double | self.unary | self.binary | self.reductions | self.reshape
                        | pools | self.where | self.axis_ops | self.norms | self.slice)

    # ---------------------------------------------------------------- rules
    def _rewrite(self, expr, matches):
        op = expr.op.name
        if op == "relax.permute_dims":
            return self._double(expr, matches)
        if op in _UNARY:
            return self._unary(expr, matches)
        if op in _BINARY:
            return self._binary(expr, matches)
        if op in _REDUCTIONS:
            return self._reduction(expr, matches)
        if op == "relax.reshape":
            return self._reshape(expr, matches)
        if op in _POOLS:
            return self._pool(expr, matches)
        if op == "relax.where":
            return self._where(expr, matches)
        if op in _AXIS_OPS:
            return self._axis_op(expr, matches)
        if op in _NORMS:
            return self._norm(expr, matches)
        if op == "relax.strided_slice":
            return self._slice(expr, matches)
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

    def _slice(self, expr, m):
        perm, x = m[self.perm_x], m[self.x]
        axes = _axes(perm, _ndim(x))
        sliced = expr.args[1]
        if not isinstance(sliced, relax.Tuple) or not all(
                isinstance(a, tvm.tirx.IntImm) for a in sliced.fields):
            return expr
        moved = relax.Tuple([tvm.tirx.IntImm("int64", axes[int(a.value) % len(axes)])
                             for a in sliced.fields])
        inner = relax.Call(expr.op, [x, moved, *expr.args[2:]], expr.attrs, expr.ty_args)
        return relax.op.permute_dims(inner, axes)

    def _unary(self, expr, m):
        perm, x = m[self.perm_x], m[self.x]
        args = [x, *expr.args[1:]]
        inner = relax.Call(expr.op, args, expr.attrs, expr.ty_args)
        return relax.op.permute_dims(inner, _axes(perm, _ndim(x)))

    def _binary(self, expr, m):
        perm, x = m[self.perm_x], m[self.x]
        n = _ndim(x)
        axes = _axes(perm, n)
        if self.perm_y in m:
            other = m[self.y]
            if _ndim(other) != n or _axes(m[self.perm_y], n) != axes:
                return expr
            args = [x, other]
        else:
            right = self.c_right in m
            const = _const_for(m[self.c_right] if right else m[self.c_left], axes, n)
            if const is None:
                return expr
            args = [x, const] if right else [const, x]
        inner = relax.Call(expr.op, args, expr.attrs, expr.ty_args)
        return relax.op.permute_dims(inner, axes)

    def _where(self, expr, m):
        permuted = [m[p] for p in self.where_perms if p in m]
        n = _ndim(expr)
        axes = _axes(permuted[0], n)
        args = []
        for perm, other in zip(self.where_perms, self.where_others, strict=True):
            if perm in m:
                if _ndim(m[perm]) != n or _axes(m[perm], n) != axes:
                    return expr
                args.append(m[perm].args[0])
            else:
                const = _const_for(m[other], axes, n)
                if const is None:
                    return expr
                args.append(const)
        return relax.op.permute_dims(relax.op.where(*args), axes)

    def _axis_op(self, expr, m):
        perm, x = m[self.perm_x], m[self.x]
        p = _axes(perm, _ndim(x))
        inner = _AXIS_OPS[expr.op.name](x, axis=p[int(expr.attrs.axis) % len(p)])
        return relax.op.permute_dims(inner, p)

    def _norm(self, expr, m):
        perm, x = m[self.perm_x], m[self.x]
        p = _axes(perm, _ndim(x))
        a = expr.attrs
        channel = p[int(a.channel_axis) % len(p)]
        axes = sorted(p[int(v) % len(p)] for v in a.axes)
        common = {"epsilon": float(a.epsilon), "center": bool(a.center),
                  "scale": bool(a.scale)}
        gamma, beta = expr.args[1:]
        if expr.op.name == "relax.nn.group_norm":
            inner = relax.op.nn.group_norm(x, gamma, beta, int(a.num_groups), channel, axes,
                                           **common)
        else:
            inner = relax.op.nn.instance_norm(x, gamma, beta, channel, axes, **common)
        return relax.op.permute_dims(inner, p)

    def _reduction(self, expr, m):
        perm, x = m[self.perm_x], m[self.x]
        if expr.attrs.axis is None:
            return expr  # over every axis: the order does not matter, nor does the permute
        n = _ndim(x)
        p = _axes(perm, n)
        reduced = {int(a) % n for a in expr.attrs.axis}
        axes = sorted(p[a] for a in reduced)
        keep = bool(expr.attrs.keepdims)
        inner = _REDUCTIONS[expr.op.name](x, axes, keepdims=keep)
        if keep:
            return relax.op.permute_dims(inner, p)
        # The axes left, in the order x has them and in the order the result wants them.
        left = sorted(p[a] for a in range(n) if a not in reduced)
        order = [left.index(p[a]) for a in range(n) if a not in reduced]
        if order == list(range(len(order))):
            return inner
        return relax.op.permute_dims(inner, order)

    def _reshape(self, expr, m):
        perm, x = m[self.perm_x], m[self.x]
        src, dst = _static_dims(perm), _static_dims(expr)
        groups = reshape_groups(src, dst) if src is not None and dst is not None else None
        if groups is None:
            return expr
        p = _axes(perm, len(src))
        keyed, key = [], (-1, 0)
        for k, (si, _) in enumerate(groups):
            # A new unit axis stays right after the group before it.
            key = (min(p[i] for i in si), 0) if si else (key[0], k + 1)
            keyed.append((key, k))
        order = [groups[k] for _, k in sorted(keyed)]
        r = [p[i] for si, _ in order for i in si]
        new_dims = [dst[j] for _, dj in order for j in dj]
        new_pos = [j for _, dj in order for j in dj]
        q = [new_pos.index(j) for j in range(len(dst))]
        identity = r == list(range(len(r)))
        if not identity and q != NHWC_TO_NCHW:
            return expr  # would add a transpose that nothing cancels
        inner = x if identity else relax.op.permute_dims(x, r)
        out = relax.op.reshape(inner, new_dims)
        return out if q == list(range(len(q))) else relax.op.permute_dims(out, q)

    def _pool(self, expr, m):
        perm, x = m[self.perm_x], m[self.x]
        a = expr.attrs
        if _axes(perm, _ndim(x)) != NHWC_TO_NCHW or a.layout != "NCHW" or \
                (a.out_layout or "NCHW") != "NCHW":
            return expr
        if expr.op.name == "relax.nn.adaptive_avg_pool2d":
            size = None if a.output_size is None else [int(v) for v in a.output_size]
            pooled = relax.op.nn.adaptive_avg_pool2d(x, size, layout="NHWC")
        else:
            pooled = _POOLS[expr.op.name](
                x, pool_size=[int(v) for v in a.pool_size], strides=[int(v) for v in a.strides],
                padding=[int(v) for v in a.padding], dilation=[int(v) for v in a.dilation],
                ceil_mode=bool(a.ceil_mode), count_include_pad=bool(a.count_include_pad),
                layout="NHWC")
        return relax.op.permute_dims(pooled, NHWC_TO_NCHW)

    # ---------------------------------------------------------------- pass
    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        out = tvm.IRModule({gv: f for gv, f in mod.functions_items()}, attrs=mod.attrs)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function) and not (
                func.attrs is not None and "Primitive" in func.attrs
            ):
                out[gv] = self._rewrite_function(out, gv, func)
        return relax.transform.DeadCodeElimination()(out)

    def _rewrite_function(self, mod: tvm.IRModule, gv, func: relax.Function) -> relax.Function:
        """Call rules to a fixed point, then the tuple rules; repeat while they change it."""
        for _ in range(_MAX_ROUNDS):
            func = rewrite_call(self.pattern, self._rewrite, func)
            tuples = _TupleRules(mod)
            new = tuples.visit_expr(func)
            if not tuples.changed:
                return new
            mod = relax.transform.DeadCodeElimination()(_with(mod, gv, new))
            func = mod[gv]
        return func


def _with(mod: tvm.IRModule, gv, func) -> tvm.IRModule:
    new = tvm.IRModule({g: f for g, f in mod.functions_items()}, attrs=mod.attrs)
    new[gv] = func
    return new
