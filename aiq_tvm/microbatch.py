"""Which micro-batch a build's ``main`` runs a batch in (``BuildConfig.micro_batch``).

A batch-``B`` executable compiled at micro-batch ``m`` runs ``B / m`` calls of the batch-``m``
layers (:class:`aiq_tvm.passes.MicroBatch`).  Smaller calls keep large activations in the
last-level cache (LLC); each call reads the weights again.  ``"auto"`` picks ``m`` with a
model of the bytes that go through memory per batch, from the cost model and the target's
preset (:func:`aiq_tvm.targets.memory.weight_memory`):

* activations: a memory-bound layer (the cost model's roofline on the preset's peaks) whose
  input + output (+ fused shortcut) bytes for ``m`` samples exceed :data:`LLC_SHARE` of the
  LLC streams them through memory (``B`` samples' worth per batch); one that fits keeps them
  in cache.  A compute-bound layer's activation traffic is not counted: its kernel hides it
  (ResNet-50's 7 MB-per-sample bottleneck layers ran no faster in micro-batches);
* weights: a model whose weights fit the LLC keeps them there; a larger one reads them from
  memory once per call (``B / m`` times per batch).

``m`` is the divisor of ``B`` with the least modelled memory traffic; on a tie the largest
(fewer calls: less per-call overhead, wider loops to share between threads). A model whose
weights exceed the LLC runs whole: each further call's weight read from memory is a cost
every kernel waits for, while the activations' saving is only modelled. MobileNetV3-Large
FP32 at batch 8 (21.8 MB of weights on a 20.3 MiB usable LLC) ran 0.89x in calls of 2, which
the traffic alone chose (105 MB modelled unsplit against 87 MB; docs/performance_224.md,
"Session 29").

The LLC is the preset's usable size where the roofline's ``--cache`` probe measured one
(:mod:`aiq_tvm.targets.llc`: a virtual machine's sysfs lists the whole host's LLC, of which
its cores get a share), else the listed one.

``"measure"`` times instead of modelling: the build compiles ``main`` at every candidate
micro-batch (:func:`measure_candidates`: the divisors of ``B`` that make at most
:data:`MAX_CALLS` calls), times them in interleaved rounds on this machine and keeps the
fastest (:func:`measured_choice`). How much a split gains depends on what share of the
last-level cache the process really gets, which a shared or virtualized machine does not
report: on a 2-vCPU Xeon guest whose sysfs lists the whole host's 480 MiB LLC, MobileNetV2
FP32 at batch 8 ran 1.20x faster in calls of 2 (docs/performance_224.md, "Session 23"; after
session 26's planner changes no split won there by 2 %).  Pure Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .schemes import get_precision

__all__ = ["AUTO", "MEASURE", "OFF", "LLC_SHARE", "MicroBatchChoice", "check_micro_batch",
           "divisors", "layer_traffic", "choose_micro_batch", "measure_candidates",
           "measured_choice"]

AUTO = "auto"
MEASURE = "measure"
# "measure": candidates make at most this many calls per batch, and a split must be faster
# than every larger candidate by more than MEASURE_TIE (the rounds' noise on a shared host)
# to be kept.
MAX_CALLS = 8
MEASURE_TIE = 0.02
OFF = "off"  # the CLI's word for None
# Share of the LLC a layer's activations may take and still stay cached (the rest holds
# weights, padded copies, other tenants): fitted on the batch-8 table of
# docs/performance_224.md ("Micro-batching"): MobileNetV2 / EfficientNet-B0 FP32 ran fastest
# in calls of 4 samples (24 MB at the widest layer) on a 32 MiB LLC.
LLC_SHARE = 0.75


@dataclass(frozen=True)
class MicroBatchChoice:
    """The micro-batch ``micro`` a batch of ``batch`` runs in, and why."""

    batch: int
    micro: int
    reason: str

    @property
    def split(self) -> bool:
        return self.micro != self.batch

    def describe(self) -> str:
        calls = f"{self.batch // self.micro} call(s) of {self.micro}" if self.split \
            else "one call"
        return f"micro-batch {self.micro} at batch {self.batch} ({calls}): {self.reason}"


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def check_micro_batch(value) -> int | str | None:
    """``BuildConfig.micro_batch``: None (or ``"off"``), a positive int, ``"auto"`` or
    ``"measure"``."""
    if value is None or value == OFF:
        return None
    if value in (AUTO, MEASURE):
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"micro_batch must be {AUTO!r}, {MEASURE!r}, None or {OFF!r}, or a "
                         f"positive integer dividing the batch size, got {value!r}")
    return value


def check_divides(micro: int, batch: int) -> None:
    if batch % micro:
        raise ValueError(f"micro_batch={micro} does not divide the batch size {batch}; valid "
                         f"micro-batches for batch {batch}: {divisors(batch)} (or "
                         f"{AUTO!r}, or None for off)")


@dataclass(frozen=True)
class Traffic:
    """Per-sample activation bytes of each layer, whether the layer is memory-bound, and the
    model's weight bytes, for a plan."""

    activations: tuple[tuple[str, float, bool], ...]
    weight_bytes: float

    def largest(self) -> tuple[str, float, bool]:
        """The memory-bound layer with the most activation bytes (any layer if none is)."""
        bound = [a for a in self.activations if a[2]] or self.activations
        return max(bound, key=lambda a: a[1])


