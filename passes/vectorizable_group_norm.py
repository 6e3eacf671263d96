"""VectorizableGroupNorm: float32 group norm and instance norm over channels-last maps with
per-channel sums in vector lanes.

CancelTransposes runs a group norm / instance norm on the channels-last (NHWC) map the layer
kernels produce, so it needs no layout transposes around it (those cost 2.6x the norm itself
between two 1x1 convs at 56 x 56 x 64). TOPI's kernel over that layout sums each group in one
scalar accumulator, strided across channels: 118 to 266 us there for 64 channels in 8 / 32 /
1 groups or instance norm (one thread).

This pass, before ``LegalizeOps``, legalizes a float32 group norm whose channel axis is the
last one and whose reduced axes are all the others but the batch (instance norm: a group per
channel) into TE stages that ScheduleGlue vectorizes along the channels: per-channel sums
over the map (channel lanes, like a global average pooling), the group means, per-channel sums
of squared deviations from them (two passes, as torch), the groups' reciprocal standard
deviations, then ``(x - mean) * rstd * gamma + beta``. Other layouts, dtypes and symbolic
shapes are left to TVM.
"""

from __future__ import annotations

import math

import tvm
from tvm import relax, te, tirx
from tvm.relax.expr_functor import PyExprMutator, mutator

from aiq_tvm._ir import static_shape

__all__ = ["VectorizableGroupNorm"]


def _group_norm(x: te.Tensor, gamma: te.Tensor | None, beta: te.Tensor | None, groups: int,
                epsilon: float) -> te.Tensor:
    """Group norm of channels-last ``x`` (``N, *spatial, C``) with ``groups`` groups."""
    n, *spatial, c = (int(d) for d in x.shape)
    per_group = c // groups
    count = tirx.FloatImm("float32", 1.0 / (math.prod(spatial) * per_group))

    def channel_sums(values, name: str):
        axes = [te.reduce_axis((0, s), f"{name}_s{k}") for k, s in enumerate(spatial)]
        return te.compute((n, c), lambda b, ch: te.sum(values(b, *axes, ch), axis=axes),
                          name=f"{name}_channels")

    def group_total(sums, name: str):
        k = te.reduce_axis((0, per_group), f"{name}_k")
        return te.compute((n, groups), lambda b, g: te.sum(sums[b, g * per_group + k], axis=k),
                          name=name)

    # Group statistics are spread back to one value per channel before the passes over the
    # map read them: indexed by channel // per_group inside the vector loop, every lane was a
    # gather (8 groups of 64 channels at 56 x 56: 211 against 55 us for one group).
    total = group_total(channel_sums(x, "sum"), "group_sum")
    mean = te.compute((n, c), lambda b, ch: total[b, ch // per_group] * count, name="mean")

    def deviation(b, *i):
        return x(b, *i) - mean[b, i[-1]]

    squares = group_total(channel_sums(lambda *i: deviation(*i) * deviation(*i), "squares"),
                          "group_squares")

    def channel_scale(b, ch):
        rstd = tirx.FloatImm("float32", 1.0) / tirx.sqrt(
            squares[b, ch // per_group] * count + tirx.FloatImm("float32", epsilon))
        return rstd * gamma(ch) if gamma is not None else rstd

    scale = te.compute((n, c), channel_scale, name="scale")

    def normalized(b, *i):
        y = deviation(b, *i) * scale[b, i[-1]]
        return y + beta(i[-1]) if beta is not None else y

    return te.compute(x.shape, normalized, name="group_norm")


@mutator
class _GroupNormLegalizer(PyExprMutator):
    def __init__(self, mod: tvm.IRModule):
        super().__init__(mod)
        self.rewritten = 0

    def visit_call_(self, call):
        call = self.visit_expr_post_order(call)
        name = call.op.name if isinstance(call.op, tvm.ir.Op) else ""
        if name not in ("relax.nn.group_norm", "relax.nn.instance_norm"):
            return call
        x, gamma, beta = call.args
        shape = static_shape(x)
        if shape is None or len(shape) < 3 or \
                any(str(t.ty.dtype) != "float32" for t in (x, gamma, beta)):
            return call
        a = call.attrs
        rank = len(shape)
        axes = sorted(int(v) % rank for v in a.axes)
        if shape[0] == 1 and axes[:1] == [0]:
            # torch's InstanceNorm decomposes to a norm over (0, *spatial) of the map viewed as
            # one sample of N * C channels: over a batch of one, the same statistics.
            axes = axes[1:]
        if int(a.channel_axis) % rank != rank - 1 or axes != list(range(1, rank - 1)):
            return call
        groups = int(a.num_groups) if name == "relax.nn.group_norm" else shape[-1]
        self.rewritten += 1
        scale, center, eps = bool(a.scale), bool(a.center), float(a.epsilon)
        args = [x] + ([gamma] if scale else []) + ([beta] if center else [])

        def kernel(x, *params):
            g = params[0] if scale else None
            b = params[-1] if center else None
            return _group_norm(x, g, b, groups, eps)

        return self.builder_.call_te(kernel, *args, primfunc_name_hint="group_norm")


@tvm.transform.module_pass(opt_level=0, name="VectorizableGroupNorm")
class VectorizableGroupNorm:
    """Legalize float32 channels-last group / instance norms into kernels with per-channel
    sums in vector lanes (see the module docstring)."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        legalizer = _GroupNormLegalizer(mod)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                legalizer.builder_.update_func(gv, legalizer.visit_expr(func))
        return legalizer.builder_.get() if legalizer.rewritten else mod
