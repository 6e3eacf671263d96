"""Grouped convolutions the kernels lack, rewritten at import into ones they have.

The kernel library's grouped convs need channel counts per group that are multiples of 4
(``targets.x86.conv2d.grouped_reason``: a channel vector must not straddle two groups), and
its depthwise convs one output channel per input channel. Other grouped layers fell to TVM's
unscheduled ``conv2d`` and stayed FP32: a 7x7 112 -> 16 conv in 8 groups (14 input / 2 output
channels per group) ran 16 ms at 18 x 9, batch 8, against about 1 ms for an ordinary conv of
its size. Both rewrites below are exact and keep the weight under its parameter name, so the
layer keeps its module path and becomes an AIQ layer (int8 / int4 kernels):

* **Depthwise with a channel multiplier** (``groups == C``, ``O = m * C``, GhostNet's cheap
  operations, TF MobileNets with a depth multiplier): output channel ``o`` reads input channel
  ``o // m``, so the input with every channel repeated ``m`` times, convolved depthwise over
  ``m * C`` channels, is the same conv. The weight is unchanged; the repeat is one copy.
* **Ragged groups** (input or output channels per group not a multiple of 4): every group's
  channels are padded with zeros to the next multiple of 4, input and weight, and the padded
  output channels are sliced away after the conv. The zeros cost multiply-adds (the report's
  FLOPs and AI count them), at most ``4 x 4`` where a group holds one channel each way.

Convs whose weight is not a parameter used once, or with another layout, are left as they
are (their kernels stay TVM's, listed in the report).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from ._ir import is_op, rewrite_main_weights, use_counts
from .targets.x86.conv2d import GROUP_MIN_LANES, grouped_reason

__all__ = ["regroup_convs"]


def _round_up(n: int, to: int) -> int:
    return -(-n // to) * to


@mutator
class _Rewriter(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, params: dict, uses: dict):
        super().__init__(mod)
        self.params = params
        self.uses = uses
        self.new_vars: dict = {}  # old weight Var -> new Var
        self.changed = False

    def visit_call_(self, call):
        call = self.visit_expr_post_order(call)
        if not is_op(call, "relax.nn.conv2d"):
            return call
        x, w = call.args
        a = call.attrs
        groups = int(a.groups)
        if not (groups > 1 and isinstance(w, relax.Var) and w.name in self.params
                and self.uses.get(w, 0) == 1 and a.data_layout == "NCHW"
                and a.kernel_layout == "OIHW" and (a.out_layout or "NCHW") == "NCHW"
                and isinstance(x.ty.shape[1], tvm.tirx.IntImm)):
            return call
        c, o = int(x.ty.shape[1]), int(self.params[w.name].shape[0])
        cpg, opg = c // groups, o // groups
        if groups == c and opg > 1:
            self.changed = True
            return self._multiplier(call, x, w, opg)
        if groups < c and grouped_reason(c, o, groups) is not None:
            self.changed = True
            return self._padded_groups(call, x, w, groups, cpg, opg)
        return call

    def _conv(self, call, x, w, groups: int):
        a = call.attrs
        return relax.op.nn.conv2d(x, w, strides=a.strides, padding=a.padding,
                                  dilation=a.dilation, groups=groups,
                                  out_dtype=str(call.ty.dtype))

    def _multiplier(self, call, x, w, m: int):
        """Depthwise over the input's channels each repeated ``m`` times."""
        n, c, h, wd = x.ty.shape
        y = self.builder_.emit(relax.op.reshape(x, [n, c, 1, h, wd]))
        y = self.builder_.emit(relax.op.broadcast_to(y, relax.ShapeExpr([n, c, m, h, wd])))
        y = self.builder_.emit(relax.op.reshape(y, [n, c * m, h, wd]))
        return self._conv(call, y, w, int(c) * m)

    def _padded_groups(self, call, x, w, groups: int, cpg: int, opg: int):
        """Every group's input and output channels zero-padded to multiples of 4."""
        cpg4, opg4 = _round_up(cpg, GROUP_MIN_LANES), _round_up(opg, GROUP_MIN_LANES)
        weight = self.params[w.name]
        kh, kw = weight.shape[2:]
        padded = np.zeros((groups, opg4, cpg4, kh, kw), weight.dtype)
        padded[:, :opg, :cpg] = weight.reshape(groups, opg, cpg, kh, kw)
        new_w = relax.Var(w.name, relax.TensorType(
            (groups * opg4, cpg4, kh, kw), str(weight.dtype)))
        self.params[w.name] = padded.reshape(groups * opg4, cpg4, kh, kw)
        self.new_vars[w] = new_w
        n, _, h, wd = x.ty.shape
        if cpg4 != cpg:
            x = self.builder_.emit(relax.op.reshape(x, [n, groups, cpg, h, wd]))
            x = self.builder_.emit(relax.op.nn.pad(
                x, [0, 0, 0, 0, 0, cpg4 - cpg, 0, 0, 0, 0]))
            x = self.builder_.emit(relax.op.reshape(x, [n, groups * cpg4, h, wd]))
        y = self._conv(call, x, new_w, groups)
        if opg4 == opg:
            return y
        y = self.builder_.emit(y)
        _, _, oh, ow = y.ty.shape
        y = self.builder_.emit(relax.op.reshape(y, [n, groups, opg4, oh, ow]))
        y = self.builder_.emit(relax.op.strided_slice(y, axes=[2], begin=[0], end=[opg]))
        return relax.op.reshape(y, [n, groups * opg, oh, ow])


def regroup_convs(mod: tvm.IRModule, params: dict[str, np.ndarray]
                  ) -> tuple[tvm.IRModule, dict[str, np.ndarray]]:
    """Rewrite ``main``'s grouped ``conv2d`` calls the kernels lack (see the module
    docstring); returns the module and the parameters with the padded weights."""
    params = dict(params)
    rewriter = _Rewriter(mod, params, use_counts(mod["main"]))
    return rewrite_main_weights(mod, rewriter), params
