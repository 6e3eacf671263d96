r"""AIQ search over per-layer precisions.

Pure Python: the search gets an arithmetic-intensity function and an accuracy oracle and
imports no TVM, so its tests run in milliseconds.

The loss of a plan ``q`` is the paper's

.. math::  L(q; \lambda) = -\lambda \, \frac{AI(q)}{AI(\mathrm{fp32})}
                          + (1 - \lambda) \, \mathrm{AccLoss}(q)

with ``AccLoss(q) = 100 * (acc(fp32) - acc(q))``, the validation-accuracy drop in percentage
points (negative when quantization happens to help).  AI is normalized by the FP32 model's
AI, so the first term is ``-lambda`` for the FP32 plan.  What lambda weighs: one percentage
point of accuracy against ``(1 - lambda) / lambda`` of normalized AI.  A move that raises AI
by ``dAI`` (in multiples of the FP32 AI) is worth an accuracy drop of up to
``lambda / (1 - lambda) * dAI`` pp; at ``lambda = 0.9`` that is 0.09 pp per +1 % of AI, at
``lambda = 0.5`` it is 0.01 pp per +1 %.  ``lambda = 1`` ignores accuracy, ``lambda = 0``
ignores AI.

Methods (``SEARCH_METHODS``; keys are the CLI choices):

``greedy``
    Visit the layers once, in descending order of the AI the model gains when that layer
    alone takes its highest-AI precision (ties: program order); give each layer the
    precision that minimizes L with the other layers fixed at their current choice.
    Decisions are never revisited.  ``sum(|choices| - 1)`` accuracy evaluations.
``coordinate_descent``
    Start from the start plan (or ``init``); sweep the layers in program order choosing for each the
    precision that minimizes L given all others; repeat until a sweep changes nothing or
    ``max_sweeps`` sweeps have run.
``budget``
    Maximize AI subject to ``AccLoss <= budget_pp`` (default 1 pp): visit layers in the
    greedy order and give each the highest-AI precision whose plan stays within budget;
    then sweep again (up to ``max_sweeps``) since feasibility changes as other layers move.

Every method starts from the *start plan*: FP32, or, when FP32 is not allowed
(``allow_fp32=False``: the user asked for e.g. an int8/int4 mix only), each layer's allowed
precision of lowest AI (the least aggressive one, e.g. int8).  The loss stays normalized by
the FP32 model, which is measured once as the baseline either way.

Every method evaluates accuracy through a memo keyed by the full assignment, so a plan is
never measured twice; there is no randomness, so results are reproducible.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from .checks import check_choice, check_lam, check_non_negative_number, check_positive_int

__all__ = [
    "aiq_loss",
    "Evaluation",
    "SearchResult",
    "Objective",
    "greedy",
    "coordinate_descent",
    "budget",
    "SEARCH_METHODS",
    "run_search",
]


def aiq_loss(ai_norm: float, acc_drop_pp: float, lam: float) -> float:
    """``-lam * ai_norm + (1 - lam) * acc_drop_pp`` (see the module docstring)."""
    return -lam * ai_norm + (1.0 - lam) * acc_drop_pp


@dataclass(frozen=True)
class Evaluation:
    """One measured plan."""

    assignment: tuple[tuple[str, str], ...]
    ai: float
    ai_norm: float
    accuracy: float
    acc_drop_pp: float
    loss: float

    @property
    def plan(self) -> dict[str, str]:
        return dict(self.assignment)


@dataclass
class SearchResult:
    """Outcome of a search, with every evaluation in order."""

    method: str
    lam: float
    best: Evaluation
    baseline: Evaluation
    history: list[Evaluation] = field(default_factory=list)
    wall_time_s: float = 0.0
    budget_pp: float | None = None

    @property
    def assignment(self) -> dict[str, str]:
        return self.best.plan

    @property
    def evaluations(self) -> int:
        """Number of distinct plans whose accuracy was measured."""
        return len(self.history)

    def summary(self) -> dict:
        return {
            "method": self.method,
            "lambda": self.lam,
            "budget_pp": self.budget_pp,
            "evaluations": self.evaluations,
            "wall_time_s": round(self.wall_time_s, 3),
            "fp32": {"ai": self.baseline.ai, "accuracy": self.baseline.accuracy},
            "chosen": {
                "ai": self.best.ai,
                "ai_gain": self.best.ai_norm,
                "accuracy": self.best.accuracy,
                "acc_drop_pp": self.best.acc_drop_pp,
                "loss": self.best.loss,
            },
        }


class Objective:
    """The AIQ loss over plans, with a memoized accuracy oracle.

    Parameters
    ----------
    layers : sequence of str
        Searchable layers, in program order.
    choices : mapping of str to sequence of str
        Allowed precisions per layer; ``"fp32"`` is added, or with ``allow_fp32=False``
        removed.
    ai_fn : callable
        ``ai_fn(assignment) -> float``: model AI of a full assignment (or any other
        higher-is-better figure of merit, e.g. 1 / roofline time; it is normalized by its
        FP32 value).
    accuracy_fn : callable
        ``accuracy_fn(assignment) -> float`` in [0, 1], measured on validation data.
    lam : float
        Weight of AI in the loss, in [0, 1].
    allow_fp32 : bool
        False keeps every layer at one of its given choices (the FP32 plan is still measured,
        as the baseline the loss is normalized by).
    """

    def __init__(
        self,
        layers: Sequence[str],
        choices: Mapping[str, Sequence[str]],
        ai_fn: Callable[[Mapping[str, str]], float],
        accuracy_fn: Callable[[Mapping[str, str]], float],
        lam: float,
        allow_fp32: bool = True,
    ) -> None:
        lam = check_lam(lam)
        if not layers:
            raise ValueError("nothing to search: the model has no quantizable layers")
        missing = [n for n in layers if n not in choices]
        if missing:
            raise ValueError(f"no precision choices given for layers {missing}")
        self.layers = list(layers)
        # Without FP32 an "fp32" in the given choices is dropped too: the caller's switchable
        # module always offers it (for the baseline).
        self.choices = {n: tuple(p for p in dict.fromkeys(["fp32", *choices[n]])
                                 if allow_fp32 or p != "fp32") for n in layers}
        empty = [n for n in layers if not self.choices[n]]
        if empty:
            raise ValueError(f"layers {empty} have no allowed precision (FP32 is not allowed "
                             "and no other choice was given)")
        self.ai_fn = ai_fn
        self.accuracy_fn = accuracy_fn
        self.lam = float(lam)
        self.history: list[Evaluation] = []
        self._memo: dict[tuple, Evaluation] = {}
        fp32 = {n: "fp32" for n in self.layers}
        self.ai0 = float(ai_fn(fp32))
        if self.ai0 <= 0:
            raise ValueError(f"FP32 arithmetic intensity must be positive, got {self.ai0}")
        self.acc0 = float(accuracy_fn(fp32))
        self.baseline = self._record(fp32, self.acc0)
        self.start = fp32 if allow_fp32 else {
            n: min(self.choices[n], key=lambda p, n=n: self.ai_only({**fp32, n: p}))
            for n in self.layers}

    def _key(self, assignment: Mapping[str, str]) -> tuple:
        return tuple((n, assignment[n]) for n in self.layers)

    def _record(self, assignment: Mapping[str, str], acc: float) -> Evaluation:
        ai = float(self.ai_fn(assignment))
        drop = 100.0 * (self.acc0 - acc)
        ev = Evaluation(
            self._key(assignment), ai, ai / self.ai0, acc, drop,
            aiq_loss(ai / self.ai0, drop, self.lam),
        )
        self._memo[ev.assignment] = ev
        self.history.append(ev)
        return ev

    def __call__(self, assignment: Mapping[str, str]) -> Evaluation:
        key = self._key(assignment)
        if key in self._memo:
            return self._memo[key]
        acc = float(self.accuracy_fn(dict(assignment)))
        if not 0.0 <= acc <= 1.0:
            raise ValueError(f"accuracy oracle returned {acc}, expected a value in [0, 1]")
        return self._record(assignment, acc)

    def ai_only(self, assignment: Mapping[str, str]) -> float:
        """AI without measuring accuracy (cheap)."""
        return float(self.ai_fn(assignment))

    def gain_order(self) -> list[str]:
        """Layers by descending AI gain when quantized alone to their highest-AI choice."""
        fp32 = {n: "fp32" for n in self.layers}

        def gain(n: str) -> float:
            return max(self.ai_only({**fp32, n: p}) for p in self.choices[n])

        idx = {n: i for i, n in enumerate(self.layers)}
        return sorted(self.layers, key=lambda n: (-gain(n), idx[n]))

    def by_ai(self, assignment: Mapping[str, str], layer: str) -> list[str]:
        """The layer's choices by descending model AI (others fixed); ties keep registry order."""
        ch = self.choices[layer]
        return sorted(ch, key=lambda p: (-self.ai_only({**assignment, layer: p}), ch.index(p)))


