"""Calibration statistics and their serialization."""

import numpy as np
import pytest

from aiq_tvm.calibrate import Calibration, RangeCollector, calibrate, mse_range
from aiq_tvm.quant import ActQParams, dequantize_act, quantize_act


def test_minmax_and_percentile_ranges():
    rng = np.random.default_rng(0)
    data = [rng.standard_normal(10_000).astype(np.float32) for _ in range(4)]
    data[2][7] = 50.0  # one outlier
    mm = RangeCollector(["l"], "minmax")
    pc = RangeCollector(["l"], "percentile", percentile=99.9, per_update=10_000)
    for d in data:
        mm.update([d])
        pc.update([d])
    allv = np.concatenate(data)
    assert mm.ranges()["l"] == (float(allv.min()), 50.0)
    lo, hi = pc.ranges()["l"]
    np.testing.assert_allclose([lo, hi], np.percentile(allv, [0.1, 99.9]), rtol=1e-6)
    assert hi < 5.0  # the outlier is cut


def test_calibrate_pads_last_batch_and_uses_real_rows_only():
    x = np.arange(1, 11, dtype=np.float32).reshape(5, 2)
    seen = []

    def run(batch):
        assert batch.shape == (2, 2)
        seen.append(batch.copy())
        return [batch, -batch]

    cal = calibrate(run, ["l", "neg"], x, batch_size=2, method="minmax")
    assert len(seen) == 3 and cal.num_samples == 5
    np.testing.assert_array_equal(seen[-1], [[9, 10], [9, 10]])  # padded with a copy
    assert cal.ranges["l"] == (1.0, 10.0) and cal.ranges["neg"] == (-10.0, -1.0)


def test_token_major_layer_inputs_see_only_real_samples_in_the_last_batch():
    # A Linear on [tokens, batch, C] flattened to rows: the first axis is not the batch, so
    # every row is used; padding with copies keeps zeros (or anything unseen) out of the range.
    x = np.arange(1, 11, dtype=np.float32).reshape(5, 2)

    def run(batch):
        return [np.broadcast_to(batch, (3, 2, 2)).reshape(6, 2)]

    cal = calibrate(run, ["tok"], x, batch_size=2, method="minmax")
    assert cal.ranges["tok"] == (1.0, 10.0)


def test_qparams_and_json(tmp_path):
    cal = Calibration({"a": (0.0, 2.55), "b": (-1.0, 1.0)}, method="minmax", num_samples=8)
    qa = cal.qparams("a")
    assert qa.zp == 0 and qa.scale == pytest.approx(0.01)
    qb = cal.qparams("b")
    assert qb.zp == 128
    path = tmp_path / "cal.json"
    cal.save(path)
    assert Calibration.load(path) == cal
    with pytest.raises(ValueError, match="no calibration range for layer 'c'"):
        cal.qparams("c")


def test_shortcut_ranges_round_trip_and_old_files_have_none(tmp_path):
    cal = Calibration({"a": (0.0, 2.55)}, method="minmax", residual_ranges={"r": (-1.0, 1.0)})
    assert cal.residual_qparams("r").zp == 128
    assert cal.residual_qparams("a") is None  # not measured: the shortcut stays float32
    path = tmp_path / "cal.json"
    cal.save(path)
    assert Calibration.load(path) == cal
    old = cal.to_dict()
    del old["residual_ranges"]
    assert Calibration.from_dict(old).residual_ranges == {}


@pytest.mark.parametrize("kwargs, msg", [
    (dict(method="kl"), "unknown calibration method 'kl'; valid: minmax, percentile, mse"),
    (dict(percentile=20.0), "percentile"),
    (dict(ranges={"a": (1.0, 0.0)}), "invalid"),
    (dict(residual_ranges={"r": (0.0, float("nan"))}), "residual range of 'r' is invalid"),
])
def test_bad_calibration(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        Calibration(**kwargs)


def test_empty_calibration_data():
    with pytest.raises(ValueError, match="empty"):
        calibrate(lambda b: [b], ["l"], np.zeros((0, 2), np.float32), 2)


def _roundtrip_mse(values: np.ndarray, lo: float, hi: float) -> float:
    """numpy reference: mean squared error of the uint8 kernels' quantize-dequantize."""
    qp = ActQParams.from_range(lo, hi)
    return float(np.mean((dequantize_act(quantize_act(values, qp), qp) - values) ** 2))


@pytest.mark.parametrize("relu", [False, True])
def test_mse_range_matches_a_brute_force_numpy_search(relu):
    rng = np.random.default_rng(0)
    v = rng.standard_normal(4000).astype(np.float32)
    v[:3] = [25.0, -9.0, 14.0]  # rare outliers, as residual streams have
    if relu:
        v = np.maximum(v, 0)
    lo, hi = float(v.min()), float(v.max())
    got = mse_range(v, lo, hi)
    # Reference: every (lo * a, hi * b) on a fine grid, errors on the exact values.
    grid = np.arange(1, 201) / 200
    ref = min(_roundtrip_mse(v, lo * a, hi * b) for a in (grid if lo < 0 else [1.0])
              for b in grid)
    assert lo <= got[0] <= 0 <= got[1] <= hi
    assert _roundtrip_mse(v, *got) <= 1.02 * ref
    assert _roundtrip_mse(v, *got) <= _roundtrip_mse(v, lo, hi)


def test_mse_method_narrows_the_range_and_round_trips():
    rng = np.random.default_rng(1)
    data = [rng.standard_normal(20_000).astype(np.float32) for _ in range(3)]
    col = RangeCollector(["l"], "mse", per_update=20_000)
    for d in data:
        col.update([d])
    allv = np.concatenate(data)
    lo, hi = col.ranges()["l"]
    assert (lo, hi) == mse_range(allv, allv.min(), allv.max())  # the sample is every value
    assert allv.min() < lo < 0 < hi < allv.max()  # Gaussian tails are cut
    cal = Calibration(col.ranges(), method="mse")
    assert Calibration.from_dict(cal.to_dict()) == cal
