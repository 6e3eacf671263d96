"""What the AIQ search maximizes: a registry of objectives, like ``SEARCH_METHODS``.

The loss's first term is a figure of merit of a plan, normalized by its FP32 value (see
:mod:`aiq_tvm.search`).  Each objective turns what a build knows (the cost model, the target's
roofline preset, and, for ``measured``, kernel times) into ``merit(assignment) -> float``,
higher is better.  Pure Python: the measured objective receives a timing callback from the
build instead of timing anything itself.

``ai``
    The paper's arithmetic intensity (FLOPs per byte moved).
``roofline``
    The speed-up the target preset's roofline predicts (1 / predicted time); int8 compute
    peaks count, so it prefers integer kernels over weight-only ones where the layer is
    compute-bound.
``measured``
    The speed-up of the layer kernels as timed on this machine at the build's batch size
    (each layer's kernel at each candidate precision, timed once in a uniform build of that
    precision), plus the rest of an FP32 inference as a constant.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .checks import check_choice
from .cost import CostModel

__all__ = ["MeritInputs", "SearchObjective", "OBJECTIVES", "get_objective"]

Merit = Callable[[Mapping[str, str]], float]
# precisions -> ({layer: {precision: us}}, microseconds of everything else in an FP32 run)
LayerTimer = Callable[[Sequence[str]], tuple[dict[str, dict[str, float]], float]]


@dataclass(frozen=True)
class MeritInputs:
    """What an objective may use to score plans."""

    cost: CostModel
    preset: object  # roofline peaks (aiq_tvm.targets.CpuPreset)
    candidates: tuple[str, ...]
    time_layers: LayerTimer | None = None


class SearchObjective:
    """Base class: ``name`` (the registry key), ``description`` and :meth:`merit`."""

    name = ""
    description = ""

    def merit(self, inputs: MeritInputs) -> Merit:
        raise NotImplementedError


class ArithmeticIntensity(SearchObjective):
    name = "ai"
    description = "model arithmetic intensity (FLOPs per byte), as in the paper"

    def merit(self, inputs: MeritInputs) -> Merit:
        return inputs.cost.ai


class RooflineSpeedup(SearchObjective):
    name = "roofline"
    description = "speed-up the target preset's roofline predicts"

    def merit(self, inputs: MeritInputs) -> Merit:
        cost, preset = inputs.cost, inputs.preset

        def merit(assignment: Mapping[str, str]) -> float:
            return 1.0 / cost.predicted_time(cost.full_assignment(assignment), preset)

        return merit


class MeasuredSpeedup(SearchObjective):
    name = "measured"
    description = "speed-up of the layer kernels as timed on this machine"

    def merit(self, inputs: MeritInputs) -> Merit:
        if inputs.time_layers is None:
            raise ValueError("the measured objective needs a kernel timer (time_layers)")
        table, overhead = inputs.time_layers(inputs.candidates)
        layers = list(table)

        def merit(assignment: Mapping[str, str]) -> float:
            return 1.0 / (overhead + sum(table[n][assignment.get(n, "fp32")] for n in layers))

        return merit


OBJECTIVES: dict[str, SearchObjective] = {
    o.name: o for o in (ArithmeticIntensity(), RooflineSpeedup(), MeasuredSpeedup())
}


def get_objective(name: str) -> SearchObjective:
    """Look an objective up by name (the error lists the valid ones)."""
    return OBJECTIVES[check_choice("objective", name, OBJECTIVES)]
