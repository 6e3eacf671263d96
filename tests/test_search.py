"""AIQ search on a synthetic 3-layer problem whose answers are worked out by hand.

Layers (out_channels 1, so per-layer metadata is 4 B fp32, 8 B weight-only, 20 B int):

=====  ======  ====  ====  =====  ==============================================
layer  weight  in    out   FLOPs  bytes fp32 / int8 / int4 / w8
=====  ======  ====  ====  =====  ==============================================
big    1000    100   100   20000  4804 / 1520 / 1020 / 1808
act    10      1000  100   2000   4444 / 1430 / 1425 / 4418
small  10      10    10    200    124 / 80 / 75 / 98
=====  ======  ====  ====  =====  ==============================================

FP32 AI = 22200 / 9372.  Accuracy drops (pp, additive): big int8 0.1, int4 3, w8 0.05;
act int8 0.2, int4 0.3, w8 0; small int8 2, int4 5, w8 1.
"""

import pytest

from aiq_tvm.cost import CostModel, LayerCost
from aiq_tvm.search import SEARCH_METHODS, Objective, aiq_loss, run_search

CHOICES = ("fp32", "int8", "int4", "w8")
DROPS = {
    "big": {"int8": 0.1, "int4": 3.0, "w8": 0.05},
    "act": {"int8": 0.2, "int4": 0.3, "w8": 0.0},
    "small": {"int8": 2.0, "int4": 5.0, "w8": 1.0},
}


def _cost() -> CostModel:
    return CostModel([
        LayerCost("big", "conv2d", 20000, 1000, 100, 100, 1),
        LayerCost("act", "conv2d", 2000, 10, 1000, 100, 1),
        LayerCost("small", "conv2d", 200, 10, 10, 10, 1),
    ], requant_fusion=False)


class Oracle:
    def __init__(self):
        self.calls = 0

    def __call__(self, assignment):
        self.calls += 1
        drop = sum(DROPS[n].get(p, 0.0) for n, p in assignment.items())
        return 0.90 - drop / 100.0


def _run(method, lam=0.9, **kw):
    cost = _cost()
    oracle = Oracle()
    res = run_search(method, cost.names, {n: CHOICES for n in cost.names}, cost.ai, oracle,
                     lam=lam, **kw)
    return res, oracle


def test_bytes_match_the_table():
    cost = _cost()
    expect = {"big": (4804, 1520, 1020, 1808), "act": (4444, 1430, 1425, 4418),
              "small": (124, 80, 75, 98)}
    for name, vals in expect.items():
        got = tuple(cost[name].nbytes(p) for p in CHOICES)
        assert got == vals
    assert cost.fp32_ai() == pytest.approx(22200 / 9372)


def test_loss_definition():
    assert aiq_loss(1.0, 0.0, 0.9) == pytest.approx(-0.9)
    assert aiq_loss(2.0, 1.0, 0.5) == pytest.approx(-1.0 + 0.5)


def test_greedy_picks_int8_for_big_and_act_keeps_small_fp32():
    # big (int8 L=-1.3755 beats int4 -1.2094, w8 -1.3179); then act int8 (-2.7139) beats int4
    # (-2.7083); small stays fp32 (w8 -2.6373 > -2.7139).
    res, oracle = _run("greedy")
    assert res.assignment == {"big": "int8", "act": "int8", "small": "fp32"}
    assert res.evaluations == 10  # fp32 baseline + 3 alternatives for each of 3 layers
    assert oracle.calls == 10  # memoized: no plan measured twice
    assert res.best.acc_drop_pp == pytest.approx(0.3)
    assert res.best.ai == pytest.approx(22200 / 3074)


def test_lambda_extremes():
    res, _ = _run("greedy", lam=1.0)
    assert res.assignment == {"big": "int4", "act": "int4", "small": "int4"}
    res, _ = _run("greedy", lam=0.0)
    # act w8 costs 0 pp but does not lower the loss strictly: nothing changes.
    assert res.assignment == {"big": "fp32", "act": "fp32", "small": "fp32"}


def test_coordinate_descent_revisits_earlier_choices():
    # Sweep 1 ends where greedy does (big int8, act int8).  Sweep 2: with act now int8, big's
    # share of the bytes grows and int4 pays: bytes 2574, AI x3.641, drop 3.2 pp ->
    # L = -2.9569 < -2.7139.  act stays int8 (-2.9569 vs int4 -2.9533), small stays fp32;
    # sweep 3 changes nothing and the search stops.
    res, oracle = _run("coordinate_descent", max_sweeps=5)
    assert res.assignment == {"big": "int4", "act": "int8", "small": "fp32"}
    assert res.best.loss == pytest.approx(-0.9 * (22200 / 2574) / (22200 / 9372) + 0.32)
    assert oracle.calls == res.evaluations  # no plan measured twice
    one, _ = _run("coordinate_descent", max_sweeps=1)
    assert one.assignment == {"big": "int8", "act": "int8", "small": "fp32"}


