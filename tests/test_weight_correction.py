"""Weight corrections before rounding (aiq_tvm.weight_correction): bias correction with the
calibration's input means, per-channel clipping of the weight range, and their plumbing
(calibration statistics, BuildConfig option, the passes hand the kernels the corrected
values and nothing else)."""

import json
import re

import numpy as np
import pytest
import torch
from torch import nn

import aiq_tvm
from aiq_tvm.calibrate import Calibration, RangeCollector
from aiq_tvm.config import BuildConfig
from aiq_tvm.gptq import HessianCollector, conv_patches, gptq_round
from aiq_tvm.quant import _conv_nhwc_f64, quantize_weight_symmetric
from aiq_tvm.targets import capabilities
from aiq_tvm.weight_correction import WEIGHT_CORRECTIONS, correct_layer, expected_output_error
from isa import HASWELL, requires_host

# qmax 2: scale 0.5 for a row of max-abs 1.0; every value below is exact in binary.
ROW = [1.0, 0.375, -0.125]  # codes 2, 1, 0 -> 1.0, 0.5, 0.0: errors 0, +0.125, +0.125


def test_bias_correction_of_a_1x1_conv_is_the_analytic_expected_error():
    w = np.array([ROW, [-1.0, 0.0, 0.5]], np.float32).reshape(2, 3, 1, 1)  # row 2 exact
    mean = np.array([4.0, 8.0, 2.0])
    new_w, new_b = correct_layer(w, np.array([1.0, -3.0], np.float32), 2, "bias", 1, mean)
    assert new_w is w  # bias correction leaves the weight alone
    # E[error] = 0.125 * 8 + 0.125 * 2 = 1.25 for channel 0, 0 for channel 1
    np.testing.assert_array_equal(new_b, np.array([1.0 - 1.25, -3.0], np.float32))


def test_bias_correction_sums_every_tap_and_creates_a_missing_bias():
    w = np.zeros((1, 3, 2, 2), np.float32)
    w[0, :, 0, 0] = ROW  # taps of the same channel share its mean
    w[0, 1, 1, 1] = 0.375
    _, b = correct_layer(w, None, 2, "bias", 1, np.array([4.0, 8.0, 2.0]))
    np.testing.assert_array_equal(b, np.array([-(0.125 * 8 * 2 + 0.125 * 2)], np.float32))


def test_bias_correction_of_grouped_depthwise_and_dense_layers():
    mean = np.array([1.0, 2.0, 3.0, 4.0])
    dw = np.zeros((4, 1, 3, 3))  # depthwise: output channel o reads input channel o
    dw[2, 0, 1, :] = 0.5
    np.testing.assert_array_equal(expected_output_error(dw, mean, groups=4), [0, 0, 4.5, 0])
    # groups 2: output channels 0-1 read inputs 0-1, outputs 2-3 read inputs 2-3
    g = np.zeros((4, 2, 1, 1))
    g[3, 0, 0, 0] = 0.5  # output 3, first channel of group 1 = input channel 2
    np.testing.assert_array_equal(expected_output_error(g, mean, groups=2), [0, 0, 0, 1.5])
    d = np.array([ROW], np.float32)  # dense [O, K]
    _, b = correct_layer(d, np.zeros(1, np.float32), 2, "bias", 1, np.array([4.0, 8.0, 2.0]))
    np.testing.assert_array_equal(b, [-1.25])
    with pytest.raises(ValueError, match="reads 3 channels"):
        expected_output_error(d, np.ones(4))


def test_without_input_means_bias_correction_is_skipped():
    w = np.array([ROW], np.float32)
    assert correct_layer(w, None, 2, "bias") == (w, None)


