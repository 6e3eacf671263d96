"""FoldHostConstants: layout ops and exact arithmetic of constant tensors, computed on the host.

After the weights are bound, every conv's bias reaches its layer as
``reshape(bias, [1, C, 1, 1])`` and some weights through ``permute_dims``; a batch norm that
no conv absorbs (pre-activation networks: DenseNet, pre-activation ResNets; a norm after an
add: RepGhost) is decomposed into ``expand_dims`` of its statistics and ``sqrt(var + eps)``.
Relax's ``FoldConstant`` evaluates such calls by compiling each one with LLVM and running it:
about 0.04-0.1 s per call, over 100 calls (11 s) for one ResNet-50 int8 build, 190 (8 s of a
21 s FP32 build) for RepGhostNet's 32 batch norms.  This pass computes them with numpy
instead:

* the pure layout ops ``reshape``, ``expand_dims``, ``squeeze``, ``permute_dims``;
* the elementwise ops whose IEEE results are correctly rounded (``add``, ``subtract``,
  ``multiply``, ``divide``, ``sqrt``, ``negative``, ``maximum``, ``minimum``) on float32 or
  float64 constants of one dtype, broadcast as Relax broadcasts (numpy's rules). A compiled
  kernel of one such op rounds each element once in the same dtype, so the values are the
  same bits ``FoldConstant`` would compute.

Anything else (other dtypes, transcendental ops, calls with a symbolic shape) is left to
``FoldConstant`` where it runs after this pass (``aiq_tvm.pipeline.fold_constants``, before the
layers are lowered), and after the layers are lowered to run time.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from aiq_tvm._ir import const_value, is_const, is_op, static_shape

__all__ = ["FoldHostConstants"]

_RESHAPES = ("relax.reshape", "relax.expand_dims", "relax.squeeze")
# Correctly rounded IEEE operations: numpy and an LLVM kernel give the same bits.
_ELEMENTWISE = {
    "relax.add": np.add,
    "relax.subtract": np.subtract,
    "relax.multiply": np.multiply,
    "relax.divide": np.divide,
    "relax.maximum": np.maximum,
    "relax.minimum": np.minimum,
    "relax.sqrt": np.sqrt,
    "relax.negative": np.negative,
}
_FLOATS = ("float32", "float64")


def _layout(call: relax.Call, args: list, shape: tuple[int, ...]) -> np.ndarray | None:
    if not (is_op(call, (*_RESHAPES, "relax.permute_dims")) and is_const(args[0])):
        return None
    value = const_value(args[0])
    if is_op(call, "relax.permute_dims"):
        axes = call.attrs.axes
        value = np.transpose(value, None if axes is None else [int(a) for a in axes])
    return value.reshape(shape)


def _arithmetic(call: relax.Call, args: list, shape: tuple[int, ...]) -> np.ndarray | None:
    if not (isinstance(call.op, tvm.ir.Op) and call.op.name in _ELEMENTWISE) or \
            not all(is_const(a) for a in args):
        return None
    values = [const_value(a) for a in args]
    dtype = str(call.ty.dtype)
    if dtype not in _FLOATS or any(str(v.dtype) != dtype for v in values):
        return None
    with np.errstate(all="ignore"):  # inf / nan as the compiled kernel would give them
        value = np.asarray(_ELEMENTWISE[call.op.name](*values))
    return value if value.shape == shape and str(value.dtype) == dtype else None


def _folded(call: relax.Call, args: list, shape: tuple[int, ...] | None) -> np.ndarray | None:
    """The value of ``call`` (output ``shape``; ``args``: its arguments, variables bound to
    constants replaced by them) computed on the host, or None when it is not one of the ops
    above on constants."""
    if shape is None or not args:
        return None
    value = _layout(call, args, shape)
    if value is None:
        value = _arithmetic(call, args, shape)
    return None if value is None else np.ascontiguousarray(value)


@mutator
class _Folder(PyExprMutator):
    def visit_call_(self, call):
        new = super().visit_call_(call)
        if not isinstance(new, relax.Call):
            return new
        value = _folded(new, [self._constant_or_self(a) for a in new.args], static_shape(call))
        if value is None:
            return new
        self.folded += 1
        return relax.const(value, str(value.dtype))

    def _constant_or_self(self, arg):
        """The constant a variable is bound to (a folded call's binding), else ``arg``."""
        if isinstance(arg, relax.Var):
            bound = self.lookup_binding(arg)
            if bound is not None and is_const(bound):
                return bound
        return arg


@tvm.transform.module_pass(opt_level=0, name="FoldHostConstants")
class FoldHostConstants:
    """Fold layout ops and exact arithmetic of constants with numpy (see the module
    docstring); ``folded`` counts the calls the last run replaced."""

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