def test_budget_mode_maximizes_ai_within_budget():
    # big: int4 (3 pp) over budget, int8 (0.1) fits; act: int4 (0.4 total) fits;
    # small: every low precision exceeds 0.5 pp.
    res, _ = _run("budget", budget_pp=0.5)
    assert res.assignment == {"big": "int8", "act": "int4", "small": "fp32"}
    assert res.best.acc_drop_pp <= 0.5
    res, _ = _run("budget", budget_pp=10.0)
    assert res.assignment == {"big": "int4", "act": "int4", "small": "int4"}
    res, _ = _run("budget", budget_pp=0.0)
    assert res.assignment == {"big": "fp32", "act": "w8", "small": "fp32"}


def test_gain_order_puts_weight_heavy_layer_first():
    cost = _cost()
    obj = Objective(cost.names, {n: CHOICES for n in cost.names}, cost.ai, Oracle(), 0.9)
    assert obj.gain_order() == ["big", "act", "small"]


def test_search_is_deterministic():
    a, _ = _run("coordinate_descent")
    b, _ = _run("coordinate_descent")
    assert a.assignment == b.assignment
    assert [e.assignment for e in a.history] == [e.assignment for e in b.history]


@pytest.mark.parametrize("lam", [-0.1, 1.5, "0.5", None])
def test_bad_lambda(lam):
    with pytest.raises(ValueError, match="lambda"):
        _run("greedy", lam=lam)


def test_unknown_method_lists_valid_ones():
    with pytest.raises(ValueError, match="greedy, coordinate_descent, budget"):
        _run("annealing")
    assert set(SEARCH_METHODS) == {"greedy", "coordinate_descent", "budget"}


def test_oracle_out_of_range_is_an_error():
    cost = _cost()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        run_search("greedy", cost.names, {n: CHOICES for n in cost.names}, cost.ai,
                   lambda a: 0.9 if all(p == "fp32" for p in a.values()) else 90.0)


def test_empty_layers_and_negative_budget():
    cost = _cost()
    with pytest.raises(ValueError, match="no quantizable layers"):
        run_search("greedy", [], {}, cost.ai, Oracle())
    with pytest.raises(ValueError, match="budget"):
        _run("budget", budget_pp=-1.0)


def test_without_fp32_every_layer_stays_quantized_starting_from_int8():
    # Start plan: int8 everywhere (the lower-AI choice of each layer), bytes 3030, drop 2.3 pp,
    # L = -0.9 * 9372/3030 + 0.23 = -2.5538.  big int4: bytes 2530, drop 5.2 -> L = -2.8139,
    # taken; act int4: bytes 2525, drop 5.3 -> -2.8105, not lower; small int4: drop 8.2 ->
    # -2.5205.  FP32 is measured once, as the baseline the loss is normalized by.
    cost = _cost()
    oracle = Oracle()
    res = run_search("greedy", cost.names, {n: ("int8", "int4") for n in cost.names}, cost.ai,
                     oracle, lam=0.9, allow_fp32=False)
    assert res.assignment == {"big": "int4", "act": "int8", "small": "int8"}
    assert res.baseline.plan == {n: "fp32" for n in cost.names}
    assert res.evaluations == 5  # fp32 baseline, int8 start, one alternative per layer
    assert res.best.loss == pytest.approx(-0.9 * 9372 / 2530 + 0.52)


@pytest.mark.parametrize("method", list(SEARCH_METHODS))
def test_no_method_returns_fp32_layers_when_fp32_is_not_allowed(method):
    cost = _cost()
    res = run_search(method, cost.names, {n: ("int8", "int4") for n in cost.names}, cost.ai,
                     Oracle(), lam=0.0, allow_fp32=False)
    # lam = 0 only weighs accuracy: the most accurate allowed plan, uniform int8.
    assert res.assignment == {n: "int8" for n in cost.names}


def test_no_allowed_precision_is_an_error():
    cost = _cost()
    with pytest.raises(ValueError, match="no allowed precision"):
        run_search("greedy", cost.names, {n: () for n in cost.names}, cost.ai, Oracle(),
                   allow_fp32=False)