def layer_traffic(cost, assignment: Mapping[str, str], cost_batch: int, peaks) -> Traffic:
    """Per-sample input + output (+ shortcut) bytes of every layer of ``cost`` (a
    :class:`~aiq_tvm.cost.CostModel` at batch ``cost_batch``) under ``assignment``, its
    roofline bound on ``peaks`` (a preset), and the weight bytes (what
    :meth:`LayerCost.nbytes` counts)."""
    full = cost.full_assignment({k: v for k, v in assignment.items() if k in cost.names})
    acts, weights = [], 0.0
    for lc in cost.layers:
        p = get_precision(full[lc.name])
        src = lc.residual_source
        res = 4.0 if src is None else cost.out_act_bytes(src, full)
        act = (lc.in_elems * p.act_bytes + lc.out_elems * cost.out_act_bytes(lc.name, full)
               + lc.residual_elems * res)
        bound = cost.roofline(lc.name, full, peaks).bound == "memory"
        acts.append((lc.name, act / cost_batch, bound))
        weights += lc.weight_elems * p.weight_bytes
    return Traffic(tuple(acts), weights)


def memory_bytes(traffic: Traffic, batch: int, micro: int, llc_bytes: int) -> tuple[float, float]:
    """(activation, weight) bytes through memory for one batch at micro-batch ``micro``."""
    budget = LLC_SHARE * llc_bytes
    acts = batch * sum(a for _, a, bound in traffic.activations
                       if bound and micro * a > budget)
    weights = 0.0 if traffic.weight_bytes <= llc_bytes else \
        (batch // micro) * traffic.weight_bytes
    return acts, weights


def _mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:.3g} MB"


def choose_micro_batch(setting, batch: int, traffic: Traffic | None, llc_bytes: int,
                       splittable: str = "", llc_name: str = "LLC") -> MicroBatchChoice:
    """The micro-batch of a ``batch``-sample call for ``setting`` (None, an int or ``"auto"``).

    ``splittable``: why the module's batch cannot be split ("" when it can); ``traffic`` and
    ``llc_bytes`` (0: unknown) feed ``"auto"``, whose reason calls that size ``llc_name``
    (``"usable LLC"`` where it is the probe's, :mod:`aiq_tvm.targets.llc`).  An int that
    does not divide ``batch`` runs the whole batch (the build's own batch size is checked
    earlier, with an error).
    """
    if setting is None:
        return MicroBatchChoice(batch, batch, "off (BuildConfig.micro_batch=None)")
    if splittable:
        return MicroBatchChoice(batch, batch, f"{setting}: not split, {splittable}")
    if setting not in (AUTO, MEASURE):
        if batch % setting:
            return MicroBatchChoice(batch, batch, f"{setting} does not divide batch {batch}: "
                                    "the whole batch in one call")
        return MicroBatchChoice(batch, setting, f"micro_batch={setting} as configured")
    if batch == 1:
        return MicroBatchChoice(batch, 1, f"{setting}: batch 1")
    if not llc_bytes or traffic is None:
        return MicroBatchChoice(batch, batch, "auto: the target's preset has no LLC size "
                                "(python -m aiq_tvm.targets.roofline --cache measures it), "
                                "so the whole batch in one call")
    return _auto(batch, traffic, llc_bytes, llc_name)


def _auto(batch: int, traffic: Traffic, llc_bytes: int, llc_name: str) -> MicroBatchChoice:
    cost = {m: memory_bytes(traffic, batch, m, llc_bytes) for m in divisors(batch)}
    resident = traffic.weight_bytes <= llc_bytes
    # Weights from memory: the whole batch (see the module docstring).
    best = min(cost, key=lambda m: (sum(cost[m]), -m)) if resident else batch
    name, act, _ = traffic.largest()
    acts, weights = cost[best]
    full = sum(cost[batch])
    fit = "fit the LLC" if resident else "exceed the LLC, so no split reads them again"
    why = (f"auto: m={best}, largest memory-bound layer activation {_mb(act)} per sample "
           f"({name}) vs {LLC_SHARE:g} x {llc_name} {llc_bytes / 2**20:g} MiB; weights "
           f"{_mb(traffic.weight_bytes)} {fit}; modelled memory traffic per batch "
           f"{_mb(acts + weights)} (activations {_mb(acts)}, weights {_mb(weights)}) vs "
           f"{_mb(full)} unsplit")
    return MicroBatchChoice(batch, best, why)


def measure_candidates(batch: int) -> list[int]:
    """Micro-batches ``"measure"`` times for a batch: the divisors making at most
    :data:`MAX_CALLS` calls, largest (the whole batch) first."""
    return [m for m in reversed(divisors(batch)) if batch // m <= MAX_CALLS]


def measured_choice(batch: int, times_ms: Mapping[int, float], how: str) -> MicroBatchChoice:
    """The fastest micro-batch of ``times_ms`` (median ms per batch of each candidate); a
    smaller one wins only when more than :data:`MEASURE_TIE` faster than every larger one,
    so noise does not split a batch for nothing. ``how`` says how the times were taken."""
    best = max(times_ms)
    for m in sorted(times_ms, reverse=True):
        if all(times_ms[m] < times_ms[k] * (1 - MEASURE_TIE) for k in times_ms if k > m):
            best = m
    shown = ", ".join(f"m={m} {t:.3g} ms" for m, t in sorted(times_ms.items(), reverse=True))
    return MicroBatchChoice(batch, best, f"measure: m={best} fastest ({shown}; {how}; a split "
                            f"must win by more than {MEASURE_TIE:.0%})")
