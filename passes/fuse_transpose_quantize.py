"""FuseTransposeQuantize: a quantize kernel reading a transposed float32 tensor reads the tensor
itself, transposing as it quantizes.

A model's input arrives NCHW float32 and its first layer's kernel reads NHWC uint8. Nothing
cancels that input's transpose (CancelTransposes cancels pairs between layer kernels), so the
lowered graph transposes the float tensor, 3-element channel rows and all, then quantizes the
copy: two passes over the float tensor and a float copy written in between. One kernel reading
NCHW float and writing NHWC uint8 replaces both (MobileNetV2's input at batch 8, two threads:
366 us transpose + 60 us quantize -> 58 us), with the same codes: the kernel applies the same
float32 operations to the same values. The transpose is removed when nothing else reads it.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from aiq_tvm._ir import is_op, permute_axes, replace_main, static_shape
from aiq_tvm.quant import ActQParams
from aiq_tvm.targets import current_target

from ._lowering import add_prim

__all__ = ["FuseTransposeQuantize"]


def quantize_qparams(mod: tvm.IRModule, callee) -> ActQParams | None:
    """The activation parameters of a quantize kernel (``QUANTIZE_ATTR``), else None."""
    from aiq_tvm.targets.x86 import QUANTIZE_ATTR

    func = mod[callee] if isinstance(callee, relax.GlobalVar) else None
    if not isinstance(func, tvm.tirx.PrimFunc) or func.attrs is None \
            or QUANTIZE_ATTR not in func.attrs:
        return None
    scale, zp, inv = (float(v) for v in func.attrs[QUANTIZE_ATTR])
    return ActQParams(scale, int(zp), inv)


@mutator
class _Fuser(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, func: relax.Function, target):
        super().__init__(mod)
        self.mod_ = mod
        self.var2val = relax.analysis.get_var2val(func)
        self._target = target
        self.fused = 0

    @property
    def target(self):
        # Resolved on the first fusion only: a module without a transposed quantize needs no
        # target (the pass then returns it unchanged).
        return current_target(self._target)

    def visit_call_(self, call):
        if not is_op(call, "relax.call_tir"):
            return super().visit_call_(call)
        qp = quantize_qparams(self.mod_, call.args[0])
        args = call.args[1].fields
        src = self.var2val.get(args[0]) if len(args) == 1 else None
        if qp is None or not is_op(src, "relax.permute_dims"):
            return super().visit_call_(call)
        x = src.args[0]
        shape = static_shape(call)
        if shape is None or str(x.ty.dtype) != "float32" or static_shape(x) is None:
            return super().visit_call_(call)
        from aiq_tvm.targets.x86 import quantize_kernel

        kernel = quantize_kernel(shape, qp, target=self.target, axes=permute_axes(src))
        gv = add_prim(self.builder_, kernel, f"{call.args[0].name_hint}_transposed")
        self.fused += 1
        return relax.call_tir(gv, [self.visit_expr(x)], out_ty=relax.TensorType(shape, "uint8"))


@tvm.transform.module_pass(opt_level=0, name="FuseTransposeQuantize")
class FuseTransposeQuantize:
    """Quantize kernels read a transposed float32 input untransposed (module docstring).

    Parameters
    ----------
    target : optional
        The target the new kernels are built for; defaults to the target in scope.
    func_name : str
        The Relax function to rewrite.
    """

    def __init__(self, target=None, func_name: str = "main"):
        self.target = target
        self.func_name = func_name

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        func = mod[self.func_name]
        fuser = _Fuser(mod, func, self.target)
        new_func = fuser.visit_expr(func)
        if not fuser.fused:
            return mod
        out = replace_main(fuser.builder_.get(), new_func, self.func_name)
        return relax.transform.DeadCodeElimination([self.func_name])(out)