def test_gptq_moves_a_rounding_error_onto_a_column_with_the_same_input():
    # Inputs 1 and 2 are one signal (H's block of ones): round-to-nearest gives codes
    # [4, 1, 1] (0.35 / 0.25 = 1.4 twice: output error 0.2); GPTQ rounds column 1 to 1, adds
    # its error 0.1 / 1.01 (1 % damping) to column 2 (0.449 -> code 2): output error 0.05.
    w = np.array([[1.0, 0.35, 0.35]], np.float32)
    h = np.array([[[1.0, 0, 0], [0, 1, 1], [0, 1, 1]]], np.float32)
    out = gptq_round(w, h, 4)
    q, s = quantize_weight_symmetric(out, 4)
    assert q.tolist() == [[4, 1, 2]] and s[0] == np.float32(0.25)
    np.testing.assert_array_equal(out, np.float32([[1.0, 0.25, 0.5]]))
    assert quantize_weight_symmetric(w, 4)[0].tolist() == [[4, 1, 1]]


def _textbook_gptq_codes(w, h, qmax, damp=0.01):
    """GPTQ as published (Frantar et al., Algorithm 1 without lazy batches): the upper Cholesky
    factor of the damped H^-1, each column's error spread over the columns after it."""
    h = np.array(h, np.float64)
    h += damp * np.mean(np.diag(h)) * np.eye(len(h))
    u = np.linalg.cholesky(np.linalg.inv(h)).T
    w = np.array(w, np.float64)
    _, s = quantize_weight_symmetric(w.astype(np.float32), qmax)
    s = s.astype(np.float64)
    q = np.zeros_like(w)
    for i in range(w.shape[1]):
        q[:, i] = np.clip(np.rint(w[:, i] / s), -qmax, qmax)
        e = (w[:, i] - q[:, i] * s) / u[i, i]
        w[:, i + 1:] -= np.outer(e, u[i, i + 1:])
    return q


@pytest.mark.parametrize("qmax", [127, 7])
def test_gptq_codes_equal_the_textbook_algorithm_across_lazy_blocks(qmax):
    # K = 300 spans three of the implementation's 128-column blocks; correlated inputs so the
    # feedback changes many codes from round-to-nearest.
    rng = np.random.default_rng(1)
    base = rng.standard_normal((2000, 60))
    x = np.concatenate([base + 0.2 * rng.standard_normal(base.shape) for _ in range(5)], 1)
    h = x.T @ x / len(x)
    w = rng.standard_normal((16, 300)).astype(np.float32)
    out = gptq_round(w, h[None].astype(np.float32), qmax)
    codes, _ = quantize_weight_symmetric(out, qmax)
    expected = _textbook_gptq_codes(w, h.astype(np.float32), qmax)
    reach = np.abs(expected).max(axis=1) == qmax  # rows that keep GPTQ's codes
    assert reach.sum() >= 12
    np.testing.assert_array_equal(codes[reach], expected[reach])
    rtn, _ = quantize_weight_symmetric(w, qmax)
    assert (codes[reach] != rtn[reach]).mean() > 0.1


def test_gptq_keeps_the_scales_and_cuts_the_output_error_of_a_conv():
    rng = np.random.default_rng(0)
    x = np.repeat(rng.standard_normal((4, 1, 10, 10)), 3, axis=1).astype(np.float32) + 0.5
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    col = HessianCollector({"l": ("conv2d", (3, 3), (1, 1), (1, 1, 1, 1), 1)})
    col.update("l", x)  # 400 positions: all of them
    p = conv_patches(x, (3, 3), (1, 1), (1, 1, 1, 1), 1, np.arange(400))[0]
    y = _conv_nhwc_f64(x.transpose(0, 2, 3, 1), w, (1, 1), (1, 1, 1, 1), 1, 0.0)
    np.testing.assert_allclose(p @ w.reshape(8, -1).T, y.reshape(-1, 8), atol=1e-5)
    h = col.hessians()["l"]
    np.testing.assert_allclose(h[0], p.T.astype(np.float64) @ p / 400, rtol=1e-5, atol=1e-6)
    for qmax in (127, 7):
        q, s = quantize_weight_symmetric(w, qmax)
        out = gptq_round(w, h, qmax)
        q2, s2 = quantize_weight_symmetric(out, qmax)
        np.testing.assert_array_equal(s2, s)
        np.testing.assert_array_equal(q2 * s2[:, None, None, None], out)
        err_rtn = ((p @ (q * s[:, None, None, None] - w).reshape(8, -1).T) ** 2).mean()
        err_gptq = ((p @ (out - w).reshape(8, -1).T) ** 2).mean()
        assert err_gptq < 0.6 * err_rtn