def _best_for_layer(obj: Objective, current: dict[str, str], layer: str) -> Evaluation:
    best = obj(current)
    for p in obj.choices[layer]:
        if p == current[layer]:
            continue
        ev = obj({**current, layer: p})
        if ev.loss < best.loss - 1e-12:
            best = ev
    return best


def greedy(obj: Objective) -> Evaluation:
    """One pass over the layers in AI-gain order (see the module docstring)."""
    current = dict(obj.start)
    for layer in obj.gain_order():
        current = _best_for_layer(obj, current, layer).plan
    return obj(current)


def coordinate_descent(
    obj: Objective, init: Mapping[str, str] | None = None, max_sweeps: int = 3
) -> Evaluation:
    """Sweeps in program order until nothing changes (see the module docstring)."""
    check_positive_int("max_sweeps", max_sweeps)
    current = dict(obj.start)
    if init:
        current.update({n: p for n, p in init.items() if n in current})
    for _ in range(max_sweeps):
        changed = False
        for layer in obj.layers:
            new = _best_for_layer(obj, current, layer).plan
            changed |= new != current
            current = new
        if not changed:
            break
    return obj(current)


def budget(obj: Objective, budget_pp: float = 1.0, max_sweeps: int = 2) -> Evaluation:
    """Highest AI with an accuracy drop of at most ``budget_pp`` (see the module docstring)."""
    check_non_negative_number("accuracy budget budget_pp", budget_pp, " pp")
    current = dict(obj.start)
    order = obj.gain_order()
    for _ in range(max_sweeps):
        changed = False
        for layer in order:
            base_ai = obj.ai_only(current)
            for p in obj.by_ai(current, layer):
                cand = {**current, layer: p}
                if obj.ai_only(cand) <= base_ai:
                    break  # the rest cannot raise AI; keep the current choice
                if obj(cand).acc_drop_pp <= budget_pp:
                    current, changed = cand, True
                    break
        if not changed:
            break
    return obj(current)


