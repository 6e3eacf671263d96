"""VectorizableSoftmax: float32 softmax / log-softmax over the last axis in vector lanes.

TVM legalizes ``relax.nn.softmax`` to TOPI's four stages (row max, ``exp``, row sum,
division) whose ``exp`` is libm's scalar ``expf`` and whose row reductions run one scalar
accumulator per row: ViT-B/16's attention softmax over 12 x 197 x 197 scores took 1.27 ms per
layer, 15 ms of the model's 170 (FP32, batch 1, two threads).

This pass, before ``LegalizeOps``, pads the rows with ``-inf`` to whole vectors of the
target's 32-bit lanes where no part of them divides the row, or where many narrow vectors
would cost more than fewer padded ones (``schedule_glue.unpadded_lanes``). The padding adds
``exp(-inf) = 0`` to each sum; the slice that drops it fuses into the kernel that reads the
result. The softmax is legalized into TE stages that
ScheduleGlue vectorizes: ``lanes`` partial maxima per row along the row's vectors (the lanes
are the vector), their max, ``lanes`` partial sums of ``exp(x - max)``
(:func:`~aiq_tvm.targets.fastmath.fast_exp`), their total and its reciprocal, then
``exp(x - max) * (1 / sum)`` as ATen computes it (log-softmax: ``x - max - log(sum)``). ViT's
scores: 1.27 ms -> 0.30 ms, plus 0.11 ms for their padding. (A schedule per row, partials in
registers, was slower: 0.37 ms there and 0.36 against 0.15 ms for a softmax over 64
channels of 56 x 56 pixels, the horizontal sums of every short row being serial.) Rows of
``-inf`` give NaN, as in torch.

Softmax over another axis than the last (CancelTransposes moves a channels-first softmax's
axis to the last one when its input is channels-last), of another dtype or of a symbolic shape
is left to TVM.
"""

from __future__ import annotations

import math

import tvm
from tvm import relax, te, tirx
from tvm.relax.expr_functor import PyExprMutator, mutator

from aiq_tvm._ir import static_shape
from aiq_tvm.targets import capabilities, current_target
from aiq_tvm.targets.fastmath import fast_exp, fast_log

from ._row_reduce import row_reduce
from .schedule_glue import unpadded_lanes

__all__ = ["VectorizableSoftmax"]

_OPS = {"relax.nn.softmax": False, "relax.nn.log_softmax": True}  # op -> log


def _row_softmax(x: te.Tensor, lanes: int, log: bool) -> te.Tensor:
    """Softmax of ``x`` over its last axis, whose extent ``lanes`` divides."""
    *rows, n = (int(d) for d in x.shape)
    row_max = row_reduce(x, rows, n, lanes, te.max, "row_max")
    shifted_exp = te.compute(x.shape, lambda *i: fast_exp(x(*i) - row_max(*i[:-1])), name="exp")
    row_sum = row_reduce(shifted_exp, rows, n, lanes, te.sum, "row_sum")
    if log:
        return te.compute(x.shape, lambda *i: x(*i) - row_max(*i[:-1]) - fast_log(
            row_sum(*i[:-1])), name="log_softmax")
    # Times the reciprocal, as ATen's vectorized softmax: a division per element cost more
    # than the exponential (within 1 ulp of the quotient).
    inverse = te.compute(rows, lambda *r: tirx.FloatImm("float32", 1.0) / row_sum(*r),
                         name="inverse")
    return te.compute(x.shape, lambda *i: shifted_exp(*i) * inverse(*i[:-1]), name="softmax")


@mutator
class _SoftmaxLegalizer(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, lanes: int):
        super().__init__(mod)
        self.lanes = lanes
        self.rewritten = 0

    def visit_call_(self, call):
        call = self.visit_expr_post_order(call)
        log = _OPS.get(call.op.name) if isinstance(call.op, tvm.ir.Op) else None
        if log is None:
            return call
        x = call.args[0]
        shape = static_shape(x)
        if shape is None or str(x.ty.dtype) != "float32" or \
                int(call.attrs.axis) % len(shape) != len(shape) - 1:
            return call
        n = shape[-1]
        lanes = unpadded_lanes(n, self.lanes)  # None: pad to whole vectors of self.lanes
        padded = n
        if lanes is None:
            lanes = self.lanes if n >= self.lanes else max(self.lanes // 4, 4)
            padded = -(-n // lanes) * lanes
            # A separate -inf padding, even of a padded matmul's sliced product: masking the
            # columns inside the kernel instead (a select per element) made attention's
            # softmax 2x slower than the pad and the unmasked kernel together.
            pad = [0] * (2 * len(shape) - 1) + [padded - n]
            x = self.builder_.emit(relax.op.nn.pad(x, pad, pad_value=-math.inf))
        self.rewritten += 1
        out = self.builder_.call_te(_row_softmax, x, lanes, log,
                                    primfunc_name_hint="log_softmax" if log else "softmax")
        if padded == n:
            return out
        out = self.builder_.emit(out)
        return relax.op.strided_slice(out, axes=[len(shape) - 1], begin=[0], end=[n])


@tvm.transform.module_pass(opt_level=0, name="VectorizableSoftmax")
class VectorizableSoftmax:
    """Legalize float32 softmax / log-softmax over the last axis into vectorizable row
    kernels (see the module docstring).

    Parameters
    ----------
    target : optional
        Defaults to the target in scope; its 32-bit lanes set the row padding.
    """

    def __init__(self, target=None):
        self.target = target

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        legalizer = _SoftmaxLegalizer(mod, capabilities(current_target(self.target)).lanes32)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                legalizer.builder_.update_func(gv, legalizer.visit_expr(func))
        return legalizer.builder_.get() if legalizer.rewritten else mod