def test_none_returns_the_weight_and_bias_untouched():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    h = np.ones((1, 36, 36), np.float32)
    out_w, out_b = correct_layer(w, b, 127, "none", 1, np.ones(4), h)
    assert out_w is w and out_b is b


def test_collector_measures_per_channel_means_of_conv_and_dense_inputs():
    x = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)  # NCHW
    d = np.array([[1.0, -2.0], [3.0, 4.0]], np.float32)
    col = RangeCollector(["conv", "dense"], "minmax")
    col.update([x[:1], d[:1]])
    col.update([x[1:], d[1:]])
    means = col.channel_means()
    np.testing.assert_allclose(means["conv"], x.transpose(1, 0, 2, 3).reshape(3, -1).mean(1))
    np.testing.assert_allclose(means["dense"], [2.0, 1.0])


def test_calibration_json_keeps_the_statistics_and_old_files_load_uncorrected(tmp_path):
    cal = Calibration({"a": (0.0, 1.0)}, method="minmax", channel_means={"a": [0.5, 0.25]},
                      weight_correction="bias+gptq", hessians={"a": np.eye(2)[None]})
    cal.save(tmp_path / "c.json")
    back = Calibration.load(tmp_path / "c.json")
    assert back.weight_correction == "bias+gptq"
    np.testing.assert_array_equal(back.channel_mean("a"), [0.5, 0.25])
    np.testing.assert_array_equal(back.hessian("a"), np.eye(2)[None])  # c.hessians.npz
    (tmp_path / "c.hessians.npz").unlink()
    with pytest.raises(ValueError, match="c.hessians.npz, which is missing"):
        Calibration.load(tmp_path / "c.json")
    old = cal.to_dict()
    for key in ("channel_means", "weight_correction"):
        del old[key]
    assert Calibration.from_dict(old).weight_correction == "none"


def test_bad_weight_correction_names_the_choices():
    valid = ", ".join(WEIGHT_CORRECTIONS)
    with pytest.raises(ValueError, match=re.escape(f"weight_correction 'bias+'; valid: {valid}")):
        BuildConfig(weight_correction="bias+")
    with pytest.raises(ValueError, match="valid: none, bias, gptq, bias\\+gptq"):
        Calibration({}, weight_correction="clip")
    with pytest.raises(ValueError, match="finite 1-D"):
        Calibration({}, channel_means={"a": [[1.0]]})


def _one_conv(bias: torch.Tensor | None = None) -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(4, 8, 1, bias=bias is not None), nn.ReLU()).eval()
    if bias is not None:
        m[0].bias.data = bias
    return m


def test_the_build_hands_the_kernel_exactly_the_corrected_bias():
    """int8 build with bias correction == uncorrected build of the same conv whose bias is
    correct_layer's, bit for bit: the pass changes the bias values and nothing else."""
    x = np.abs(np.random.default_rng(1).standard_normal((8, 4, 6, 6))).astype(np.float32) + 0.5
    model = _one_conv()
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(x[:2]))
    res = aiq_tvm.build(mod, params=params, plan="int8", calib_data=x, batch_size=8,
                        weight_correction="bias")
    cal = res.calibration
    [name] = cal.channel_means
    np.testing.assert_allclose(cal.channel_means[name], x.mean(axis=(0, 2, 3)), rtol=1e-6)
    w = model[0].weight.detach().numpy()
    qmax = capabilities(res.target).int8_weight_qmax
    _, b = correct_layer(w, None, qmax, "bias", 1, cal.channel_means[name])
    assert np.abs(b).max() > 0  # a bias was created for the bias-free conv
    fixed = _one_conv(torch.from_numpy(b))
    mod2, params2 = aiq_tvm.from_torch(fixed, torch.from_numpy(x[:2]))
    plain = aiq_tvm.build(mod2, params=params2, plan="int8", batch_size=8, calibration=cal,
                          weight_correction="none")
    np.testing.assert_array_equal(res.run(x, 8), plain.run(x, 8))


