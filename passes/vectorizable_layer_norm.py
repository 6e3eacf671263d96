"""VectorizableLayerNorm: float32 layer norm over the last axis with its row sums in vector
lanes.

TVM legalizes ``relax.nn.layer_norm`` to TOPI's kernel, whose mean and variance are one scalar
accumulator per row over the whole row (a serial chain of additions), and whose rows, fewer
than ScheduleGlue's parallel threshold of points, run on one thread: ViT-B/16's 25 layer norms
over 197 x 768 took 0.30 ms each (7.5 of its 150 ms, FP32, batch 1), ConvNeXt-Tiny's 23 over
channels-last maps 3.3 of 72 ms (one thread).

This pass, before ``LegalizeOps``, legalizes a layer norm over the last axis whose extent a
vector of the target's 32-bit lanes (or a part of it down to 4) divides into TE stages that
ScheduleGlue vectorizes and runs in parallel over rows: ``lanes`` partial sums per row along
the row's vectors (the lanes are the vector), the mean, ``lanes`` partial sums of squared
deviations from it (two passes, as torch: no ``E[x^2] - E[x]^2`` cancellation), the
reciprocal standard deviation, then ``(x - mean) * rstd * gamma + beta``. Other layer norms
(another axis, several axes, a row length no vector part divides, another dtype, a symbolic
shape) are left to TVM.
"""

from __future__ import annotations

import tvm
from tvm import relax, te, tirx
from tvm.relax.expr_functor import PyExprMutator, mutator

from aiq_tvm._ir import static_shape
from aiq_tvm.targets import capabilities, current_target

from ._row_reduce import row_reduce
from .schedule_glue import _dividing_lanes

__all__ = ["VectorizableLayerNorm"]


def _layer_norm(x: te.Tensor, gamma: te.Tensor | None, beta: te.Tensor | None, lanes: int,
                epsilon: float) -> te.Tensor:
    """Layer norm of ``x`` over its last axis, whose extent ``lanes`` divides."""
    *rows, n = (int(d) for d in x.shape)
    inv_n = tirx.FloatImm("float32", 1.0 / n)
    total = row_reduce(x, rows, n, lanes, te.sum, "sum")
    mean = te.compute(rows, lambda *r: total(*r) * inv_n, name="mean")

    def deviation(*i):
        return x(*i) - mean(*i[:-1])

    squares = row_reduce(lambda *i: deviation(*i) * deviation(*i), rows, n, lanes, te.sum,
                         "squares")
    rstd = te.compute(rows, lambda *r: tirx.FloatImm("float32", 1.0) / tirx.sqrt(
        squares(*r) * inv_n + tirx.FloatImm("float32", epsilon)), name="rstd")

    def normalized(*i):
        y = deviation(*i) * rstd(*i[:-1])
        y = y * gamma(i[-1]) if gamma is not None else y
        return y + beta(i[-1]) if beta is not None else y

    return te.compute(x.shape, normalized, name="layer_norm")


@mutator
class _LayerNormLegalizer(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, lanes: int):
        super().__init__(mod)
        self.lanes = lanes
        self.rewritten = 0

    def visit_call_(self, call):
        call = self.visit_expr_post_order(call)
        if not (isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.nn.layer_norm"):
            return call
        x, gamma, beta = call.args
        shape = static_shape(x)
        if shape is None or any(str(t.ty.dtype) != "float32" for t in (x, gamma, beta)):
            return call
        axes = [int(a) % len(shape) for a in call.attrs.axes]
        lanes = _dividing_lanes(shape[-1], self.lanes)
        if axes != [len(shape) - 1] or lanes is None:
            return call
        self.rewritten += 1
        args = [x]
        if call.attrs.scale:
            args.append(gamma)
        if call.attrs.center:
            args.append(beta)
        scale, center, eps = bool(call.attrs.scale), bool(call.attrs.center), \
            float(call.attrs.epsilon)

        def kernel(x, *params):
            g = params[0] if scale else None
            b = params[-1] if center else None
            return _layer_norm(x, g, b, lanes, eps)

        return self.builder_.call_te(kernel, *args, primfunc_name_hint="layer_norm")


@tvm.transform.module_pass(opt_level=0, name="VectorizableLayerNorm")
class VectorizableLayerNorm:
    """Legalize float32 layer norms over the last axis into vectorized row kernels (see the
    module docstring).

    Parameters
    ----------
    target : optional
        Defaults to the target in scope; its 32-bit lanes set the partial sums' width.
    """

    def __init__(self, target=None):
        self.target = target

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        legalizer = _LayerNormLegalizer(mod, capabilities(current_target(self.target)).lanes32)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                legalizer.builder_.update_func(gv, legalizer.visit_expr(func))
        return legalizer.builder_.get() if legalizer.rewritten else mod
