"""Dilated convs whose taps partly read padding, as one 1x1 conv per tap.

DeepLabV3's atrous pyramid at 224 x 224 runs a 3x3 conv at rate 12 on a 14 x 14 map (960 -> 256
channels on MobileNetV3). Its outer taps reach the image only from the two rows or columns at
the far edge: of the 9 x 196 tap positions, 324 read the image, so a direct kernel spends 82 %
of its multiply-adds on padding (4.2 of the model's 10.2 ms on this host, ORT runs the whole
model in 8.6 ms). :func:`tap_pieces` splits such a layer into its taps: tap ``(kh, kw)`` is a
1x1 conv over the rectangle of outputs whose input pixel it reaches (the input shifted by the
tap's offset), and the centre tap, which reaches every output, carries the bias, the residual
and the activation. The lowering (``passes/_lowering.py``) sums the other taps' rectangles,
padded with zeros, into that centre kernel's residual input. Float only: the integer kernels
requantize per kernel, so their partial sums cannot be added afterwards. Where most taps reach
the image the split still wins against the direct kernel on a dilated window (the pointwise
kernels run faster), up to :data:`SPARSE_TAP_SHARE`, but not against the Winograd kernel on
the dilation phases, which keeps the layers it takes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .common import ConvSpec

__all__ = ["MIN_SAVED_MACS", "SPARSE_TAP_SHARE", "TapPiece", "layer_tap_pieces", "tap_pieces"]

# A conv is split when its taps reach the image at no more than this share of its
# KH * KW * OH * OW tap positions. Split against whole, FP32, two threads, this host
# (docs/runs/s33/sparse_share.txt): against the direct kernel 3.15x at 18 %
# (DeepLabV3-MobileNetV3's rate 12), 1.44x at 51 % and 3.69x at 18 % (DeepLabV3-ResNet50's
# rates 12 and 24), 1.40-1.62x at 51-73 %, 1.14x at 86 %, 1.04x at 90 %; against the Winograd
# kernel on the dilation phases 1.03x at 82 % (0.94x in an earlier run) and 0.62x at 91 %, so
# the layers that kernel takes stay whole (:func:`layer_tap_pieces`).
SPARSE_TAP_SHARE = 0.875
# ... and when the multiply-adds it saves (those of tap positions on padding) are at least
# this many: each piece adds an input slice and a kernel call (two threads, 14 x 14 at rate
# 12, 18 %: 24 -> 16 channels 0.60x, 64 -> 64 0.79x, 128 -> 128 1.14x, 256 -> 128 1.61x;
# docs/runs/s33/sparse_share_small.txt; 5.9 M and 23.7 M saved at 64 and 128 channels).
MIN_SAVED_MACS = 16 * 2**20


@dataclass(frozen=True)
class TapPiece:
    """One tap of a split conv: the outputs ``rows`` x ``cols`` (half-open ranges) read the
    input at ``(i + offset[0], j + offset[1])``, inside the image."""

    kh: int
    kw: int
    rows: tuple[int, int]
    cols: tuple[int, int]
    offset: tuple[int, int]

    @property
    def area(self) -> int:
        return (self.rows[1] - self.rows[0]) * (self.cols[1] - self.cols[0])


def _reach(tap: int, dilation: int, pad: int, size: int, out: int) -> tuple[tuple[int, int], int]:
    """(outputs ``[lo, hi)`` whose input ``i + offset`` lies in ``[0, size)``, offset) of one
    tap along one axis, stride 1."""
    offset = tap * dilation - pad
    return (max(0, -offset), min(out, size - offset)), offset


def tap_pieces(spec: ConvSpec, share: float | None = None) -> list[TapPiece] | None:
    """The taps of ``spec`` that reach the image, centre tap first, or None where the conv is
    not split: not dilated, strided or grouped, more than ``share`` (default
    :data:`SPARSE_TAP_SHARE`) of its tap positions reaching the image, fewer than
    :data:`MIN_SAVED_MACS` multiply-adds on padding saved, or no tap reaching every output (the
    one that takes the epilogue)."""
    share = SPARSE_TAP_SHARE if share is None else share
    if spec.groups != 1 or spec.stride != (1, 1) or spec.dilation == (1, 1):
        return None
    pieces = []
    for kh in range(spec.KH):
        rows, oh = _reach(kh, spec.dilation[0], spec.padding[0], spec.H, spec.OH)
        for kw in range(spec.KW):
            cols, ow = _reach(kw, spec.dilation[1], spec.padding[1], spec.W, spec.OW)
            if rows[0] < rows[1] and cols[0] < cols[1]:
                pieces.append(TapPiece(kh, kw, rows, cols, (oh, ow)))
    full = [p for p in pieces if p.rows == (0, spec.OH) and p.cols == (0, spec.OW)]
    live, positions = sum(p.area for p in pieces), spec.KH * spec.KW * spec.OH * spec.OW
    saved = spec.N * (positions - live) * spec.C * spec.O
    if not full or live > share * positions or saved < MIN_SAVED_MACS:
        return None
    return [full[0]] + [p for p in pieces if p is not full[0]]


def layer_tap_pieces(spec: ConvSpec, target) -> list[TapPiece] | None:
    """:func:`tap_pieces` of a float layer built for ``target``, None where the planner runs it
    on the Winograd kernel (dilation phases, ``winograd.dilation_phases``), which was faster
    than the split on FCN-ResNet50's dilated layers."""
    from .conv2d import conv_choice_for

    pieces = tap_pieces(spec)
    if pieces is None or conv_choice_for(spec, "fp32", target).wplan is not None:
        return None
    return pieces