def test_the_build_hands_the_kernel_exactly_the_gptq_weight():
    """int8 build with GPTQ == uncorrected build of the conv whose weight is gptq_round's with
    the calibration's input second moments, bit for bit."""
    x = np.abs(np.random.default_rng(2).standard_normal((8, 4, 6, 6))).astype(np.float32)
    model = _one_conv(torch.zeros(8))
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(x[:2]))
    res = aiq_tvm.build(mod, params=params, plan="int8", calib_data=x, batch_size=8,
                        weight_correction="gptq")
    [(name, h)] = res.calibration.hessians.items()
    p = x.transpose(0, 2, 3, 1).reshape(-1, 4).astype(np.float64)  # 1 x 1 conv: pixels
    np.testing.assert_allclose(h[0], p.T @ p / len(p), rtol=1e-5)
    qmax = capabilities(res.target).int8_weight_qmax
    new_w = gptq_round(model[0].weight.detach().numpy(), h, qmax)
    fixed = _one_conv(torch.zeros(8))
    fixed[0].weight.data = torch.from_numpy(new_w)
    mod2, params2 = aiq_tvm.from_torch(fixed, torch.from_numpy(x[:2]))
    plain = aiq_tvm.build(mod2, params=params2, plan="int8", batch_size=8,
                          calibration=res.calibration, weight_correction="none")
    np.testing.assert_array_equal(res.run(x, 8), plain.run(x, 8))


def _depthwise(weight: torch.Tensor | None = None) -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU()).eval()
    if weight is not None:
        m[0].weight.data = weight
    return m


@requires_host(HASWELL)
def test_depthwise_gptq_rounds_on_the_kernels_full_int8_grid_on_vpmaddubsw_targets():
    """haswell narrows int8 codes to |q| <= 63 except in depthwise convs (int32 kernels, 127):
    GPTQ must round a depthwise weight for the codes its kernel uses, bit for bit."""
    x = np.abs(np.random.default_rng(3).standard_normal((8, 8, 6, 6))).astype(np.float32)
    model = _depthwise()
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(x[:2]))
    res = aiq_tvm.build(mod, HASWELL, params=params, plan="int8", calib_data=x, batch_size=8,
                        weight_correction="gptq")
    cal = res.calibration
    [name] = cal.hessians
    w, b = model[0].weight.detach().numpy(), model[0].bias.detach().numpy()
    outputs = {}
    for qmax in (127, 63):
        new_w, _ = correct_layer(w, b, qmax, "gptq", 8, cal.channel_mean(name),
                                 cal.hessian(name))  # fmt: skip
        fixed = _depthwise(torch.from_numpy(new_w))
        mod2, params2 = aiq_tvm.from_torch(fixed, torch.from_numpy(x[:2]))
        plain = aiq_tvm.build(mod2, HASWELL, params=params2, plan="int8", batch_size=8,
                              calibration=cal, weight_correction="none")
        outputs[qmax] = plain.run(x, 8)
    y = res.run(x, 8)
    np.testing.assert_array_equal(y, outputs[127])
    assert not np.array_equal(y, outputs[63])  # the 7-bit rounding is a different weight


