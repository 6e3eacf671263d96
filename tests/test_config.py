"""BuildConfig: every build setting checked once, with messages naming the valid choices."""

import numpy as np
import pytest

from aiq_tvm import OBJECTIVES, BuildConfig, Plan
from aiq_tvm.cost import CostModel, LayerCost
from aiq_tvm.objectives import MeritInputs, get_objective


@pytest.mark.parametrize("kwargs, msg", [
    (dict(lam=1.5), r"lam must be a number in \[0, 1\]"),
    (dict(lam=True), r"lam must be a number in \[0, 1\]"),
    (dict(search="random"), "unknown search 'random'; valid: greedy, coordinate_descent, budget"),
    (dict(objective="speed"), "unknown objective 'speed'; valid: ai, roofline, measured"),
    (dict(budget_pp=-1), "budget_pp must be a number >= 0 pp"),
    (dict(precisions=["int8", "fp16"]), "unknown precision 'fp16'"),
    (dict(precisions=[]), "precisions is empty"),
    (dict(precisions="int8"), r"precisions must be a list of precision names, e\.g\. \['int8'\]"),
    (dict(calibration="kl"),
     "unknown calibration 'kl'; valid: minmax, percentile, mse or an aiq"),
    (dict(percentile=20.0), r"percentile must be in \(50, 100\]"),
    (dict(percentile=150), r"percentile must be in \(50, 100\], got 150"),
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(eval_batch_size=2.5), "eval_batch_size must be a positive integer"),
    (dict(max_sweeps=0), "max_sweeps must be a positive integer"),
    (dict(tune=True), "tune=True needs database"),
    (dict(tune_trials=0), "tune_trials must be a positive integer"),
    (dict(plan="int3"), "unknown precision 'int3'"),
    (dict(plan=3), "plan must be an aiq_tvm.Plan, a precision name or a dict"),
    (dict(plan=["int8"]), "plan must be an aiq_tvm.Plan, a precision name or a dict, got list"),
])
def test_bad_settings_name_the_valid_choices(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        BuildConfig(**kwargs)


def test_normalized_settings():
    cfg = BuildConfig(plan={"conv1": "int8"}, lam=1, precisions=["int8", "w4"])
    assert cfg.plan == Plan({"conv1": "int8"}) and not cfg.searches
    assert cfg.lam == 1.0 and isinstance(cfg.lam, float)
    assert cfg.precisions == ("int8", "w4")
    # fp32 is always in the switchable module (the baseline) but a choice only when listed.
    assert cfg.choices(["a"]) == {"a": ["fp32", "int8", "w4"]} and not cfg.fp32_allowed
    assert BuildConfig(precisions=["int8", "fp32"]).fp32_allowed and BuildConfig().fp32_allowed
    assert BuildConfig().searches and BuildConfig().precisions[0] == "fp32"
    numpy_numbers = BuildConfig(lam=np.float32(0.5), percentile=np.float64(99.9))
    assert numpy_numbers.lam == 0.5 and numpy_numbers.percentile == 99.9
    with pytest.raises(AttributeError):
        cfg.lam = 0.5  # frozen: phases share one checked config


def _cost():
    return CostModel([
        LayerCost("a", "conv2d", flops=1000, weight_elems=100, in_elems=100, out_elems=100,
                   out_channels=10),
        LayerCost("b", "dense", flops=10, weight_elems=1000, in_elems=10, out_elems=10,
                   out_channels=10),
    ])


class Peaks:
    peak_gflops_fp32, peak_gops_int8, bandwidth_gbs = 100.0, 400.0, 10.0


def test_objective_registry_owns_the_merit():
    assert list(OBJECTIVES) == ["ai", "roofline", "measured"]
    cost = _cost()
    inputs = MeritInputs(cost=cost, preset=Peaks(), candidates=("fp32", "int8"))
    ai = get_objective("ai").merit(inputs)
    assert ai({"a": "int8"}) == cost.ai({"a": "int8"})
    roof = get_objective("roofline").merit(inputs)
    assert roof({"a": "int8"}) == pytest.approx(
        1 / cost.predicted_time(cost.full_assignment({"a": "int8"}), Peaks()))
    with pytest.raises(ValueError, match="needs a kernel timer"):
        get_objective("measured").merit(inputs)
    seen = []

    def timer(precisions):
        seen.append(tuple(precisions))
        return {"a": {"fp32": 3.0, "int8": 1.0}, "b": {"fp32": 2.0, "int8": 2.0}}, 5.0

    measured = get_objective("measured").merit(MeritInputs(cost, Peaks(), ("fp32", "int8"),
                                                           timer))
    assert seen == [("fp32", "int8")]
    assert measured({"a": "int8"}) == pytest.approx(1 / (5.0 + 1.0 + 2.0))
    with pytest.raises(ValueError, match="unknown objective 'x'; valid: ai, roofline"):
        get_objective("x")
