"""LegalizeScans: ``cumsum`` and ``cumprod`` as TOPI's scan kernels.

TVM 0.27's Relax has the operators (its PyTorch and ONNX importers emit them) but no
legalization for them, so any model using one stopped at VM code generation ("CodeGenVM cannot
emit this Relax operator directly"): timm's EdgeNeXt (``mask.cumsum(1)`` in its Fourier
positional encoding), ``torch.cumsum`` / ``cumprod`` in a user's ``forward``. This pass emits
TOPI's ``cumsum`` / ``cumprod`` for them (a sequential scan along the axis, vectorizable over
the others; ``axis=None`` scans the flattened tensor), with the operator's ``dtype`` and
``exclusive`` attributes. The pipeline runs it after the layers are lowered, where nothing is
constant-folded any more (``aiq_tvm.pipeline.legalize_passes``): a scan of a constant (that
mask) runs at run time, as does what is computed from it.
"""

from __future__ import annotations

import tvm
from tvm import relax, topi
from tvm.relax.expr_functor import PyExprMutator, mutator

__all__ = ["LegalizeScans"]

_SCANS = {"relax.cumsum": topi.cumsum, "relax.cumprod": topi.cumprod}


@mutator
class _ScanLegalizer(PyExprMutator):
    def visit_call_(self, call):
        call = super().visit_call_(call)
        if not (isinstance(call.op, tvm.ir.Op) and call.op.name in _SCANS):
            return call
        a = call.attrs
        axis = None if a.axis is None else int(a.axis)
        dtype = str(a.dtype) if a.dtype is not None and str(a.dtype) else None
        self.rewritten += 1
        return self.builder_.call_te(_SCANS[call.op.name], call.args[0], axis, dtype,
                                     bool(a.exclusive),
                                     primfunc_name_hint=call.op.name.removeprefix("relax."))


@tvm.transform.module_pass(opt_level=0, name="LegalizeScans")
class LegalizeScans:
    """Legalize ``cumsum`` / ``cumprod`` with TOPI's scans (see the module docstring)."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        legalizer = _ScanLegalizer(mod)
        legalizer.rewritten = 0
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                legalizer.builder_.update_func(gv, legalizer.visit_expr(func))
        return legalizer.builder_.get() if legalizer.rewritten else mod
