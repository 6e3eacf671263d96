"""The search journal: an interrupted search resumed from its journal evaluates only what it
had not finished and returns the same plan as an uninterrupted search (pure Python; the CLI
round trip is in test_cli_models.py)."""

import json

import numpy as np
import pytest

from aiq_tvm.journal import SearchJournal
from aiq_tvm.search import run_search

LAYERS = [f"l{i}" for i in range(6)]
CHOICES = {n: ["fp32", "int8", "int4"] for n in LAYERS}
RUN = {"model": "toy", "data": "val 100", "target": "llvm"}
_rng = np.random.default_rng(0)
_DROP = {(n, p): float(_rng.uniform(0, d)) for n in LAYERS
         for p, d in (("fp32", 0.0), ("int8", 0.01), ("int4", 0.04))}
_WEIGHT = {n: float(w) for n, w in zip(LAYERS, _rng.uniform(1, 10, len(LAYERS)), strict=True)}


def ai(assignment):
    bytes_ = {"fp32": 4, "int8": 1, "int4": 0.5}
    return 100.0 / sum(_WEIGHT[n] * bytes_[assignment[n]] for n in LAYERS)


class Oracle:
    """Deterministic accuracies; counts calls and can be interrupted at the k-th call."""

    def __init__(self, interrupt_at=None):
        self.calls, self.interrupt_at = 0, interrupt_at

    def __call__(self, assignment):
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        return 0.9 - sum(_DROP[(n, assignment[n])] for n in LAYERS)


def _search(method, accuracy_fn):
    return run_search(method, LAYERS, CHOICES, ai, accuracy_fn, lam=0.7)


@pytest.mark.parametrize("method", ["greedy", "coordinate_descent"])
def test_interrupted_and_resumed_search_gives_the_uninterrupted_plan(tmp_path, method):
    whole = _search(method, Oracle())
    total = whole.evaluations
    path = tmp_path / "search_journal.jsonl"
    first = Oracle(interrupt_at=total // 2)
    with pytest.raises(KeyboardInterrupt):
        _search(method, SearchJournal(path, RUN).accuracy_fn(first))
    journaled = total // 2 - 1  # the interrupted evaluation never finished
    assert len(path.read_text().splitlines()) == 1 + journaled
    second = Oracle()
    journal = SearchJournal(path, RUN, resume=True)
    resumed = _search(method, journal.accuracy_fn(second))
    assert journal.resumed == journaled and second.calls == total - journaled
    assert resumed.assignment == whole.assignment
    assert [e.assignment for e in resumed.history] == [e.assignment for e in whole.history]
    # A finished search resumes without evaluating anything.
    third = Oracle()
    again = _search(method, SearchJournal(path, RUN, resume=True).accuracy_fn(third))
    assert third.calls == 0 and again.assignment == whole.assignment


def test_a_line_cut_short_by_the_interrupt_is_redone(tmp_path):
    path = tmp_path / "j.jsonl"
    fn = SearchJournal(path, RUN).accuracy_fn(Oracle())
    fn({n: "fp32" for n in LAYERS})
    fn({**{n: "fp32" for n in LAYERS}, "l0": "int8"})
    path.write_text(path.read_text() + '{"plan": {"l0": "in')
    oracle = Oracle()
    journal = SearchJournal(path, RUN, resume=True)
    fn = journal.accuracy_fn(oracle)
    fn({**{n: "fp32" for n in LAYERS}, "l1": "int4"})
    assert journal.resumed == 2 and oracle.calls == 1
    assert [json.loads(line) for line in path.read_text().splitlines()][-1]["plan"]["l1"] == \
        "int4"


def test_journal_errors_name_the_problem(tmp_path):
    path = tmp_path / "j.jsonl"
    with pytest.raises(FileNotFoundError, match="--resume: there is no search journal"):
        SearchJournal(path, RUN, resume=True)
    SearchJournal(path, RUN)  # nothing evaluated: no file yet
    assert not path.exists()
    SearchJournal(path, RUN).accuracy_fn(Oracle())({n: "fp32" for n in LAYERS})
    with pytest.raises(ValueError, match="holds 1 evaluations of an earlier search: pass "
                                         "--resume"):
        SearchJournal(path, RUN)
    with pytest.raises(ValueError, match=r"written for another run \(data: journal 'val 100', "
                                         r"now 'val 200'\)"):
        SearchJournal(path, {**RUN, "data": "val 200"}, resume=True)
    path.write_text("{}\n")
    with pytest.raises(ValueError, match="is not an aiq_tvm search journal"):
        SearchJournal(path, RUN, resume=True)


def test_measured_layer_times_are_journaled(tmp_path):
    path = tmp_path / "j.jsonl"
    calls = []

    def time_layers(precisions):
        calls.append(precisions)
        return {"l0": {"fp32": 2.0, "int8": 1.0}}, 3.5

    assert SearchJournal(path, RUN).layer_times_fn(time_layers)(["int8"]) == \
        ({"l0": {"fp32": 2.0, "int8": 1.0}}, 3.5)
    resumed = SearchJournal(path, RUN, resume=True).layer_times_fn(time_layers)
    assert resumed(["int8"]) == ({"l0": {"fp32": 2.0, "int8": 1.0}}, 3.5) and len(calls) == 1
