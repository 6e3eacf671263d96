"""Per-layer report of a build: shapes, FLOPs, bytes, AI, precision, roofline bound.

Pure Python over a :class:`~aiq_tvm.cost.CostModel`, an assignment and a CPU preset; measured
kernel times (from TVM's VM profiler) can be attached to put the roofline prediction beside
what the machine did.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from .cost import CostModel

__all__ = ["LayerRow", "Report", "make_report", "plan_fallbacks"]


@dataclass
class LayerRow:
    name: str
    op: str
    in_shape: tuple
    weight_shape: tuple
    out_shape: tuple
    flops: int
    bytes_fp32: float
    bytes: float
    ai_fp32: float
    ai: float
    precision: str
    bound: str
    predicted_us: float
    measured_us: float | None = None
    note: str = ""


@dataclass
class Report:
    """What a build did, layer by layer."""

    rows: list[LayerRow]
    target: str
    preset: str
    preset_source: str
    total_flops: int
    bytes_fp32: float
    bytes: float
    notes: list[str] = field(default_factory=list)
    accuracy_fp32: float | None = None
    accuracy: float | None = None
    # The search's estimate of the plan's accuracy (its switchable module: float32 between
    # layers); ``accuracy`` is the final build's, which may differ where block outputs reach
    # residual epilogues as uint8 (see QuantizeAnnotated(requant_residuals=...)).
    search_accuracy: float | None = None
    run_target: str = ""  # where accuracy runs executed ("" or == target: the deploy target)
    # Glue functions ScheduleGlue could not schedule ("name (error)"): TVM's serial code.
    unscheduled: list[str] = field(default_factory=list)
    preset_assumed: list[str] = field(default_factory=list)  # what the roofline peaks assume
    # BuildConfig.speed_floor and the layer precisions it ruled out (FloorMove.to_dict()).
    speed_floor: str | None = None
    speed_floor_timing: str = "model"  # or "measured" (BuildConfig.speed_floor_timing)
    floor: list[dict] = field(default_factory=list)
    # How the build's batch runs (MicroBatchChoice.describe()); "" for reports of no build.
    micro_batch: str = ""
    # What was done to the quantized layers' weights before rounding
    # (aiq_tvm.weight_correction.describe); "" when no layer quantizes its weights.
    weight_correction: str = ""

    @property
    def ai_fp32(self) -> float:
        return self.total_flops / self.bytes_fp32 if self.bytes_fp32 else 0.0

    @property
    def ai(self) -> float:
        return self.total_flops / self.bytes if self.bytes else 0.0

    @property
    def ai_gain(self) -> float:
        """AI of the plan over the FP32 AI."""
        return self.ai / self.ai_fp32 if self.ai_fp32 else 0.0

    def precisions(self) -> dict[str, str]:
        return {r.name: r.precision for r in self.rows}

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(ai_fp32=self.ai_fp32, ai=self.ai, ai_gain=self.ai_gain)
        return d

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def table(self, markdown: bool = False) -> str:
        """The per-layer table as text (or a Markdown table)."""
        head = ["layer", "op", "in", "weight", "out", "MFLOPs", "KB fp32", "KB plan",
                "AI fp32", "AI plan", "precision", "bound", "roofline us", "measured us",
                "note"]
        lines = []
        for r in self.rows:
            lines.append([
                r.name, r.op, "x".join(map(str, r.in_shape)), "x".join(map(str, r.weight_shape)),
                "x".join(map(str, r.out_shape)), f"{r.flops / 1e6:.2f}",
                f"{r.bytes_fp32 / 1024:.1f}", f"{r.bytes / 1024:.1f}", f"{r.ai_fp32:.2f}",
                f"{r.ai:.2f}", r.precision, r.bound, f"{r.predicted_us:.2f}",
                "" if r.measured_us is None else f"{r.measured_us:.2f}", r.note,
            ])
        total = ["TOTAL", "", "", "", "", f"{self.total_flops / 1e6:.2f}",
                 f"{self.bytes_fp32 / 1024:.1f}", f"{self.bytes / 1024:.1f}",
                 f"{self.ai_fp32:.2f}", f"{self.ai:.2f}", f"x{self.ai_gain:.2f}", "",
                 f"{sum(r.predicted_us for r in self.rows):.2f}",
                 _sum_measured(self.rows), ""]
        lines.append(total)
        if markdown:
            out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            out += ["| " + " | ".join(row) + " |" for row in lines]
            return "\n".join(out)
        widths = [max(len(h), *(len(row[i]) for row in lines)) for i, h in enumerate(head)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
        out += [fmt.format(*row) for row in lines]
        return "\n".join(out)

    def header(self) -> str:
        """What the table rests on: target, preset and what it assumes, AI, accuracy, notes."""
        acc = ""
        if self.accuracy is not None and self.accuracy_fp32 is not None:
            acc = (f"; validation accuracy fp32 {100 * self.accuracy_fp32:.2f}% -> plan "
                   f"{100 * self.accuracy:.2f}%")
        head = (f"AIQ report for target {self.target} (roofline preset {self.preset}: "
                f"{self.preset_source})\nmodel AI fp32 {self.ai_fp32:.2f} -> plan {self.ai:.2f} "
                f"FLOP/B (x{self.ai_gain:.2f}){acc}")
        if self.run_target and self.run_target != self.target:
            head += (f"\naccuracy runs on the host target {self.run_target} with the deploy "
                     "target's numerics (this machine cannot execute the deploy target)")
        head += "".join(f"\nassumed: {a}" for a in self.preset_assumed)
        if self.micro_batch:
            head += f"\n{self.micro_batch}"
        if self.weight_correction:
            head += f"\nweights: {self.weight_correction}"
        notes = "".join(f"\nnote: {n}" for n in self.notes) + self._floor_lines()
        if self.unscheduled:
            notes += (f"\nnote: {len(self.unscheduled)} glue function(s) left unscheduled "
                      f"(TVM's single-threaded code): {'; '.join(self.unscheduled)}")
        return f"{head}{notes}"

    def _floor_lines(self) -> str:
        """The speed floor's layers, each with both kernel times (modelled or measured)."""
        if self.speed_floor is None:
            return ""
        from .floor import FloorMove, tolerance

        measured = self.speed_floor_timing == "measured"
        head = (f"\nspeed floor {self.speed_floor} ({'measured' if measured else 'modelled'} "
                f"kernel time at most {self.speed_floor}'s x {1 + tolerance(measured):g}): "
                f"{len(self.floor)} layer "
                "precision(s) ruled out")
        moves = [FloorMove(**m) for m in self.floor]
        # Moves by a rule (FloorMove.reason) share one reason: one line per rule and precision.
        by_rule: dict[tuple, list[str]] = {}
        for m in moves:
            if m.reason:
                by_rule.setdefault((m.precision, m.action, m.floor, m.reason), []).append(m.layer)
        lines = [f"{p} on {len(layers)} layer(s) "
                 f"{'moved to' if action == 'moved' else 'not offered; floor'} {floor}: {why}"
                 for (p, action, floor, why), layers in by_rule.items()]
        lines += [m.describe() for m in moves if not m.reason]
        return head + "".join(f"\n  {line}" for line in lines)

    def __str__(self) -> str:
        return f"{self.header()}\n{self.table()}"


