"""PadMatmulColumns: a float32 matmul whose column count no vector width divides computes on
zero-padded columns and slices them off.

ScheduleGlue runs a matmul between two activations (attention's ``q @ k^T`` and
``scores @ v``, any ``torch.matmul`` of tensors the model computed) in register tiles of
whole vectors along the output's columns; with a column count such as ViT's 197 tokens no
vector width divides, it kept TVM's scalar loop nest (7 ms per ViT-B/16 layer for ``q @ k^T``,
12 x 197 x 197 over 64). Padding the right operand's columns with zeros to a multiple of the
target's 32-bit lanes (197 -> 208 on AVX-512) changes no kept output value: column ``j`` of
the product reads only column ``j`` of the right operand. The pad fuses into the kernel that
produces that operand and the slice into the one that reads the product.

A matmul whose columns already take whole vectors (a part of the lanes down to 4 dividing
them, see ScheduleGlue, unless padding to whole full-width vectors is cheaper:
``schedule_glue.unpadded_lanes``; 196 columns run 16-lane vectors padded to 208, not 4-lane
ones) or whose shapes are not static is left unchanged, as is every other dtype.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from aiq_tvm._ir import static_shape
from aiq_tvm.targets import capabilities, current_target

from .schedule_glue import unpadded_lanes

__all__ = ["PadMatmulColumns"]


def padded_columns(columns: int, lanes: int) -> int | None:
    """The column count to pad to, or None when ``columns`` already takes whole vectors.
    At least ``lanes`` columns pad to a multiple of ``lanes``; fewer, to a multiple of the
    smallest part of them ScheduleGlue vectorizes (``lanes / 4``, at least 4)."""
    if unpadded_lanes(columns, lanes) is not None:
        return None
    step = lanes if columns >= lanes else max(lanes // 4, 4)
    return -(-columns // step) * step


@mutator
class _ColumnPadder(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, lanes: int):
        super().__init__(mod)
        self.lanes = lanes
        self.padded = 0

    def visit_call_(self, call):
        call = self.visit_expr_post_order(call)
        if not (isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.matmul"):
            return call
        lhs, rhs = call.args
        rhs_shape = static_shape(rhs)
        out_shape = static_shape(call)
        if rhs_shape is None or out_shape is None or len(rhs_shape) < 2 or any(
                str(t.dtype) != "float32" for t in (lhs.ty, rhs.ty, call.ty)):
            return call
        columns = rhs_shape[-1]
        width = padded_columns(columns, self.lanes)
        if width is None:
            return call
        pad = [0] * (2 * len(rhs_shape) - 1) + [width - columns]
        padded = self.builder_.emit(relax.op.nn.pad(rhs, pad))
        product = self.builder_.emit(relax.op.matmul(lhs, padded, out_dtype="float32"))
        self.padded += 1
        axis = len(out_shape) - 1
        return relax.op.strided_slice(product, axes=[axis], begin=[0], end=[columns])


@tvm.transform.module_pass(opt_level=0, name="PadMatmulColumns")
class PadMatmulColumns:
    """Pad float32 matmuls' columns to whole vectors of the target (see the module
    docstring).

    Parameters
    ----------
    target : optional
        Defaults to the target in scope; its 32-bit lanes set the padding.
    """

    def __init__(self, target=None):
        self.target = target

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        padder = _ColumnPadder(mod, capabilities(current_target(self.target)).lanes32)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                padder.builder_.update_func(gv, padder.visit_expr(func))
        return padder.builder_.get() if padder.padded else mod
