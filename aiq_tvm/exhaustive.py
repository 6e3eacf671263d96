"""Every plan over groups of layers, measured with shared prefixes.

The search's accuracy oracle runs the whole switchable module once per plan.  An exhaustive
evaluation over ``G`` groups with ``P`` precisions each runs ``P**G`` plans, and plans that agree
on their first groups compute the same activations up to there.  :class:`PrefixEvaluator`
compiles the switchable module cut into one segment per group (see
:class:`~aiq_tvm.passes.SplitAtLayers`: the same kernels as the oracle's) and walks the tree of
plans depth first, so segment ``j`` runs ``P**(j + 1)`` times instead of ``P**G`` times.  The
accuracies are the oracle's, bit for bit: same kernels, same tensors, same padding, same
accuracy function (tests/test_exhaustive.py checks it against the oracle).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import tvm
from tvm import relax

from .batching import padded_batches
from .compiler import compile_switchable
from .passes import segment_name, select_vector
from .runtime import _real_rows, accuracy

__all__ = ["PrefixEvaluator"]


class PrefixEvaluator:
    """Accuracies of group plans on ``ctx``'s validation data (``ctx``: a
    :class:`aiq_tvm.phases.BuildContext`).

    ``groups`` are lists of consecutive layers covering the searchable layers in order; a
    group plan is a tuple with one precision per group, from ``precisions``.
    """

    def __init__(self, ctx, calibration, groups: Sequence[Sequence[str]],
                 precisions: Sequence[str]):
        self.choices = ctx.config.choices(ctx.cost.searchable)
        self.layers = list(self.choices)  # the oracle's select order
        self.groups = [list(g) for g in groups]
        if [n for g in self.groups for n in g] != self.layers:
            raise ValueError("groups must cover the searchable layers in order, each once")
        self.precisions = tuple(precisions)
        self.val, self.batch, self.output = ctx.val, ctx.eval_batch_size, ctx.output
        exe = compile_switchable(ctx.annotated, ctx.params, calibration, self.choices,
                                 ctx.run_target, ctx.eval_batch_size, ctx.numerics_target,
                                 cuts=[g[0] for g in self.groups[1:]])
        vm = relax.VirtualMachine(exe, tvm.cpu())
        self.segments = [vm[segment_name(j)] for j in range(len(self.groups))]
        self.segment_runs = 0

    def assignment(self, plan: Sequence[str]) -> dict[str, str]:
        """The per-layer plan of a group plan (groups past ``plan``'s length: fp32)."""
        return {n: p for g, p in zip(self.groups, plan, strict=False) for n in g}

    def plans(self, prefix: Sequence[str] = ()) -> list[tuple[str, ...]]:
        """Every group plan starting with ``prefix``, in lexicographic order."""
        rest = itertools.product(self.precisions, repeat=len(self.groups) - len(prefix))
        return [tuple(prefix) + tail for tail in rest]

    def subtree(self, prefix: Sequence[str] = ()) -> dict[tuple[str, ...], float]:
        """The accuracy of every group plan starting with ``prefix``."""
        return {plan: accuracy(out, self.val[1]) for plan, out in self.logits(prefix).items()}

    def logits(self, prefix: Sequence[str] = ()) -> dict[tuple[str, ...], np.ndarray]:
        """The validation logits of every group plan starting with ``prefix`` (batch by
        batch, the whole tree under ``prefix`` per batch: only one path of activations is
        alive at a time)."""
        parts: dict[tuple[str, ...], list[np.ndarray]] = {}
        for chunk, real in padded_batches(np.asarray(self.val[0], np.float32), self.batch):
            self._descend([tvm.runtime.tensor(chunk, tvm.cpu())], (), tuple(prefix), real,
                          parts)
        return {plan: np.concatenate(p) for plan, p in parts.items()}

    def _descend(self, state: list, plan: tuple, prefix: tuple, real: int,
                 logits: dict) -> None:
        """Run segment ``len(plan)`` on ``state`` at each precision (only ``prefix``'s while
        inside it) and go on from its outputs; the last segment's logits are kept."""
        j = len(plan)
        if j == len(self.segments):
            out = _real_rows(state, real)
            logits.setdefault(plan, []).append(out if self.output is None else out[self.output])
            return
        for p in (prefix[j],) if j < len(prefix) else self.precisions:
            here = plan + (p,)
            sel = tvm.runtime.tensor(select_vector(self.layers, self.choices,
                                                   self.assignment(here)))
            out = self.segments[j](*state, sel)
            self.segment_runs += 1
            last = j + 1 == len(self.segments)
            self._descend(out if last else list(out), here, prefix, real, logits)