def _sum_measured(rows) -> str:
    vals = [r.measured_us for r in rows if r.measured_us is not None]
    return f"{sum(vals):.2f}" if vals else ""


def plan_fallbacks(cost: CostModel, assignment: Mapping[str, str]) -> dict[str, str]:
    """Layers the plan asked for a low precision that have no AIQ kernel (they stay fp32)."""
    return {n: assignment[n] for n in cost.names
            if not cost[n].supported and assignment.get(n, "fp32") != "fp32"}


def make_report(
    cost: CostModel,
    assignment: Mapping[str, str],
    preset,
    target: str,
    fallbacks: Mapping[str, str] | None = None,
    measured_us: Mapping[str, float] | None = None,
    run_target: str = "",
) -> Report:
    """Assemble the report of a plan.

    ``fallbacks`` maps layers the plan asked for a low precision but that stay fp32 (no
    kernel) to the precision asked (default: :func:`plan_fallbacks`); ``measured_us`` maps
    layer names to measured kernel time; ``run_target`` names the target accuracy runs
    executed on when it is not ``target``.
    """
    if fallbacks is None:
        fallbacks = plan_fallbacks(cost, assignment)
    full = cost.full_assignment({k: v for k, v in assignment.items() if k in cost.names})
    fp32 = {n: "fp32" for n in cost.names}
    rows = []
    for lc in cost.layers:
        prec = full[lc.name]
        point = cost.roofline(lc.name, full, preset)
        b32 = cost.layer_bytes(lc.name, fp32)
        note = ""
        if not lc.supported:
            note = f"stays fp32: {lc.reason}"
            if fallbacks and lc.name in fallbacks:
                note += f" (plan asked {fallbacks[lc.name]})"
        elif cost.out_act_bytes(lc.name, full) == 1.0:
            note = "uint8 output (requantized for its consumers)"
        rows.append(LayerRow(
            name=lc.name, op=lc.op, in_shape=lc.in_shape, weight_shape=lc.weight_shape,
            out_shape=lc.out_shape, flops=lc.flops, bytes_fp32=b32, bytes=point.nbytes,
            ai_fp32=lc.flops / b32 if b32 else 0.0, ai=point.ai, precision=prec,
            bound=point.bound, predicted_us=point.predicted_s * 1e6,
            measured_us=None if measured_us is None else measured_us.get(lc.name),
            note=note,
        ))
    notes = []
    if fallbacks:
        notes.append(f"{len(fallbacks)} layer(s) have no AIQ kernel and stay fp32: "
                     f"{sorted(fallbacks)}")
    return Report(
        rows=rows, target=target, preset=preset.name, preset_source=preset.source,
        total_flops=cost.total_flops(), bytes_fp32=cost.total_bytes(fp32),
        bytes=cost.total_bytes(full), notes=notes, run_target=run_target or target,
        preset_assumed=list(getattr(preset, "assumed", ())),
    )
