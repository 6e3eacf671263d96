"""The AIQ paper's experiments on the shipped models (Fashion-MNIST), one part per command.

    python scripts/paper_experiments.py search --model resnet20 --out docs/paper
    python scripts/paper_experiments.py latency --model resnet20 --out docs/paper
    python scripts/paper_experiments.py sensitivity --model resnet20 --out docs/paper
    python scripts/paper_experiments.py exhaustive --model resnet20 --out docs/paper
    python scripts/paper_experiments.py markdown --out docs/paper > docs/paper.md

``search``: greedy and coordinate descent at every lambda, and the budget search (which does
not depend on lambda): AI, validation and test accuracy (the test split through the search's
switchable module, i.e. the final build's kernels), search wall time.  ``latency``: every
distinct plan of ``search`` and uniform FP32 / int8 built at batch 1 and 64 and timed with
TVM's time_evaluator (medians).  ``sensitivity``: each layer alone at int4, the rest FP32.
``exhaustive``: the layers split into 8 groups of consecutive layers; all 3^8 = 6,561 plans
over fp32/int8/int4 (a group shares one precision) evaluated on the switchable module and
ranked by the paper's loss, and where greedy and coordinate descent (run over the same 8
groups) land.  Each part writes ``<out>/<model>_<part>.json``; ``markdown`` renders them.
Timing parts should run under ``flock /work/wt/bench.lock``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path

import numpy as np

LAMBDAS = (0.5, 0.7, 0.9, 0.95, 0.99)
PRECISIONS = ("fp32", "int8", "int4")


def _setup(model_name: str, calib: int, val: int, seed: int = 0):
    from aiq_tvm import datasets, phases
    from aiq_tvm.config import BuildConfig
    from aiq_tvm.sources import load_model

    model = load_model(model_name)
    xc, _ = datasets.calibration_set(calib, seed=seed)
    xv, yv = datasets.validation_set(val, seed=seed)
    cfg = BuildConfig(precisions=PRECISIONS, seed=seed)
    ctx = phases.resolve(model.mod, model.params, xc, (xv, yv), cfg)
    cal = phases.calibrate(ctx)
    return ctx, cal


def _oracle(ctx, cal, x, y):
    import dataclasses

    from aiq_tvm import phases

    sub = dataclasses.replace(ctx, val=(x, y))
    return phases._accuracy_oracle(sub, cal, ctx.config.choices(ctx.cost.searchable))


def _test_split():
    from aiq_tvm import datasets

    return datasets.fashion_mnist("test")


def _write(out: Path, model: str, part: str, data: dict) -> None:
    import sys

    out.mkdir(parents=True, exist_ok=True)
    data["command"] = f"TVM_NUM_THREADS={os.environ.get('TVM_NUM_THREADS')} python " \
        f"scripts/paper_experiments.py {' '.join(sys.argv[1:])}"
    (out / f"{model}_{part}.json").write_text(json.dumps(data, indent=2, default=float) + "\n")
    print(f"wrote {out / f'{model}_{part}.json'}")


# ----------------------------------------------------------------------------- search
def part_search(args) -> None:
    import dataclasses

    from aiq_tvm import phases

    ctx, cal = _setup(args.model, args.calib, args.val)
    test = _oracle(ctx, cal, *_test_split())
    runs = [(m, lam) for lam in LAMBDAS for m in ("greedy", "coordinate_descent")]
    runs.append(("budget", None))
    rows = []
    for method, lam in runs:
        ctx.config = dataclasses.replace(ctx.config, search=method, lam=lam or 0.9,
                                         budget_pp=1.0)
        plan, found = phases.search(ctx, cal)
        row = {"method": method, "lambda": lam, "budget_pp": 1.0 if lam is None else None,
               "plan": found.assignment, "ai": found.best.ai, "ai_gain": found.best.ai_norm,
               "val_accuracy": found.best.accuracy, "val_accuracy_fp32": found.baseline.accuracy,
               "test_accuracy": test(found.assignment), "evaluations": found.evaluations,
               "search_s": found.wall_time_s}
        rows.append(row)
        print(f"{method:18s} lambda {lam}: AI x{row['ai_gain']:.2f}, val "
              f"{100 * row['val_accuracy']:.2f}%, test {100 * row['test_accuracy']:.2f}%, "
              f"{row['evaluations']} plans, {row['search_s']:.1f} s", flush=True)
    fp32 = {n: "fp32" for n in ctx.cost.searchable}
    int8 = {n: "int8" for n in ctx.cost.searchable}
    refs = {k: {"ai": ctx.cost.ai(a), "test_accuracy": test(a)}
            for k, a in (("fp32", fp32), ("int8", int8))}
    _write(Path(args.out), args.model, "search", {
        "model": args.model, "calib": args.calib, "val": args.val, "rows": rows,
        "references": refs, "search_compile_s": ctx.timings.get("search_compile_s")})


# ----------------------------------------------------------------------------- latency
def part_latency(args) -> None:
    from aiq_tvm.plan import Plan

    src = json.loads((Path(args.out) / f"{args.model}_search.json").read_text())
    ctx, cal = _setup(args.model, args.calib, args.val)
    plans = {"fp32": {n: "fp32" for n in ctx.cost.searchable},
             "int8": {n: "int8" for n in ctx.cost.searchable}}
    for r in src["rows"]:
        key = json.dumps(r["plan"], sort_keys=True)
        plans.setdefault(key, r["plan"])
    timings = {}
    for key, assignment in plans.items():
        res = ctx.result(Plan.from_assignment(assignment), cal)
        timings[key] = {f"b{bs}_ms": res.benchmark(bs, repeat=args.repeat)["median_ms"]
                        for bs in (1, 64)}
        print(key[:60], timings[key], flush=True)
    _write(Path(args.out), args.model, "latency", {"model": args.model, "plans": plans,
                                                   "timings": timings, "repeat": args.repeat})


# ----------------------------------------------------------------------------- sensitivity
def part_sensitivity(args) -> None:
    ctx, cal = _setup(args.model, args.calib, args.val)
    acc = _oracle(ctx, cal, *ctx.val)
    layers = ctx.cost.searchable
    fp32 = {n: "fp32" for n in layers}
    a0, ai0 = acc(fp32), ctx.cost.ai(fp32)
    rows = []
    for n in layers:
        plan = {**fp32, n: "int4"}
        rows.append({"layer": n, "ai_gain_pct": 100 * (ctx.cost.ai(plan) / ai0 - 1),
                     "acc_drop_pp": 100 * (a0 - acc(plan)),
                     "weights": ctx.cost[n].weight_elems})
    _write(Path(args.out), args.model, "sensitivity", {"model": args.model, "rows": rows,
                                                       "val_accuracy_fp32": a0})


# ----------------------------------------------------------------------------- exhaustive
def groups_of(layers: list[str], k: int = 8) -> list[list[str]]:
    """``k`` groups of consecutive layers, sizes as equal as possible."""
    return [list(g) for g in np.array_split(np.array(layers, dtype=object), k)]


def part_exhaustive(args) -> None:
    from aiq_tvm.search import Objective, coordinate_descent, greedy

    ctx, cal = _setup(args.model, args.calib, args.val)
    acc = _oracle(ctx, cal, *ctx.val)
    groups = groups_of(ctx.cost.searchable)
    names = [f"g{i}" for i in range(len(groups))]

    def expand(g_assign):
        return {n: g_assign[g] for g, members in zip(names, groups, strict=True)
                for n in members}

    cache = {}

    def acc_g(g_assign):
        key = tuple(g_assign[g] for g in names)
        if key not in cache:
            cache[key] = acc(expand(g_assign))
        return cache[key]

    def ai_g(g_assign):
        return ctx.cost.ai(expand(g_assign))

    t0 = time.perf_counter()
    for combo in itertools.product(PRECISIONS, repeat=len(names)):
        acc_g(dict(zip(names, combo, strict=True)))
    all_s = time.perf_counter() - t0
    out = {"model": args.model, "groups": groups, "evaluate_all_s": all_s, "lambdas": {}}
    ai0, a0 = ai_g(dict.fromkeys(names, "fp32")), acc_g(dict.fromkeys(names, "fp32"))
    for lam in LAMBDAS:
        losses = []
        for key, a in cache.items():
            g = dict(zip(names, key, strict=True))
            losses.append((-lam * ai_g(g) / ai0 + (1 - lam) * 100 * (a0 - a), key))
        losses.sort()
        rank = {key: i for i, (_, key) in enumerate(losses)}
        entry = {"optimum": {"plan": losses[0][1], "loss": losses[0][0]}}
        for name, fn in (("greedy", greedy), ("coordinate_descent", coordinate_descent)):
            obj = Objective(names, dict.fromkeys(names, PRECISIONS), ai_g, acc_g, lam)
            best = fn(obj)
            key = tuple(best.plan[g] for g in names)
            entry[name] = {"plan": key, "loss": best.loss, "rank": rank[key] + 1,
                           "evaluations": len(obj.history),
                           "gap_to_optimum": best.loss - losses[0][0]}
        out["lambdas"][str(lam)] = entry
        print(lam, {k: (v.get("rank"), round(v["loss"], 4)) for k, v in entry.items()},
              flush=True)
    _write(Path(args.out), args.model, "exhaustive", out)


# ----------------------------------------------------------------------------- markdown
def _load(out: Path, model: str, part: str) -> dict | None:
    path = out / f"{model}_{part}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _md_search(model, s, lat) -> list[str]:
    t = (lat or {}).get("timings", {})
    ref32 = t.get("fp32", {})
    lines = [f"### {model}: greedy vs coordinate descent vs budget", "",
             f"Command: `{s['command']}`" + (f"; latency: `{lat['command']}`" if lat else ""),
             "", "| method | lambda | AI gain | val acc | test acc | evaluations | search s "
             "| b1 ms | b64 ms | b1 vs fp32 | b64 vs fp32 |", "|" + "---|" * 11]
    rows = [("uniform fp32", None, s["references"]["fp32"], "fp32"),
            ("uniform int8", None, s["references"]["int8"], "int8")]
    rows += [(r["method"], r["lambda"], r, json.dumps(r["plan"], sort_keys=True))
             for r in s["rows"]]
    ai0 = s["references"]["fp32"]["ai"]
    for name, lam, r, key in rows:
        tm = t.get(key, {})
        lines.append("| " + " | ".join([
            name, "" if lam is None else f"{lam:g}", f"x{r['ai'] / ai0:.2f}",
            f"{100 * r['val_accuracy']:.2f}%" if "val_accuracy" in r else "",
            f"{100 * r['test_accuracy']:.2f}%", str(r.get("evaluations", "")),
            f"{r['search_s']:.1f}" if "search_s" in r else "",
            *(f"{tm[k]:.3f}" if k in tm else "" for k in ("b1_ms", "b64_ms")),
            *(f"{ref32[k] / tm[k]:.2f}x" if k in tm and k in ref32 else ""
              for k in ("b1_ms", "b64_ms"))]) + " |")
    return lines + [""]


def _md_sensitivity(model, s) -> list[str]:
    lines = [f"### {model}: each layer alone at int4", "", f"Command: `{s['command']}`", "",
             "| layer | weights | AI gain % | accuracy drop pp |", "|---|---|---|---|"]
    lines += [f"| {r['layer']} | {r['weights']} | {r['ai_gain_pct']:.2f} | "
              f"{r['acc_drop_pp']:.2f} |" for r in s["rows"]]
    return lines + [""]


def _md_exhaustive(model, e) -> list[str]:
    lines = [f"### {model}: distance from the optimum (8 groups, 6,561 plans)", "",
             f"Command: `{e['command']}`; all plans evaluated in {e['evaluate_all_s']:.0f} s.",
             "", "Groups: " + "; ".join(f"g{i} = {', '.join(g)}"
                                       for i, g in enumerate(e["groups"])), "",
             "| lambda | optimum loss | greedy loss (rank, evaluations) | coordinate descent "
             "loss (rank, evaluations) |", "|---|---|---|---|"]
    for lam, v in e["lambdas"].items():
        cells = [lam, f"{v['optimum']['loss']:.4f}"]
        for m in ("greedy", "coordinate_descent"):
            cells.append(f"{v[m]['loss']:.4f} (#{v[m]['rank']} of 6561, "
                         f"{v[m]['evaluations']})")
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def render(out: Path) -> str:
    parts = ["# The AIQ paper's experiments on the shipped models", "",
             "Generated by `python scripts/paper_experiments.py markdown` from the JSON files in "
             f"`{out}`; every table names the command that produced its figures. Models: the "
             "shipped ResNet-20 and MobileNetV2 trained on Fashion-MNIST (docs/models.md); "
             "validation = 1,000 held-out training images, test = the 10,000-image test split; "
             "candidates fp32/int8/int4. Latencies are TVM time_evaluator medians on this "
             "machine (AMD EPYC Zen 3, 2 threads, AVX2 only), run under the bench lock.", ""]
    for model in ("resnet20", "mobilenet_v2"):
        s = _load(out, model, "search")
        if s:
            parts += _md_search(model, s, _load(out, model, "latency"))
        sens = _load(out, model, "sensitivity")
        if sens:
            parts += _md_sensitivity(model, sens)
        ex = _load(out, model, "exhaustive")
        if ex:
            parts += _md_exhaustive(model, ex)
    return "\n".join(parts)


def part_markdown(args) -> None:
    print(render(Path(args.out)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("part", choices=["search", "latency", "sensitivity", "exhaustive",
                                     "markdown"])
    ap.add_argument("--model", choices=["resnet20", "mobilenet_v2"], default="resnet20")
    ap.add_argument("--calib", type=int, default=512)
    ap.add_argument("--val", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--out", default="docs/paper")
    args = ap.parse_args()
    os.environ.setdefault("TVM_NUM_THREADS", "2")
    {"search": part_search, "latency": part_latency, "sensitivity": part_sensitivity,
     "exhaustive": part_exhaustive, "markdown": part_markdown}[args.part](args)


if __name__ == "__main__":
    main()
