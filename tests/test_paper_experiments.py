"""scripts/paper_experiments.py's bookkeeping on synthetic oracles (no model, no TVM build):
the accuracy cache measures a plan once and resumes from its file, and the exhaustive part
ranks the searches against a brute-force optimum of the same loss."""

import importlib.util
import itertools
from pathlib import Path

import pytest

from aiq_tvm.search import aiq_loss

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "paper_experiments.py"


@pytest.fixture(scope="module")
def pe():
    spec = importlib.util.spec_from_file_location("paper_experiments", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _toy(layers):
    """AI grows with fewer bits; accuracy drops 0.4 pp per int4 layer, more for layer 0."""
    bits = {"fp32": 32, "int8": 8, "int4": 4}

    def ai(a):
        return sum(32 / bits[a.get(n, "fp32")] for n in layers)

    def acc(a):
        drop = sum(0.004 * (3 if i == 0 else 1) for i, n in enumerate(layers)
                   if a.get(n) == "int4")
        return 0.9 - drop

    return ai, acc


def test_cache_measures_each_plan_once_and_resumes(pe, tmp_path):
    calls = []
    layers = ["a", "b"]

    def measure(assignment):
        calls.append(dict(assignment))
        return 0.5

    path = tmp_path / "c.jsonl"
    cache = pe.PlanCache(path, layers, measure)
    assert cache({"a": "int8"}) == 0.5 and cache({"a": "int8", "b": "fp32"}) == 0.5
    assert calls == [{"a": "int8", "b": "fp32"}]  # missing layers are fp32: the same plan
    assert cache.measured_s > 0 and cache.replayed_s == pytest.approx(2 * cache.measured_s)
    again = pe.PlanCache(path, layers, lambda a: pytest.fail("measured again"))
    assert again({"a": "int8"}) == 0.5 and again.measured_s == 0
    assert again.replayed_s == pytest.approx(cache.entries[("int8", "fp32")][1])


def test_exhaustive_ranks_searches_against_brute_force(pe, tmp_path):
    layers = [f"l{i}" for i in range(6)]
    groups = pe.groups_of(layers, 3)
    assert groups == [["l0", "l1"], ["l2", "l3"], ["l4", "l5"]]
    ai, acc = _toy(layers)
    names = ["g0", "g1", "g2"]

    def expand(g):
        return {n: g[k] for k, members in zip(names, groups, strict=True) for n in members}

    cache = pe.PlanCache(tmp_path / "c.jsonl", layers, acc)
    assert pe._measure_all(cache, expand, names, minutes=5) == 0
    assert len(cache.entries) == 27

    def ai_g(g):
        return ai(expand(g))

    fp32 = dict.fromkeys(names, "fp32")
    entry = pe._rank_methods(cache, expand, names, ai_g(fp32), acc(expand(fp32)), ai_g, 0.5)
    brute = min(aiq_loss(ai_g(g) / ai_g(fp32), 100 * (0.9 - acc(expand(g))), 0.5)
                for g in (dict(zip(names, c, strict=True)) for c in itertools.product(pe.PRECISIONS,
                                                                          repeat=3)))
    assert entry["optimum"]["loss"] == pytest.approx(brute)
    # at lambda 0.5 one int4 layer pays (+0.67 AI vs 0.4 pp), but g0 (1.6 pp) does not
    assert entry["optimum"]["plan"] == ("int8", "int4", "int4")
    for m in ("greedy", "coordinate_descent"):
        assert entry[m]["rank"] >= 1 and entry[m]["gap_to_optimum"] >= -1e-12
        assert entry[m]["rank"] == 1 or entry[m]["gap_to_optimum"] > 0


def test_markdown_names_the_searches_a_subset_left_out(pe):
    row = {"method": "greedy", "lambda": 0.9}
    lines = pe._md_missing_searches([row])
    assert lines[-1].startswith("Run: 1 of the 11 searches of the full grid; not run: greedy 0.5,")
    assert "coordinate_descent 0.9" in lines[-1] and lines[-1].endswith("budget.")
    assert "greedy 0.9," not in lines[-1]
    full = [{"method": m, "lambda": lam} for lam in pe.LAMBDAS
            for m in ("greedy", "coordinate_descent")] + [{"method": "budget", "lambda": None}]
    assert pe._md_missing_searches(full) == []


def test_markdown_names_the_host_each_part_ran_on(pe):
    host = {"cpu": "AMD EPYC (family 25, model 17)", "threads": "2",
            "target": {"kind": "llvm", "mcpu": "znver4", "num-cores": 2}}
    assert pe._md_host("Latency", {"host": host}) == (
        "Latency: AMD EPYC (family 25, model 17), target mcpu znver4, TVM_NUM_THREADS=2.")
    assert "not recorded" in pe._md_host("Search", {"rows": []})


def test_cache_files_are_per_calibration_method(pe, tmp_path):
    """Accuracies under one calibration method are never replayed for another (percentile
    keeps the names its published caches have)."""
    from types import SimpleNamespace

    ctx = SimpleNamespace(cost=SimpleNamespace(searchable=["a"]))
    names = {m: pe._cache(SimpleNamespace(model="m", calib=8, val=4, calibration=m,
                                          cache=tmp_path), ctx, "val", None).path.name
             for m in ("percentile", "mse")}
    assert names == {"percentile": "m_val_calib8_val4.jsonl", "mse": "m_val_calib8_mse_val4.jsonl"}
