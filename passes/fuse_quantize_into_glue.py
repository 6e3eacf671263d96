"""FuseQuantizeIntoGlue: a quantize kernel reading the float32 result of an elementwise Relax op
becomes Relax ops, which TVM's FuseOps then fuses into that op's kernel.

The layer kernels' uint8 inputs come from a quantize kernel when the producer is not a layer:
EfficientNet's, RegNet-Y's and MobileNetV3's squeeze-and-excitation scale ``x * sigmoid(g)``
writes float32 and the next layer's quantize kernel reads it back (a hand-scheduled kernel,
opaque to FuseOps). Written as ``astype(clip(round(x * inv) + zp, 0, 255), "uint8")`` the
quantize is one more elementwise stage of the scale's kernel, so the float tensor is never
stored. The codes are the same: these are the float32 operations of
:func:`aiq_tvm.targets.x86.common.quantize_value` in its order (``round`` rounds half to even,
as the kernel does).
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from aiq_tvm._ir import is_op, rewrite_function, use_counts

from .fuse_transpose_quantize import quantize_qparams

__all__ = ["FuseQuantizeIntoGlue"]

# Elementwise (and broadcasting) ops FuseOps fuses with the elementwise ops after them.
_ELEMENTWISE = tuple(f"relax.{n}" for n in (
    "multiply", "add", "subtract", "divide", "maximum", "minimum", "clip", "nn.relu",
    "sigmoid"))


def quantize_ops(x: relax.Expr, qp) -> relax.Expr:
    """``uint8(clip(round(x * inv) + zp, 0, 255))`` as Relax ops on a float32 tensor."""
    scaled = relax.op.multiply(x, relax.const(qp.inv, "float32"))
    shifted = relax.op.add(relax.op.round(scaled), relax.const(float(qp.zp), "float32"))
    return relax.op.astype(relax.op.clip(shifted, 0, 255), "uint8")


def _transposes(mod: tvm.IRModule, callee: relax.GlobalVar) -> bool:
    from aiq_tvm.targets.x86 import QUANTIZE_AXES_ATTR

    return QUANTIZE_AXES_ATTR in mod[callee].attrs


@mutator
class _Rewriter(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, func: relax.Function):
        super().__init__(mod)
        self.mod_ = mod
        self.var2val = relax.analysis.get_var2val(func)
        self.uses = use_counts(func)

    def visit_call_(self, call):
        if not is_op(call, "relax.call_tir"):
            return super().visit_call_(call)
        qp = quantize_qparams(self.mod_, call.args[0])
        args = call.args[1].fields
        # A quantize that also transposes (FuseTransposeQuantize's, e.g. after a layer left at
        # FP32 in NCHW) is not elementwise: as plain Relax ops it would lose the transpose.
        if qp is None or _transposes(self.mod_, call.args[0]) or len(args) != 1 \
                or not isinstance(args[0], relax.Var):
            return super().visit_call_(call)
        producer = self.var2val.get(args[0])
        # Only a producer read by nothing else: its float result need not be stored at all.
        if not is_op(producer, _ELEMENTWISE) or self.uses.get(args[0], 0) != 1:
            return super().visit_call_(call)
        return quantize_ops(self.visit_expr(args[0]), qp)


@tvm.transform.module_pass(opt_level=0, name="FuseQuantizeIntoGlue")
class FuseQuantizeIntoGlue:
    """Quantize kernels after elementwise ops become fusable Relax ops (module docstring)."""

    def __init__(self, func_name: str = "main"):
        self.func_name = func_name

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return rewrite_function(mod, self.func_name, _Rewriter)
