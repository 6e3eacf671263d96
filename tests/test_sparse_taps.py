"""Dilated float convs whose taps mostly read padding run as one 1x1 kernel per tap
(targets/x86/sparse_taps.py): the pieces' geometry, and torch -> build -> VM against torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import aiq_tvm
from aiq_tvm.targets.x86 import ConvSpec, TapPiece, layer_tap_pieces, tap_pieces
from aiq_tvm.targets.x86.sparse_taps import MIN_SAVED_MACS
from isa import BEST_X86

# DeepLabV3-MobileNetV3's rate-12 atrous conv at 224 x 224 (a 14 x 14 map).
ASPP_12 = ConvSpec(1, 14, 14, 960, 256, 3, 3, padding=12, dilation=12)


def test_rate_12_on_14_x_14_splits_into_its_nine_taps():
    """Centre tap first (every output, no offset); an outer tap reaches the image from the two
    rows or columns at the far edge: outputs 12-13 read rows 0-1 (offset -12), 0-1 read 12-13."""
    pieces = tap_pieces(ASPP_12)
    assert pieces[0] == TapPiece(1, 1, (0, 14), (0, 14), (0, 0))
    assert len(pieces) == 9
    by_tap = {(p.kh, p.kw): p for p in pieces}
    assert by_tap[0, 1] == TapPiece(0, 1, (12, 14), (0, 14), (-12, 0))
    assert by_tap[2, 2] == TapPiece(2, 2, (0, 2), (0, 2), (12, 12))
    assert by_tap[1, 0] == TapPiece(1, 0, (0, 14), (12, 14), (0, -12))
    assert sum(p.area for p in pieces) == 18 * 18  # of 9 * 196 tap positions


def test_convs_whose_taps_mostly_read_the_image_are_not_split():
    assert tap_pieces(ConvSpec(1, 28, 28, 256, 256, 3, 3, padding=2, dilation=2)) is None  # 91 %
    assert tap_pieces(ConvSpec(1, 27, 27, 256, 256, 3, 3, padding=2, dilation=2)) is None  # 90 %
    assert tap_pieces(ConvSpec(1, 28, 28, 256, 256, 3, 3, padding=3, dilation=3)) is not None
    assert tap_pieces(ConvSpec(1, 28, 28, 256, 256, 3, 3, padding=12, dilation=12)) is not None
    assert tap_pieces(ConvSpec(1, 14, 14, 256, 256, 3, 3, padding=1)) is None  # not dilated
    assert tap_pieces(ConvSpec(1, 14, 14, 256, 256, 3, 3, stride=2, padding=12,
                               dilation=12)) is None
    assert tap_pieces(ConvSpec(1, 14, 14, 256, 256, 3, 3, padding=12, groups=8,
                               dilation=12)) is None
    # uneven padding: taps at offsets -6, 6 and 18, none reaching every output, so no kernel
    # to take the epilogue: kept whole
    uneven = ConvSpec(1, 14, 14, 256, 256, 3, 3, padding=(6, 6, 18, 18), dilation=12)
    assert uneven.OH == 14 and tap_pieces(uneven) is None


def test_small_layers_are_not_split():
    """A split adds a slice and a kernel call per tap: layers that would save fewer than
    MIN_SAVED_MACS multiply-adds on padding stay whole (64 -> 64 at rate 12 on 14 x 14 saves
    5.9 M and ran 0.79x split; 128 -> 128 saves 23.6 M and ran 1.14x)."""
    def rate_12(c):
        return ConvSpec(1, 14, 14, c, c, 3, 3, padding=12, dilation=12)

    assert tap_pieces(rate_12(64)) is None
    assert tap_pieces(rate_12(128)) is not None
    assert (1764 - 324) * 128 * 128 >= MIN_SAVED_MACS > (1764 - 324) * 64 * 64
    assert tap_pieces(ConvSpec(4, 14, 14, 64, 64, 3, 3, padding=12, dilation=12)) is not None


class _Atrous(nn.Module):
    """Two atrous branches on one map, batch norm + relu after the split one, a residual
    add into it, and an unsplit (grouped) dilated conv beside it."""

    def __init__(self, c: int = 128):
        super().__init__()
        self.split = nn.Conv2d(c, c, 3, padding=12, dilation=12, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.whole = nn.Conv2d(c, c, 3, padding=2, dilation=2, groups=2)
        self.short = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return torch.relu(self.bn(self.split(x)) + self.short(x)) + self.whole(x)


@pytest.mark.parametrize("hw", [(14, 14), (13, 16)])
def test_split_layer_matches_torch(hw):
    torch.manual_seed(0)
    model = _Atrous().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 128, *hw)
    mod, params = aiq_tvm.from_torch(model, x[:1])
    res = aiq_tvm.build(mod, params=params, target="llvm", plan="fp32")
    ref = model(x).detach().numpy()
    y = res.run(x.numpy())
    assert np.abs(y - ref).max() / np.abs(ref).max() < 1e-5
    symbols = [c.symbol for c in res.executable(2).aiq_kernel_calls]
    assert sum("_fp32_tap" in s for s in symbols) == 8


def test_layers_on_the_winograd_phases_stay_whole():
    """FCN-ResNet50's rate-4 layer (82 % of its tap positions reach the image) would split,
    but the planner runs it on the Winograd kernel's dilation phases, which were faster; a
    map that does not divide into phases (27 x 27) splits."""
    fcn = ConvSpec(1, 28, 28, 512, 512, 3, 3, padding=4, dilation=4)
    assert tap_pieces(fcn) is not None and layer_tap_pieces(fcn, BEST_X86) is None
    odd = ConvSpec(1, 27, 27, 512, 512, 3, 3, padding=4, dilation=4)
    assert layer_tap_pieces(odd, BEST_X86) == tap_pieces(odd)
    assert layer_tap_pieces(ASPP_12, BEST_X86) == tap_pieces(ASPP_12)
