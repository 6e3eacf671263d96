"""Calibration statistics and their serialization."""

import numpy as np
import pytest

from aiq_tvm.calibrate import Calibration, RangeCollector, calibrate


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
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    seen = []

    def run(batch):
        assert batch.shape == (2, 2)
        seen.append(batch.copy())
        return [batch]

    cal = calibrate(run, ["l"], x, batch_size=2, method="minmax")
    assert len(seen) == 3 and cal.num_samples == 5
    assert cal.ranges["l"] == (0.0, 9.0)  # the zero padding rows never count


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


@pytest.mark.parametrize("kwargs, msg", [
    (dict(method="kl"), "unknown calibration method"),
    (dict(percentile=20.0), "percentile"),
    (dict(ranges={"a": (1.0, 0.0)}), "invalid"),
])
def test_bad_calibration(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        Calibration(**kwargs)


def test_empty_calibration_data():
    with pytest.raises(ValueError, match="empty"):
        calibrate(lambda b: [b], ["l"], np.zeros((0, 2), np.float32), 2)
