"""Transposed convolutions as ordinary ones, at import: then they are AIQ layers.

TVM has no schedule for ``conv2d_transpose`` on CPU: TOPI's kernel ran 31 ms for a 64 -> 64
channel 2x2 / 2 upsampling of a 28 x 28 map (the 1x1 conv before it: 0.04 ms), and aiq_tvm
had no low-bit kernel for it (the layer stayed FP32, listed in the report). Both forms below
are exact rewrites into ``conv2d``, which the planner quantizes like any conv, with the
transformed weight under the original parameter name (the layer keeps its module path):

* **Non-overlapping windows** (kernel == stride, no padding, output padding or dilation: the
  U-Net upsampling ``ConvTranspose2d(k=2, s=2)``): every output pixel reads one input pixel
  through one tap, so it is a 1x1 conv to ``stride^2 x`` the output channels followed by a
  depth-to-space shuffle (``pixel_shuffle``'s channel order).
* **Otherwise**: the input with ``stride - 1`` zeros inserted between pixels, convolved with the
  spatially flipped kernel (input and output channels swapped per group), padded by
  ``dilation * (k - 1) - padding`` (plus the output padding at the bottom / right). The zeros
  cost ``stride^2`` times the transposed conv's multiply-adds; a phase decomposition would not.

Transposed convs whose weight is not a parameter used once, with another layout or a padding
larger than ``dilation * (k - 1)`` are left as they are.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from ._ir import is_op, replace_main, use_counts

__all__ = ["transposed_conv_as_conv"]


def _ints(values) -> list[int]:
    return [int(v) for v in values]


def _depth_to_space_weight(w: np.ndarray, stride: int) -> np.ndarray:
    """``[Cin, Cout, s, s]`` -> the 1x1 conv weight ``[Cout * s * s, Cin, 1, 1]`` whose output
    channel ``o * s * s + a * s + b`` is output pixel ``(a, b)`` of channel ``o``."""
    cin, cout = w.shape[:2]
    return np.ascontiguousarray(w.transpose(1, 2, 3, 0).reshape(cout * stride * stride, cin,
                                                                 1, 1))


def _flipped_weight(w: np.ndarray, groups: int) -> np.ndarray:
    """``[Cin, Cout / g, kh, kw]`` -> ``[Cout, Cin / g, kh, kw]``, spatially flipped."""
    cin, cog, kh, kw = w.shape
    per_group = w.reshape(groups, cin // groups, cog, kh, kw).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(per_group.reshape(groups * cog, cin // groups, kh, kw)
                                [:, :, ::-1, ::-1])


@mutator
class _Rewriter(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, params: dict, uses: dict):
        super().__init__(mod)
        self.params = params
        self.uses = uses
        self.new_vars: dict = {}  # old weight Var -> new Var

    def visit_call_(self, call):
        call = self.visit_expr_post_order(call)
        if not is_op(call, "relax.nn.conv2d_transpose"):
            return call
        x, w = call.args
        a = call.attrs
        if not (isinstance(w, relax.Var) and w.name in self.params and self.uses.get(w, 0) == 1
                and a.data_layout == "NCHW" and a.kernel_layout == "IOHW"
                and (a.out_layout or "NCHW") == "NCHW"):
            return call
        weight = self.params[w.name]
        stride, pad, out_pad, dil = (_ints(v) for v in (a.strides, a.padding, a.output_padding,
                                                        a.dilation))
        k = list(weight.shape[2:])
        groups = int(a.groups)
        if groups == 1 and k == stride and not any(pad) and not any(out_pad) and dil == [1, 1] \
                and k[0] == k[1]:
            return self._depth_to_space(call, x, w, weight, k[0])
        reach = [d * (kk - 1) for d, kk in zip(dil, k, strict=True)]
        front = [reach[0] - pad[0], reach[1] - pad[1]]
        back = [reach[0] - pad[2] + out_pad[0], reach[1] - pad[3] + out_pad[1]]
        if min(front + back) < 0:
            return call
        new_w = self._replace(w, _flipped_weight(weight, groups))
        dilated = self._dilate(x, stride)
        return relax.op.nn.conv2d(dilated, new_w, strides=1, padding=front + back,
                                  dilation=dil, groups=groups, out_dtype=str(call.ty.dtype))

    def _replace(self, w: relax.Var, value: np.ndarray) -> relax.Var:
        new = relax.Var(w.name, relax.TensorType(value.shape, str(value.dtype)))
        self.params[w.name] = value.astype(self.params[w.name].dtype)
        self.new_vars[w] = new
        return new

    def _depth_to_space(self, call, x, w, weight: np.ndarray, s: int):
        new_w = self._replace(w, _depth_to_space_weight(weight, s))
        # The transposed conv's own result dtype: its out_dtype attribute may be void (ONNX).
        y = self.builder_.emit(relax.op.nn.conv2d(x, new_w, out_dtype=str(call.ty.dtype)))
        n, _, h, wd = x.ty.shape
        cout = weight.shape[1]
        y = self.builder_.emit(relax.op.reshape(y, [n, cout, s, s, h, wd]))
        y = self.builder_.emit(relax.op.permute_dims(y, [0, 1, 4, 2, 5, 3]))
        return relax.op.reshape(y, [n, cout, h * s, wd * s])

    def _dilate(self, x, stride: list[int]):
        """``x`` with ``stride - 1`` zero rows / columns between its pixels."""
        if stride == [1, 1]:
            return x
        n, c, h, wd = x.ty.shape
        sh, sw = stride
        y = self.builder_.emit(relax.op.reshape(x, [n, c, h, 1, wd, 1]))
        y = self.builder_.emit(relax.op.nn.pad(y, [0, 0, 0, 0, 0, 0, 0, sh - 1, 0, 0, 0,
                                                   sw - 1]))
        y = self.builder_.emit(relax.op.reshape(y, [n, c, h * sh, wd * sw]))
        return self.builder_.emit(relax.op.strided_slice(
            y, axes=[2, 3], begin=[0, 0], end=[(h - 1) * sh + 1, (wd - 1) * sw + 1]))


def transposed_conv_as_conv(mod: tvm.IRModule, params: dict[str, np.ndarray]
                            ) -> tuple[tvm.IRModule, dict[str, np.ndarray]]:
    """Rewrite ``main``'s ``conv2d_transpose`` calls into ``conv2d`` (see the module
    docstring); returns the module and the parameters with the transformed weights."""
    func = mod["main"]
    params = dict(params)
    rewriter = _Rewriter(mod, params, use_counts(func))
    body = rewriter.visit_expr(func.body)
    if not rewriter.new_vars:
        return mod, params
    new_params = [rewriter.new_vars.get(p, p) for p in func.params]
    new_func = relax.Function(new_params, body, func.ret_ty, attrs=func.attrs)
    mod = replace_main(mod, new_func)
    mod = relax.transform.CanonicalizeBindings()(relax.transform.DeadCodeElimination()(mod))
    return mod, params