def test_collector_skips_layers_whose_second_moments_exceed_the_limit():
    # 4 input channels x 3 x 3: K = 36, 36**2 * 8 = 10368 bytes of float64.
    geo = {"l": ("conv2d", (3, 3), (1, 1), (1, 1, 1, 1), 1)}
    x = np.ones((1, 4, 5, 5), np.float32)
    small = HessianCollector(geo, max_bytes=36 * 36 * 8 - 1)
    small.update("l", x)
    assert small.too_large == {"l": 36} and small.hessians() == {}
    fits = HessianCollector(geo, max_bytes=36 * 36 * 8)
    fits.update("l", x)
    assert fits.too_large == {} and fits.hessians()["l"].shape == (1, 36, 36)


def test_a_layer_over_the_gptq_memory_limit_rounds_to_nearest_and_the_report_says_so(
        monkeypatch):
    """With the limit below the 1 x 1 conv's 4 x 4 moments, the GPTQ build equals the
    uncorrected one bit for bit, and its report names the layer."""
    monkeypatch.setattr("aiq_tvm.phases.MAX_HESSIAN_BYTES", 4 * 4 * 8 - 1)
    x = np.abs(np.random.default_rng(2).standard_normal((8, 4, 6, 6))).astype(np.float32)
    mod, params = aiq_tvm.from_torch(_one_conv(torch.zeros(8)), torch.from_numpy(x[:2]))
    res = aiq_tvm.build(mod, params=params, plan="int8", calib_data=x, batch_size=8,
                        weight_correction="gptq")
    assert res.calibration.hessians == {}
    [name] = res.calibration.ranges
    [note] = [n for n in res.report.notes if n.startswith("GPTQ skipped")]
    assert f"{name} (K=4)" in note
    assert "GPTQ rounding on 0 of 1" in res.report.weight_correction
    plain = aiq_tvm.build(mod, params=params, plan="int8", batch_size=8,
                          calibration=res.calibration, weight_correction="none")
    np.testing.assert_array_equal(res.run(x, 8), plain.run(x, 8))


def test_conv_patches_equal_an_explicit_loop_with_stride_padding_and_groups():
    x = np.random.default_rng(3).standard_normal((2, 4, 7, 6)).astype(np.float32)
    kernel, stride, padding, groups = (3, 2), (2, 1), (1, 0, 2, 1), 2
    xp = np.pad(x, ((0, 0), (0, 0), (1, 2), (0, 1)))
    oh, ow = (7 + 3 - 3) // 2 + 1, (6 + 1 - 2) // 1 + 1
    want = np.stack([xp[n, :, r * 2:r * 2 + 3, c:c + 2]
                     for n in range(2) for r in range(oh) for c in range(ow)])  # [M, C, 3, 2]
    want = want.reshape(len(want), groups, -1).transpose(1, 0, 2)
    positions = np.array([0, 5, oh * ow, 2 * oh * ow - 1])
    got = conv_patches(x, kernel, stride, padding, groups, positions)
    np.testing.assert_array_equal(got, want[:, positions])


def test_conv_patches_of_an_nchw_view_of_channels_last_memory_are_the_same():
    # Calibration runs hand the collector NCHW views of the VM's NHWC activations.
    x = np.random.default_rng(4).standard_normal((3, 6, 5, 7)).astype(np.float32)
    view = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    positions = np.arange(3 * 5 * 7)
    for groups in (1, 2, 6):
        np.testing.assert_array_equal(
            conv_patches(view, (3, 3), (1, 1), (1, 1, 1, 1), groups, positions),
            conv_patches(x, (3, 3), (1, 1), (1, 1, 1, 1), groups, positions))


