"""Medians over repeated ``scripts/bench_models.py`` runs: int4, AIQ plan (and the plan with
``--speed-floor``) vs int8.

On a shared host one run's ratios move by several percent; this prints, per model and batch,
the median over runs of ``int8 time / int4 time``, ``int8 time / plan time`` and ``int8 time /
floor plan time`` (> 1: faster than int8; columns for the variants the runs have) and every
run's value, for each group of runs (e.g. before / after a change).

Usage::

    python scripts/compare_runs.py before=b1.json before=b2.json after=a1.json after=a2.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

RATIOS = {"int4": "tvm-int4", "plan": "tvm-aiq-plan", "floor plan": "tvm-aiq-plan-floor"}


def collect(specs: list[str]) -> tuple[list[str], dict]:
    """(group names in order, {(model, batch): {group: {ratio: [per-run values]}}})."""
    groups, table = [], {}
    for spec in specs:
        group, sep, path = spec.partition("=")
        if not sep:
            raise SystemExit(f"expected GROUP=RUN.json, got {spec!r}")
        if group not in groups:
            groups.append(group)
        for row in json.loads(Path(path).read_text())["rows"]:
            cell = table.setdefault((row["model"], row["batch"]), {}).setdefault(group, {})
            for name, variant in RATIOS.items():
                if variant in row["ms"]:
                    ratio = row["ms"]["tvm-int8"] / row["ms"][variant]
                    cell.setdefault(name, []).append(ratio)
    return groups, table


def render(groups: list[str], table: dict) -> str:
    names = [n for n in RATIOS if any(n in c.get(g, {}) for c in table.values() for g in groups)]
    cols = [f"{g} {n} vs int8" for g in groups for n in names]
    lines = ["| model | batch | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for (model, batch), cell in table.items():
        out = []
        for g in groups:
            for n in names:
                vals = cell.get(g, {}).get(n, [])
                runs = ", ".join(f"{v:.2f}" for v in vals)
                out.append(f"{statistics.median(vals):.2f}x ({runs})" if vals else "-")
        lines.append(f"| {model} | {batch} | " + " | ".join(out) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", metavar="GROUP=RUN.json")
    args = ap.parse_args()
    print(render(*collect(args.runs)))


if __name__ == "__main__":
    main()