SEARCH_METHODS: dict[str, Callable[..., Evaluation]] = {
    "greedy": greedy,
    "coordinate_descent": coordinate_descent,
    "budget": budget,
}


def run_search(
    method: str,
    layers: Sequence[str],
    choices: Mapping[str, Sequence[str]],
    ai_fn: Callable[[Mapping[str, str]], float],
    accuracy_fn: Callable[[Mapping[str, str]], float],
    lam: float = 0.9,
    budget_pp: float = 1.0,
    max_sweeps: int | None = None,
    allow_fp32: bool = True,
) -> SearchResult:
    """Run one search method and time it (``allow_fp32``: see :class:`Objective`).

    Raises
    ------
    ValueError
        For an unknown method (the message lists the valid ones), lambda outside [0, 1],
        a negative budget or an empty layer list.
    """
    check_choice("search", method, SEARCH_METHODS)
    t0 = time.perf_counter()
    obj = Objective(layers, choices, ai_fn, accuracy_fn, lam, allow_fp32=allow_fp32)
    kwargs = {} if max_sweeps is None or method == "greedy" else {"max_sweeps": max_sweeps}
    if method == "budget":
        kwargs["budget_pp"] = budget_pp
    best = SEARCH_METHODS[method](obj, **kwargs)
    return SearchResult(
        method=method,
        lam=obj.lam,
        best=best,
        baseline=obj.baseline,
        history=list(obj.history),
        wall_time_s=time.perf_counter() - t0,
        budget_pp=budget_pp if method == "budget" else None,
    )
