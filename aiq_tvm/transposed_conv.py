"""Transposed convolutions as ordinary ones, at import: then they are AIQ layers.

TVM has no schedule for ``conv2d_transpose`` on CPU: TOPI's kernel ran 31 ms for a 64 -> 64
channel 2x2 / 2 upsampling of a 28 x 28 map (the 1x1 conv before it: 0.04 ms), and aiq_tvm
had no low-bit kernel for it (the layer stayed FP32, listed in the report). Both forms below
are exact rewrites into ``conv2d``, which the planner quantizes like any conv, with the
transformed weight under the original parameter name (the layer keeps its module path):

* **Sub-pixel** (dilation 1, an output size a multiple of the stride): output pixel
  ``(s * j + rh, s * j' + rw)`` reads a fixed set of the kernel's taps around input
  ``(j, j')``, so one ordinary conv over the input computes all ``stride^2`` residues as blocks
  of output channels (each block's weight holds the taps that reach its residue, zeros
  elsewhere), followed by a depth-to-space shuffle (``pixel_shuffle``'s channel order). Kernel
  == stride without padding (U-Net's ``ConvTranspose2d(k=2, s=2)``) is a 1x1 conv; ``k=4,
  s=2, p=1`` (DCGAN) a 3x3 conv, ``k=3, s=2, p=1, output_padding=1`` a 2x2 one.
* **Otherwise**: the input with ``stride - 1`` zeros inserted between pixels, convolved with the
  spatially flipped kernel (input and output channels swapped per group), padded by
  ``dilation * (k - 1) - padding`` (plus the output padding at the bottom / right). The zeros
  cost ``stride^2`` times the transposed conv's multiply-adds (the report's FLOPs and AI count
  them).

Transposed convs whose weight is not a parameter used once, with another layout or a padding
larger than ``dilation * (k - 1)`` are left as they are.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from ._ir import is_op, rewrite_main_weights, use_counts

__all__ = ["transposed_conv_as_conv"]


def _ints(values) -> list[int]:
    return [int(v) for v in values]


def _axis_phases(length: int, k: int, s: int, front: int, back: int, out_pad: int):
    """Along one axis of a transposed conv (input ``length``, kernel ``k``, stride ``s``,
    paddings, output padding): ``(taps, pad_front, pad_back, per_residue)`` of the ordinary
    conv whose output ``j`` at channel block ``r`` is the transposed conv's output
    ``s * j + r``, or None when the output length is not a multiple of ``s``.

    Output ``o = s * j + r`` reads input ``i`` through tap ``t`` where ``o = s * i - front +
    t``: for residue ``r`` the taps ``t = q + s * m`` with ``q = (r + front) mod s`` read input
    ``j + c - m``, ``c = (r + front) div s``. Over the residues those input offsets span
    ``taps`` positions; ``per_residue[r]`` lists ``(position, t)``.
    """
    out = (length - 1) * s - front - back + k + out_pad
    if out % s:
        return None
    per_residue, offsets = [], []
    for r in range(s):
        q, c = (r + front) % s, (r + front) // s
        pairs = [(c - m, q + s * m) for m in range(-(-(k - q) // s))]
        per_residue.append(pairs)
        offsets += [d for d, _ in pairs]
    lo, hi = min(offsets), max(offsets)
    pad_front, pad_back = -lo, out // s - 1 + hi - (length - 1)
    if pad_front < 0 or pad_back < 0:
        return None
    return hi - lo + 1, pad_front, pad_back, [[(d - lo, t) for d, t in pairs]
                                              for pairs in per_residue]


def _phase_weight(w: np.ndarray, groups: int, rows, cols, taps_h: int, taps_w: int
                  ) -> np.ndarray:
    """The ordinary conv's weight ``[Cout * sh * sw, Cin / g, taps_h, taps_w]``: output
    channel ``(o * sh + rh) * sw + rw`` (``pixel_shuffle``'s order) holds ``w``'s taps that
    reach residue ``(rh, rw)``, zeros elsewhere."""
    cin, cog = w.shape[:2]
    cig = cin // groups
    per_group = w.reshape(groups, cig, cog, *w.shape[2:])
    out = np.zeros((groups, cog, len(rows), len(cols), cig, taps_h, taps_w), w.dtype)
    for rh, row in enumerate(rows):
        for rw, col in enumerate(cols):
            for ih, th in row:
                for iw, tw in col:
                    out[:, :, rh, rw, :, ih, iw] = per_group[:, :, :, th, tw].transpose(0, 2, 1)
    return out.reshape(groups * cog * len(rows) * len(cols), cig, taps_h, taps_w)


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
        shape = x.ty.shape
        if dil == [1, 1] and all(isinstance(shape[i], tvm.tirx.IntImm) for i in (2, 3)):
            axes = [_axis_phases(int(shape[2 + i]), k[i], stride[i], pad[i], pad[2 + i],
                                 out_pad[i]) for i in range(2)]
            if None not in axes and axes[0][0] * axes[1][0] <= k[0] * k[1]:
                return self._sub_pixel(call, x, w, weight, groups, stride, axes)
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

    def _sub_pixel(self, call, x, w, weight: np.ndarray, groups: int, stride, axes):
        """One ordinary conv computing every output residue as a block of channels, then a
        depth-to-space."""
        (taps_h, front_h, back_h, rows), (taps_w, front_w, back_w, cols) = axes
        new_w = self._replace(w, _phase_weight(weight, groups, rows, cols, taps_h, taps_w))
        # The transposed conv's own result dtype: its out_dtype attribute may be void (ONNX).
        y = self.builder_.emit(relax.op.nn.conv2d(
            x, new_w, padding=[front_h, front_w, back_h, back_w], groups=groups,
            out_dtype=str(call.ty.dtype)))
        n, h, wd = (y.ty.shape[i] for i in (0, 2, 3))
        cout = weight.shape[1] * groups
        sh, sw = stride
        y = self.builder_.emit(relax.op.reshape(y, [n, cout, sh, sw, h, wd]))
        y = self.builder_.emit(relax.op.permute_dims(y, [0, 1, 4, 2, 5, 3]))
        return relax.op.reshape(y, [n, cout, h * sh, wd * sw])

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
    params = dict(params)
    rewriter = _Rewriter(mod, params, use_counts(mod["main"]))
    return rewrite_main_weights(mod, rewriter), params
