"""FoldConstantLayouts: reshape and transpose constant tensors on the host.

After the weights are bound, every conv's bias reaches its layer as
``reshape(bias, [1, C, 1, 1])`` and some weights through ``permute_dims``.  Relax's
``FoldConstant`` evaluates such calls by compiling each one with LLVM and running it: about
0.1 s per call, over 100 calls (11 s) for one ResNet-50 int8 build.  This pass computes the
pure layout ops (``reshape``, ``expand_dims``, ``squeeze``, ``permute_dims``) of constants with
numpy instead, exactly, so ``FoldConstant`` has only real arithmetic left to compile.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from aiq_tvm._ir import const_value, is_const, is_op, static_shape

__all__ = ["FoldConstantLayouts"]

_RESHAPES = ("relax.reshape", "relax.expand_dims", "relax.squeeze")


def _folded(call: relax.Call, shape: tuple[int, ...] | None) -> np.ndarray | None:
    """The value of a layout op on a constant with output ``shape``, or None when ``call``
    is not one."""
    if not (is_op(call, (*_RESHAPES, "relax.permute_dims")) and is_const(call.args[0])):
        return None
    if shape is None:
        return None
    value = const_value(call.args[0])
    if is_op(call, "relax.permute_dims"):
        axes = call.attrs.axes
        value = np.transpose(value, None if axes is None else [int(a) for a in axes])
    return np.ascontiguousarray(value.reshape(shape))


@mutator
class _Folder(PyExprMutator):
    def visit_call_(self, call):
        new = super().visit_call_(call)
        value = _folded(new, static_shape(call)) if isinstance(new, relax.Call) else None
        if value is None:
            return new
        self.folded += 1
        return relax.const(value, str(value.dtype))


@tvm.transform.module_pass(opt_level=0, name="FoldConstantLayouts")
class FoldConstantLayouts:
    """Fold reshapes and transposes of constants with numpy (see the module docstring);
    ``folded`` counts the calls the last run replaced."""

    def __init__(self):
        self.folded = 0

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        self.folded = 0
        out = tvm.IRModule({gv: f for gv, f in mod.functions_items()}, attrs=mod.attrs)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                folder = _Folder(mod)
                folder.folded = 0
                out[gv] = folder.visit_expr(func)
                self.folded += folder.folded
        return out