@pytest.mark.parametrize("shape, geometry", [
    ((3, 40, 6, 6), ("conv2d", (3, 3), (1, 1), (1, 1, 1, 1), 1)),  # K = 360: ssyrk
    ((3, 16, 6, 6), ("conv2d", (3, 3), (2, 2), (1, 1, 1, 1), 4)),  # K = 36 per group: matmul
    ((5, 200), ("dense", None, None, None, 1)),  # ssyrk
])
def test_collected_second_moments_equal_float64_products_over_batches(shape, geometry):
    rng = np.random.default_rng(5)
    batches = [rng.standard_normal(shape).astype(np.float32) for _ in range(3)]
    col = HessianCollector({"l": geometry}, per_update=10**6)  # every position
    for x in batches:
        col.update("l", x)
    h = col.hessians()["l"]
    want, count = 0.0, 0
    for x in batches:
        if geometry[0] == "dense":
            p = x[None].astype(np.float64)
        else:
            _, kernel, stride, padding, groups = geometry
            oh = (shape[2] + 2 - 3) // stride[0] + 1
            p = conv_patches(x, kernel, stride, padding, groups,
                             np.arange(shape[0] * oh * oh)).astype(np.float64)
        want, count = want + p.transpose(0, 2, 1) @ p, count + p.shape[1]
    assert h.dtype == np.float32
    np.testing.assert_array_equal(h, h.transpose(0, 2, 1))
    np.testing.assert_allclose(h, want / count, rtol=2e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="after hessians"):
        col.update("l", batches[0])


def test_error_feedback_is_the_reversed_cholesky_factor_over_its_diagonal():
    from aiq_tvm.gptq import _error_feedback

    rng = np.random.default_rng(6)
    x = rng.standard_normal((400, 150))
    h = (x.T @ x / 400).astype(np.float32)
    h[7] = h[:, 7] = 0  # a dead input: its diagonal becomes 1 before damping
    fb, dead = _error_feedback(h, 0.01)
    ref = np.array(h, np.float64)
    ref[7, 7] = 1.0
    ref += 0.01 * np.mean(np.diag(ref)) * np.eye(150)
    r = np.linalg.cholesky(ref[::-1, ::-1])[::-1, ::-1]
    upper = np.triu_indices(150, 1)  # the entries GPTQ reads
    np.testing.assert_allclose(fb[upper], (r / np.diag(r)[None, :])[upper], rtol=1e-12,
                               atol=1e-14)
    assert dead.nonzero()[0].tolist() == [7]
    h[3, 3] = -1.0
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        _error_feedback(h, 0.0)


def test_saved_second_moments_keep_one_triangle_and_load_back_exactly(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16, 9, 9)).astype(np.float32)
    col = HessianCollector({"l": ("conv2d", (3, 3), (1, 1), (1, 1, 1, 1), 2)})
    col.update("l", x)
    h = col.hessians()["l"]  # [2, 72, 72]
    np.testing.assert_array_equal(h, h.transpose(0, 2, 1))  # exactly symmetric
    asym = {"a": rng.standard_normal((1, 3, 3)).astype(np.float32)}
    sizes = {}
    for name, hessians in (("sym", {"l": h}), ("asym", asym)):
        cal = Calibration({"l": (0.0, 1.0)}, method="minmax", weight_correction="gptq",
                          hessians=hessians)
        cal.save(tmp_path / f"{name}.json")
        back = Calibration.load(tmp_path / f"{name}.json")
        for layer, m in hessians.items():
            np.testing.assert_array_equal(back.hessian(layer), m)
            assert back.hessian(layer).dtype == m.dtype
        sizes[name] = json.loads((tmp_path / f"{name}.json").read_text())["hessians"]
    assert sizes["sym"]["packing"] == "upper" and sizes["asym"]["packing"] == "full"
    packed = (tmp_path / "sym.hessians.npz").stat().st_size
    assert packed < 0.52 * h.nbytes  # 72 * 73 / 2 of 72 * 72 values, plus the npz header
    data = json.loads((tmp_path / "sym.json").read_text())
    data["hessians"]["packing"] = "lower"
    (tmp_path / "sym.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="unknown hessian packing 'lower' \\(valid: full, upper"):
        Calibration.load(tmp_path / "sym.json")
