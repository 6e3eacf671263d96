"""LiftWeights: the constants ``main`` passes to its kernels become trailing parameters of
``main``, so the built library holds code only and the weights ship in a file beside it.

Run last, on the lowered module just before VM code generation: the constants lifted are the
final ones, after the quantization and layout passes packed and folded the weights, and no
pass after it folds a parameter back into a constant.  ``main(inputs...)`` becomes
``main(inputs..., w0, w1, ...)`` in the order of the constants' first use; its ``num_input``
attribute still counts only the inputs.

The pass adds a function ``aiq_weights_manifest`` returning a JSON string: the weights'
names, shapes and dtypes and a digest (SHA-256 of that list and of every weight's bytes), so
a loader can tell a library's weights file from another build's (see
:mod:`aiq_tvm.weights`).

Lifting after ``VMShapeLower`` means ``main`` does not check the weights' shapes on every
call (one shape check per weight per inference); the loader checks them once against the
manifest instead.
"""

from __future__ import annotations

import hashlib
import json
import re

import tvm
from tvm import relax
from tvm.script import relax as R

__all__ = ["LiftWeights", "MANIFEST_FUNCTION", "MANIFEST_FORMAT", "weights_digest"]

MANIFEST_FUNCTION = "aiq_weights_manifest"
MANIFEST_FORMAT = "aiq_tvm weights"


def weights_digest(entries: list, buffers) -> str:
    """SHA-256 (hex) of ``entries`` (``[name, shape, dtype]`` lists) and the weights' bytes."""
    h = hashlib.sha256(json.dumps(entries).encode())
    for buf in buffers:
        h.update(memoryview(buf).cast("B"))
    return h.hexdigest()


def _is_tensor_const(expr) -> bool:
    return (isinstance(expr, tvm.ir.expr.GenericConst)
            and isinstance(expr.value, tvm.runtime.Tensor))


@relax.expr_functor.mutator
class _Lifter(relax.PyExprMutator):
    """Replaces each distinct constant with a new parameter, named after the kernel and the
    argument position it is first passed at."""

    def __init__(self, mod: tvm.IRModule):
        super().__init__(mod)
        self.params: list[tuple[relax.Var, tvm.ir.expr.Constant]] = []

    def _param(self, const: tvm.ir.expr.Constant, hint: str) -> relax.Var:
        for var, seen in self.params:  # a constant passed twice is one weight
            if seen.same_as(const):
                return var
        name = re.sub(r"\W", "_", hint)
        if name in {v.name for v, _ in self.params}:
            name = f"{name}_{len(self.params)}"
        var = relax.Var(name, const.ty)
        self.params.append((var, const))
        return var

    def visit_call_(self, call: relax.Call) -> relax.Expr:  # noqa: N802 - TVM's visitor API
        callee = call.op.name_hint if isinstance(call.op, tvm.ir.GlobalVar) else "const"
        args = [self._param(a, f"{callee}_{i}") if _is_tensor_const(a)
                else self.visit_expr(a) for i, a in enumerate(call.args)]
        return relax.Call(call.op, args, call.attrs, call.ty_args, call.span, call.ty)

    def visit_constant_(self, const: tvm.ir.expr.Constant) -> relax.Expr:  # noqa: N802
        if not _is_tensor_const(const):
            return const
        return self._param(const, f"const_{len(self.params)}")


def _manifest(params: list) -> str:
    entries = [[var.name, [int(d) for d in const.value.shape], str(const.value.dtype)]
               for var, const in params]
    digest = weights_digest(entries, (const.value.numpy() for _, const in params))
    return json.dumps({"format": MANIFEST_FORMAT, "version": 1, "function": "main",
                       "weights": entries, "sha256": digest})


@tvm.transform.module_pass(opt_level=0, name="LiftWeights")
class LiftWeights:
    """See the module docstring; ``lifted`` (a dict) receives ``"weights"``, a list of
    ``(name, tensor)`` in parameter order, and ``"manifest"``, the JSON text."""

    def __init__(self, lifted: dict | None = None):
        self.lifted = lifted

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        if "main" not in {gv.name_hint for gv in mod.get_global_vars()}:
            return mod
        func = mod["main"]
        lifter = _Lifter(mod)
        body = lifter.visit_expr(func.body)
        if not lifter.params:
            return mod
        params = list(func.params) + [var for var, _ in lifter.params]
        out = mod.clone()
        out["main"] = relax.Function(params, body, func.ret_ty, func.is_pure, func.attrs,
                                     func.span)
        text = _manifest(lifter.params)
        manifest = relax.Function([], R.str(text), relax.ObjectType())
        out[MANIFEST_FUNCTION] = manifest.with_attr("global_symbol", MANIFEST_FUNCTION)
        if self.lifted is not None:
            self.lifted["weights"] = [(var.name, const.value) for var, const in lifter.params]
            self.lifted["manifest"] = text
        return out
