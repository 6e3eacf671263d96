"""Dilated convolutions (DeepLab / LR-ASPP backbones): the kernels against numpy at every
precision on the ISA levels the host runs, the planner's padded extents, and torch -> build ->
VM with the dilated layers on AIQ kernels (they were left to TVM's unscheduled conv2d)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import aiq_tvm
from aiq_tvm import testing
from aiq_tvm.quant import quantize_act
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.targets.x86.conv2d import conv_choice_for, crop_dead_taps
from aiq_tvm.targets.x86.winograd import dilation_phases
from conftest import randomize_bn
from isa import BEST_X86, isa_params

# Depthwise, regular, grouped, an RGB stem; stride 1 and 2; dilation 2, (3, 2) and (2, 1); odd
# map sizes.
DILATED = {
    "dw_d2": ConvSpec(1, 9, 11, 32, 32, 3, 3, padding=2, groups=32, dilation=2),
    "dw_d2_s2": ConvSpec(2, 12, 10, 48, 48, 5, 5, stride=2, padding=4, groups=48, dilation=2),
    "conv_d2": ConvSpec(1, 10, 9, 16, 24, 3, 3, padding=2, dilation=2),
    "conv_d32_s2": ConvSpec(1, 13, 12, 8, 32, 3, 3, stride=2, padding=(3, 2, 3, 2),
                            dilation=(3, 2)),
    "grouped_d2": ConvSpec(1, 8, 8, 32, 32, 3, 3, padding=2, groups=4, dilation=2),
    # 3 channels: integer kernels fold the window's columns into the reduction (rows dilated)
    "stem_d21": ConvSpec(1, 20, 20, 3, 16, 7, 7, stride=2, padding=(6, 3, 6, 3),
                         dilation=(2, 1)),
}


def _check(spec: ConvSpec, scheme: str, target) -> None:
    rng = np.random.default_rng(0)
    x, w, b, res, qp = testing.layer_data(spec, rng, residual=True, offset=0.3)
    kw = {} if scheme == "fp32" else {"act_qparams": qp}
    k = conv2d_kernel(spec, scheme, w, b, act="relu", residual=True, target=target, **kw)
    y = testing.run_kernel(k, testing.kernel_input(scheme, x, qp), target, residual=res)
    ref = testing.reference(spec, scheme, x, w, b, target=target, act="relu", residual=res,
                            **kw).y
    assert y.shape == ref.shape == spec.out_shape
    assert testing.relative_error(y, ref) < (1e-5 if scheme == "fp32" else 1e-4)


@pytest.mark.parametrize("scheme", ["fp32", "int8", "int4"])
@pytest.mark.parametrize("name", list(DILATED))
def test_dilated_kernel_matches_numpy(name, scheme):
    _check(DILATED[name], scheme, BEST_X86)


@pytest.mark.parametrize("target", isa_params(("avx512bw", "avx2", "sse")))
def test_dilated_kernel_other_isa_levels(target):
    """The vpmaddubsw (63-code) and pmaddwd paths read the dilated taps the same way."""
    for name in ("dw_d2_s2", "conv_d32_s2"):
        _check(DILATED[name], "int8", target)


def test_dilated_int_accumulator_exact():
    """``acc - corr`` equals numpy's integer conv bit for bit (the taps' indices, not just a
    close float result)."""
    spec = DILATED["conv_d32_s2"]
    x, w, b, _, qp = testing.layer_data(spec, np.random.default_rng(1), offset=0.3)
    k = conv2d_kernel(spec, "int8", w, b, act_qparams=qp, target=BEST_X86, debug_acc=True)
    acc = testing.run_kernel(k, quantize_act(x, qp), BEST_X86)
    ref = testing.reference(spec, "int8", x, w, b, target=BEST_X86, act_qparams=qp)
    np.testing.assert_array_equal(acc, ref.acc)


def test_dilated_rows_fold_columns():
    """Row dilation keeps the integer stem's column fold (its window rows are still runs of
    KW * C values); column dilation drops it."""
    spec = DILATED["stem_d21"]
    assert conv_choice_for(spec, "int8", BEST_X86).plan.fold
    cols = ConvSpec(1, 20, 20, 3, 16, 7, 7, stride=2, padding=(3, 6, 3, 6), dilation=(1, 2))
    assert not conv_choice_for(cols, "int8", BEST_X86).plan.fold
    _check(cols, "int8", BEST_X86)


def test_dilated_padded_copy_covers_the_window():
    """The direct plan's padded input spans the dilated window: (OH - 1) * sh + (KH - 1) * dh
    + 1 rows."""
    spec = ConvSpec(1, 14, 14, 64, 64, 3, 3, padding=2, dilation=2)
    choice = conv_choice_for(spec, "fp32", BEST_X86, winograd=False)
    assert choice.wplan is None
    assert choice.plan.hq >= (spec.OH - 1) + 2 * 2 + 1
    assert spec.OH == spec.OW == 14


def test_taps_reading_only_padding_are_dropped():
    """Atrous rates past the map: a 3x3 at rate 12 on 7 x 7 is a 1x1 conv; a 5x5 at rate 4
    on 6 x 6 keeps its middle three taps (the outer ones read rows -8..-3 and 8..13)."""
    aspp = ConvSpec(1, 7, 7, 32, 16, 3, 3, padding=12, dilation=12)
    one, _ = crop_dead_taps(aspp)
    assert (one.KH, one.KW, one.padding, one.dilation) == (1, 1, (0, 0, 0, 0), (1, 1))
    assert one.out_shape == aspp.out_shape
    assert conv_choice_for(aspp, "fp32", BEST_X86).plan.tile.describe("x").startswith("x_bcast")
    mid = ConvSpec(2, 6, 6, 8, 8, 5, 5, padding=8, dilation=4)
    three, w = crop_dead_taps(mid, np.arange(8 * 8 * 25, dtype=np.float32).reshape(8, 8, 5, 5))
    assert (three.KH, three.KW, three.padding) == (3, 3, (4, 4, 4, 4))
    np.testing.assert_array_equal(w[0, 0], np.arange(25).reshape(5, 5)[1:4, 1:4])
    live = ConvSpec(1, 8, 8, 8, 8, 3, 3, padding=6, dilation=6)  # rows 0-1 and 6-7 reached
    assert crop_dead_taps(live)[0] == live


@pytest.mark.parametrize("scheme", ["fp32", "int8"])
def test_dropped_taps_change_nothing(scheme):
    """The kernel on the full weights equals the reference of the full conv in float, and the
    integer reference of the cropped conv bit for bit (codes of the live taps' range)."""
    spec = ConvSpec(2, 6, 7, 16, 16, 5, 5, stride=(1, 2), padding=(8, 8, 8, 8), dilation=4)
    x, w, b, _, qp = testing.layer_data(spec, np.random.default_rng(2), offset=0.3)
    kw = {} if scheme == "fp32" else {"act_qparams": qp}
    k = conv2d_kernel(spec, scheme, w, b, target=BEST_X86, debug_acc=scheme != "fp32", **kw)
    y = testing.run_kernel(k, testing.kernel_input(scheme, x, qp), BEST_X86)
    if scheme == "fp32":
        ref = testing.reference(spec, scheme, x, w, b).y
        assert testing.relative_error(y, ref) < 1e-6
    else:
        cropped, wc = crop_dead_taps(spec, w)
        assert cropped.KH < spec.KH
        ref = testing.reference(cropped, scheme, x, wc, b, target=BEST_X86, **kw)
        np.testing.assert_array_equal(y, ref.acc)


class _DilatedNet(nn.Module):
    """A DeepLab-style tail: dilated 3x3, a dilated depthwise + pointwise pair, a head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16),
                                  nn.ReLU())
        self.atrous = nn.Sequential(nn.Conv2d(16, 32, 3, padding=2, dilation=2),
                                    nn.BatchNorm2d(32), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(32, 32, 5, padding=4, dilation=2, groups=32),
                                nn.BatchNorm2d(32), nn.Hardswish(), nn.Conv2d(32, 24, 1))
        self.head = nn.Linear(24, 10)

    def forward(self, x):
        y = self.dw(self.atrous(self.stem(x)))
        return self.head(y.mean((2, 3)))


def test_dilated_net_builds_on_aiq_kernels_and_matches_torch():
    torch.manual_seed(0)
    model = randomize_bn(_DilatedNet())
    x = np.random.default_rng(0).standard_normal((16, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(x[:2]))
    res = aiq_tvm.build(mod, params=params, plan="int8", calib_data=x, batch_size=16)
    prec = res.report.precisions()
    assert prec["atrous.0"] == prec["dw.0"] == "int8"  # on AIQ kernels, not TVM's conv2d
    assert not [lc.name for lc in res.cost.layers if not lc.supported]  # nothing left FP32
    fp32 = aiq_tvm.build(mod, params=params, plan="fp32", batch_size=16)
    assert testing.relative_error(fp32.run(x), ref) < 1e-5
    y = res.run(x)
    cos = (y * ref).sum(1) / np.linalg.norm(y, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.99


def test_wide_panels_are_chunked_and_exact(monkeypatch):
    """DeepLabV3-MobileNetV3's atrous conv at rate 12 (3x3 960 -> 256 at 14 x 14): 2.2 MB of
    weights per block of 64 output channels, more than L2, so the reduction runs in chunks of
    channels that stay in cache (TilePlan.kchunk); the result is the unchunked sum's.
    AIQ_WEIGHT_STREAM=0 plans it whole."""
    spec = ConvSpec(1, 14, 14, 960, 256, 3, 3, padding=12, dilation=12)
    x, w, b, res, _ = testing.layer_data(spec, np.random.default_rng(3), residual=True)
    outs = []
    for env in ("", "0"):
        monkeypatch.setenv("AIQ_WEIGHT_STREAM", env)
        k = conv2d_kernel(spec, "fp32", w, b, act="relu", residual=True, target=BEST_X86)
        assert (k.plan.kchunk > 0) == (env == "")
        outs.append(testing.run_kernel(k, x, BEST_X86, residual=res))
    ref = testing.reference(spec, "fp32", x, w, b, act="relu", residual=res).y
    assert testing.relative_error(outs[0], ref) < 1e-5
    assert testing.relative_error(outs[0], outs[1]) < 1e-5
    monkeypatch.setenv("AIQ_WEIGHT_STREAM", "2")
    with pytest.raises(ValueError, match="AIQ_WEIGHT_STREAM must be 0"):
        conv2d_kernel(spec, "fp32", w, b, target=BEST_X86)


def test_chunks_need_a_broadcast_channel_reduction():
    from aiq_tvm.targets.x86.schedules import TilePlan

    with pytest.raises(ValueError, match="kchunk=4 needs mode 'bcast'"):
        TilePlan((1, 1, 4), 16, 16, "dw", ("s0", "s1", "s2", "o"), ("s0",),
                 reduce_names=("kh", "kw"), kchunk=4)


def test_weights_cycled_past_l2_are_not_read_per_block(monkeypatch):
    """1x1 2048 -> 512 at 28 x 28 (FCN-ResNet50): its input outweighs its 4 MB of weights, so
    rows were split first with the channel blocks innermost, and every block of 4 positions
    cycled all 4 MB through L2. Priced (each sweep of the spatial loops outside the channel
    loop reads all the weights), the channel loop is no longer the innermost."""
    spec = ConvSpec(1, 28, 28, 2048, 512, 1, 1)
    assert conv_choice_for(spec, "fp32", BEST_X86).plan.tile.order[-1] != "o"
    monkeypatch.setenv("AIQ_WEIGHT_STREAM", "0")
    assert conv_choice_for(spec, "fp32", BEST_X86).plan.tile.order == ("s0", "s1", "s2", "o")


# ---------------------------------------------------------------------------------------------
# Dilated 3x3 convs as d * d undilated phases on the Winograd kernel
# ---------------------------------------------------------------------------------------------

PHASED = {
    "d2": ConvSpec(2, 12, 8, 16, 24, 3, 3, padding=2, dilation=2),
    "d4": ConvSpec(1, 16, 8, 32, 16, 3, 3, padding=4, dilation=4),
}


def test_dilation_phases_of_a_layer():
    """Rows and columns split by their residue modulo d: N * d * d images of H / d x W / d
    with padding p / d; layers whose sizes or paddings are not multiples of d do not split."""
    phases = dilation_phases(PHASED["d2"])
    assert phases == ConvSpec(8, 6, 4, 16, 24, 3, 3, padding=1)
    assert phases.out_shape == (8, 6, 4, 24)
    assert dilation_phases(ConvSpec(1, 28, 28, 8, 8, 3, 3, padding=4, dilation=4)).N == 16
    for spec in (DILATED["conv_d2"],  # 9 columns
                 DILATED["conv_d32_s2"],  # stride 2
                 ConvSpec(1, 12, 12, 8, 8, 3, 3, padding=(2, 2, 2, 2), dilation=(2, 1)),
                 ConvSpec(1, 12, 12, 8, 8, 3, 3, padding=3, dilation=2),  # padding 3
                 ConvSpec(1, 12, 12, 8, 8, 5, 5, padding=4, dilation=2),  # 5x5
                 ConvSpec(1, 12, 12, 8, 8, 3, 3, padding=1)):  # not dilated
        assert dilation_phases(spec) is None


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("name", list(PHASED))
def test_dilated_winograd_on_phases_matches_numpy(name, m):
    """Bias, residual and relu applied where each phase's pixel lands."""
    spec = PHASED[name]
    rng = np.random.default_rng(0)
    x, w, b, res, _ = testing.layer_data(spec, rng, residual=True, offset=0.3)
    k = conv2d_kernel(spec, "fp32", w, b, act="relu", residual=True, target=BEST_X86,
                      winograd=m)
    assert k.info["algorithm"] == f"winograd_f{m}"
    y = testing.run_kernel(k, x, BEST_X86, residual=res)
    ref = testing.reference(spec, "fp32", x, w, b, target=BEST_X86, act="relu", residual=res).y
    assert y.shape == ref.shape == spec.out_shape
    assert testing.relative_error(y, ref) < 1e-5


def test_planner_runs_fcn_dilated_layers_on_phases():
    """FCN-ResNet50's dilated 3x3 layers at 224 (28 x 28 maps, dilation 2 and 4) take the
    Winograd kernel on their phases (1.83x and 1.31x the direct kernel there,
    docs/runs/s33/dilated_winograd.txt); integer schemes keep the direct kernel."""
    for c, d in ((256, 2), (512, 4)):
        spec = ConvSpec(1, 28, 28, c, c, 3, 3, padding=d, dilation=d)
        assert conv_choice_for(spec, "fp32", BEST_X86).wplan is not None
        assert conv_choice_for(spec, "int8", BEST_X86).wplan is None


def test_weights_filling_l2_are_priced_as_cycled(monkeypatch, xeon_caches):
    """1x1 2048 -> 256 at 28 x 28 (DeepLabV3's atrous branches): 2 MiB of weights, all of a 2
    MiB L2, so rows-first plans cycle them past L2 (186 against 279 GFLOP/s with the term on
    the Intel host); MobileNetV2's 960 -> 320 (1.2 MiB) stays rows first with the channel
    blocks innermost (its measured fastest), below CYCLED_L2_SHARE of that L2 (not of a 1 MiB
    one: the L2 is pinned)."""
    from aiq_tvm.targets.x86 import conv2d as conv_mod

    wide = ConvSpec(1, 28, 28, 2048, 256, 1, 1)
    assert conv_choice_for(wide, "fp32", BEST_X86).plan.tile.order[-1] != "o"
    for n in (1, 8):
        narrow = ConvSpec(n, 7, 7, 960, 320, 1, 1)
        assert conv_choice_for(narrow, "fp32", BEST_X86).plan.tile.order[-1] == "o"
    monkeypatch.setattr(conv_mod, "CYCLED_L2_SHARE", 1.0)
    assert conv_choice_for(wide, "fp32", BEST_X86).plan.tile.order[-1] == "o"
