"""The search journal: every plan a search evaluates, appended to a JSONL file as it goes.

An interrupted search loses nothing it finished: resumed with the same journal, the accuracy
oracle answers every plan already in the journal from it, without running the model, and
evaluates only the rest.  The searches are deterministic given the oracle's answers (and
JSON keeps every float exactly), so a resumed search makes the same decisions and returns
the same plan as an uninterrupted one.

File format (one JSON object per line)::

    {"format": "aiq_tvm.search_journal", "version": 1, "run": {...}}   # first line
    {"plan": {"conv1": "int8", ...}, "accuracy": 0.91}                 # one per evaluation
    {"layer_times": [table, overhead], "precisions": [...]}           # objective="measured"

``run`` holds what the accuracies depend on (model, data, calibration, target...); resuming
a journal written for another run is an error naming what differs.  The search settings
(lambda, method, budget) are not part of it: a sweep reuses evaluations across lambdas.
A last line cut short by an interrupt is ignored.  Pure Python.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

__all__ = ["SearchJournal", "JOURNAL_NAME", "digest"]

JOURNAL_FORMAT = "aiq_tvm.search_journal"
JOURNAL_VERSION = 1
JOURNAL_NAME = "search_journal.jsonl"


def digest(*arrays) -> str:
    """SHA-1 of arrays' dtypes, shapes and bytes: identifies weights and data in ``run``."""
    import hashlib

    import numpy as np

    h = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()


def _key(plan: Mapping[str, str]) -> tuple:
    return tuple(sorted(plan.items()))


class SearchJournal:
    """Append-only record of a search's evaluations (module docstring).

    Parameters
    ----------
    path : str or Path
        The JSONL file.
    run : dict
        JSON-able description of what the accuracies depend on.
    resume : bool
        Continue an existing journal (it must exist and match ``run``); without it an
        existing journal with evaluations is an error, so finished work is never overwritten.
        A new journal's file appears with its first evaluation.
    """

    def __init__(self, path: str | Path, run: Mapping, resume: bool = False):
        self.path = Path(path)
        self.run = json.loads(json.dumps(dict(run), default=str))
        self.accuracies: dict[tuple, float] = {}
        self.layer_times: dict[tuple, list] = {}
        self.resumed = 0  # evaluations read back from the file
        self.check_start(self.path, resume)
        self._started = resume  # a new journal is written from its first record on
        if resume:
            self._read()

    @classmethod
    def check_start(cls, path: str | Path, resume: bool) -> None:
        """Before any work: ``--resume`` needs a journal, and a journal holding evaluations
        is never overwritten without it."""
        path = Path(path)
        if resume and not path.is_file():
            raise FileNotFoundError(f"--resume: there is no search journal {path} to "
                                    f"continue; run without --resume to start one")
        if not resume and path.is_file():
            done = sum("plan" in r for r in cls._records(path)[0][1:])
            if done:
                raise ValueError(f"{path} holds {done} evaluations of an earlier search: "
                                 f"pass --resume to continue it, or remove it (or choose "
                                 f"another --out) to start over")

    # ------------------------------------------------------------------ reading
    @staticmethod
    def _records(path: Path) -> tuple[list[dict], bool]:
        """The records, and whether a last line cut short by an interrupt was dropped."""
        text = path.read_text().splitlines()
        out = []
        for n, line in enumerate(text, 1):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                if n == len(text):
                    return out, True  # that evaluation is simply redone
                raise ValueError(f"{path}, line {n}: not JSON; the journal is corrupt"
                                 ) from None
        return out, False

    def _read(self) -> None:
        lines, cut = self._records(self.path)
        head = lines[0] if lines else {}
        if head.get("format") != JOURNAL_FORMAT or head.get("version") != JOURNAL_VERSION:
            raise ValueError(f"{self.path} is not an aiq_tvm search journal (version "
                             f"{JOURNAL_VERSION})")
        differ = [f"{k}: journal {head['run'].get(k)!r}, now {self.run.get(k)!r}"
                  for k in sorted(set(head["run"]) | set(self.run))
                  if head["run"].get(k) != self.run.get(k)]
        if differ:
            raise ValueError(f"--resume: {self.path} was written for another run ("
                             + "; ".join(differ) + "); remove it or choose another --out")
        if cut:  # rewrite without the broken line, so new records start on a line of their own
            self.path.write_text("".join(json.dumps(r) + "\n" for r in lines))
        for rec in lines[1:]:
            if "plan" in rec:
                self.accuracies[_key(rec["plan"])] = float(rec["accuracy"])
            elif "layer_times" in rec:
                self.layer_times[tuple(rec["precisions"])] = rec["layer_times"]
        self.resumed = len(self.accuracies)

    # ------------------------------------------------------------------ writing
    def _write_line(self, record: Mapping) -> None:
        if not self._started:
            head = {"format": JOURNAL_FORMAT, "version": JOURNAL_VERSION, "run": self.run}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(head) + "\n")
            self._started = True
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def accuracy_fn(self, evaluate: Callable[[Mapping[str, str]], float]
                    ) -> Callable[[Mapping[str, str]], float]:
        """``evaluate`` answered from the journal where it can, journaling new answers."""

        def fn(plan: Mapping[str, str]) -> float:
            key = _key(plan)
            if key not in self.accuracies:
                acc = float(evaluate(plan))
                self._write_line({"plan": dict(plan), "accuracy": acc})
                self.accuracies[key] = acc
            return self.accuracies[key]

        return fn

    def layer_times_fn(self, time_layers: Callable):
        """``time_layers(precisions)`` (the measured objective's kernel timings), journaled:
        a resumed search scores plans with the same times."""

        def fn(precisions):
            key = tuple(precisions)
            if key not in self.layer_times:
                table, overhead = time_layers(precisions)
                self._write_line({"layer_times": [table, overhead], "precisions": list(key)})
                self.layer_times[key] = [table, overhead]
            table, overhead = self.layer_times[key]
            return table, overhead

        return fn
