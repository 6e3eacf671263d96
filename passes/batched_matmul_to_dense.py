"""BatchedMatmulToDense: a static weight applied to every token is one 2-D dense.

A ``Linear`` on token activations ``[B, T, C]`` multiplies every row by the same ``[C, K]``
weight: it is an ordinary dense over ``B * T`` rows.  PyTorch exports some of them as
batched matmuls instead, e.g. ``nn.MultiheadAttention``'s input projection becomes::

    w = broadcast_to(permute_dims(in_proj_weight), [T, C, 3C])
    y = matmul(x, w)                    # x: [T, B, C]
    y = add(y, in_proj_bias)

Two things go wrong with that form.  Once weights are bound, ``FoldConstant`` materializes
the broadcast weight, one copy per token: ViT-B/16's attention weight becomes a
(197, 768, 2304) float32 constant (1.4 GB per encoder layer).  And a batched matmul is no
AIQ layer, so the projection stays fp32 under an auto-generated name.

This pass rewrites ``matmul(x, W)`` and ``matmul(x, broadcast_to(W))`` where ``W`` is a static
2-D weight (a weight parameter, a constant, or ops over them) and ``x`` has more than two
dimensions, into::

    reshape(add(matmul(reshape(x, [rows, C]), W), bias), [..., K])

(the bias add, when the matmul's only reader is one, moves inside the reshape so that the
layer pattern fuses it).  The broadcast disappears, and the dense becomes an AIQ layer named
by its weight (``encoder.layers.encoder_layer_0.self_attention.in_proj``).
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from aiq_tvm._ir import is_op, rewrite_function, static_shape, use_counts

from ._layers import _is_static as is_static
from ._layers import static_vars

__all__ = ["BatchedMatmulToDense"]


def _same_dims(a, b) -> bool:
    """Equal dimension lists, symbolic dimensions included."""
    if len(a) != len(b):
        return False
    return all(int(x) == int(y) if isinstance(x, tvm.tirx.IntImm) and isinstance(
        y, tvm.tirx.IntImm) else tvm_ffi.structural_equal(x, y) for x, y in zip(a, b, strict=True))


@mutator
class _Rewriter(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, func: relax.Function):
        super().__init__(mod)
        self.var2val = relax.analysis.get_var2val(func)
        self.static = static_vars(func)
        self.uses = use_counts(func)

    def _weight(self, w):
        """The static 2-D weight behind ``w`` (looking through ``broadcast_to``), or None."""
        val = self.var2val.get(w) if isinstance(w, relax.Var) else None
        if is_op(val, "relax.broadcast_to"):
            inner = val.args[0]
            shape = static_shape(inner)
            target = list(w.ty.shape) if w.ty.shape is not None else []
            # Only leading (batch) dimensions added, possibly symbolic ones.
            if shape is not None and len(shape) == 2 and len(target) > 2 and _same_dims(
                    target[-2:], list(inner.ty.shape)):
                w = inner
        if static_shape(w) is None or len(static_shape(w)) != 2 or not is_static(w, self.static):
            return None
        return w

    def _dense(self, call):
        """``(x, W, out_dtype)`` when ``call`` is a matmul this pass flattens, else None."""
        if not is_op(call, "relax.matmul") or len(call.args) != 2:
            return None
        x, w = call.args
        x_shape, out_shape = x.ty.shape, call.ty.shape
        if x_shape is None or out_shape is None or len(x_shape) <= 2:
            return None
        weight = self._weight(w)
        # The batch dimensions must come from x alone (not broadcast from the weight).
        if weight is None or not _same_dims(list(x_shape)[:-1], list(out_shape)[:-1]):
            return None
        return x, weight, call.attrs.out_dtype

    def _flat(self, x, weight, out_dtype):
        dims = list(x.ty.shape)
        rows = dims[0]
        for d in dims[1:-1]:
            rows = rows * d
        flat = relax.op.reshape(self.visit_expr(x), [rows, dims[-1]])
        return relax.op.matmul(flat, self.visit_expr(weight), out_dtype=out_dtype)

    def _biased(self, call):
        """``(x, W, out_dtype, bias)`` for ``add(matmul, bias)`` over a flattened matmul."""
        if not is_op(call, "relax.add"):
            return None
        for mm, bias in (call.args, call.args[::-1]):
            inner = self.var2val.get(mm) if isinstance(mm, relax.Var) else None
            dense = self._dense(inner) if self.uses.get(mm, 0) == 1 else None
            shape = static_shape(bias)
            if dense is None or shape is None or not is_static(bias, self.static):
                continue
            k = int(inner.ty.shape[-1])
            if shape[-1:] == (k,) and all(d == 1 for d in shape[:-1]):
                return (*dense, bias)
        return None

    def visit_call_(self, call):
        biased = self._biased(call)
        if biased is not None:
            *dense, bias = biased
            bias = self.visit_expr(bias)
            if len(static_shape(bias)) != 1:
                bias = relax.op.reshape(bias, [static_shape(bias)[-1]])
            return relax.op.reshape(relax.op.add(self._flat(*dense), bias), call.ty.shape)
        dense = self._dense(call)
        if dense is not None:
            return relax.op.reshape(self._flat(*dense), call.ty.shape)
        return super().visit_call_(call)


@tvm.transform.module_pass(opt_level=0, name="BatchedMatmulToDense")
class BatchedMatmulToDense:
    """Rewrite token-wise matmuls by static weights into 2-D denses (module docstring)."""

    def __init__(self, func_name: str = "main"):
        self.func_name = func_name

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return rewrite_function(mod, self.func_name, _Rewriter)
