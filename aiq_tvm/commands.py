"""The ``aiq-tvm search / sweep / build / bench`` commands (argument parsing is in cli.py).

Each command checks every output path before any work starts, loads MODEL and DATA
(:mod:`aiq_tvm.sources`, :mod:`aiq_tvm.datasources`), runs the build phases
(:mod:`aiq_tvm.phases`) with progress bars, and writes its files only when it succeeds: a
failed run leaves no empty output directory behind.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from .journal import JOURNAL_NAME, SearchJournal, digest
from .progress import Progress
from .sources import SourceError

__all__ = ["OutDir", "check_output_file", "cmd_search", "cmd_sweep", "cmd_build", "cmd_bench"]

REFERENCES = ("fp32", "int8", "int4")


# ----------------------------------------------------------------------------- outputs
class OutDir:
    """An output directory checked up front and created only when the first file is written."""

    def __init__(self, path: str):
        self.path = Path(path)
        _check_creatable(self.path, directory=True, what="--out")
        self.created = False

    def file(self, name: str) -> Path:
        if not self.path.exists():
            self.path.mkdir(parents=True)
            self.created = True
        return self.path / name

    def write(self, name: str, text: str) -> Path:
        path = self.file(name)
        path.write_text(text)
        return path

    def discard_if_empty(self) -> None:
        """After a failure: remove the directory if this run created it and left it empty."""
        if self.created and self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()


def check_output_file(path: str, what: str) -> Path:
    """A file we may write: not a directory, under an existing (or creatable) directory."""
    p = Path(path)
    if p.is_dir():
        raise SourceError(f"{what} {path} is a directory; give a file name")
    _check_creatable(p.parent if str(p.parent) else Path("."), directory=True,
                     what=f"the directory of {what} {path}")
    return p


def _check_creatable(path: Path, directory: bool, what: str) -> None:
    if path.exists():
        if directory and not path.is_dir():
            raise SourceError(f"{what} {path} exists and is not a directory")
        if not os.access(path, os.W_OK):
            raise SourceError(f"{what} {path} is not writable")
        return
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise SourceError(f"{what} {path} cannot be created: {parent} is a file")
    if not os.access(parent, os.W_OK):
        raise SourceError(f"{what} {path} cannot be created: {parent} is not writable")


# ----------------------------------------------------------------------------- shared steps
def _load(args, progress: Progress):
    from .datasources import load_data
    from .sources import load_model, parse_shape

    shape = parse_shape(args.input_shape) if args.input_shape else None
    model = load_model(args.model, weights=args.weights, input_shape=shape)
    data = None
    if getattr(args, "data", None):
        data = load_data(args.data, model.input_shape, calib=args.calib, val=args.val,
                         test=args.test, seed=args.seed, num_classes=model.num_outputs,
                         mean=_floats(args.mean, "--mean"), std=_floats(args.std, "--std"))
    return model, data


def _floats(text, what):
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise SourceError(f"{what} takes comma-separated numbers, got {text!r}") from None


def _context(model, data, args, progress: Progress, **config):
    from . import phases
    from .config import BuildConfig

    cfg = BuildConfig(target=args.target, batch_size=args.batch, seed=args.seed,
                      micro_batch=args.micro_batch, **config)
    ctx = phases.resolve(model.mod, model.params, None if data is None else data.calib,
                         None if data is None else data.val, cfg)
    ctx.progress = progress.phase_hook
    return ctx


def _search_config(args) -> dict:
    lam = args.lam if hasattr(args, "lam") else args.lams[0]
    return dict(lam=lam, search=args.search, objective=args.objective,
                budget_pp=args.budget, precisions=args.precisions,
                calibration=args.calib_method, speed_floor=args.speed_floor,
                speed_floor_timing=args.speed_floor_timing,
                weight_correction=args.weight_correction)


def _accuracy_on(ctx, calibration, x, y):
    """Accuracy of any plan on (x, y), through the search's switchable module."""
    from . import phases

    sub = dataclasses.replace(ctx, val=(x, y), progress=None)
    return phases._accuracy_oracle(sub, calibration, ctx.config.choices(ctx.cost.searchable))


def _journal_run(args, model, data, ctx) -> dict:
    """What the search's accuracies depend on: a journal of another run is not resumed."""
    return {"model": model.spec, "weights": digest(*(model.params[k] for k in
                                                       sorted(model.params))),
            "calib": digest(data.calib), "val": digest(*data.val), "target": str(ctx.target),
            "calibration": args.calib_method, "seed": args.seed,
            "weight_correction": args.weight_correction}


def _summary_head(args, argv, model, data, ctx) -> dict:
    return {"command": "aiq-tvm " + " ".join(argv), "date": datetime.date.today().isoformat(),
            "model": model.describe(), "data": None if data is None else data.describe(),
            "warnings": [] if data is None else list(data.warnings),
            "target": str(ctx.target), "preset": ctx.preset.name,
            "preset_assumed": list(ctx.preset.assumed), "batch": ctx.batch_size,
            "eval_batch": ctx.eval_batch_size}


def _warn_early(data) -> None:
    """Warnings about the accuracies, before the long steps (they are repeated at the end)."""
    for text in data.warnings:
        print(f"aiq-tvm: warning: {text}", file=sys.stderr, flush=True)


def _dump(obj) -> str:
    return json.dumps(obj, indent=2, default=float) + "\n"


# ----------------------------------------------------------------------------- search
def cmd_search(args, argv, progress: Progress) -> int:
    from . import phases
    from .plan import Plan

    out = OutDir(args.out)
    SearchJournal.check_start(out.path / JOURNAL_NAME, args.resume)
    t0 = time.perf_counter()
    try:
        model, data = _load(args, progress)
        _warn_early(data)
        ctx = _context(model, data, args, progress, **_search_config(args))
        journal = SearchJournal(out.path / JOURNAL_NAME, _journal_run(args, model, data, ctx),
                                args.resume)
        cal = phases.calibrate(ctx)
        plan, found = phases.search(ctx, cal, journal)
        progress.close()
        res = phases.finalize(ctx, plan, cal, found)
        summary = _summary_head(args, argv, model, data, ctx)
        summary.update(
            search=args.search, **{"lambda": args.lam}, objective=args.objective,
            budget_pp=args.budget if args.search == "budget" else None,
            precisions=list(ctx.config.precisions),
            accuracy_fp32=found.baseline.accuracy, accuracy=res.report.accuracy,
            search_accuracy=found.best.accuracy,
            ai_fp32=res.report.ai_fp32, ai=res.report.ai, ai_gain=res.report.ai_gain,
            search_s=found.wall_time_s, search_evaluations=found.evaluations,
            resumed_evaluations=journal.resumed)
        if data.test is not None:
            acc = _accuracy_on(ctx, cal, *data.test)
            summary.update(test_accuracy_fp32=acc(Plan.uniform("fp32").resolve(
                ctx.cost.searchable)), test_accuracy=res.evaluate(*data.test,
                                                                  ctx.eval_batch_size))
        summary["timings_s"] = dict(ctx.timings)
        summary["wall_s"] = time.perf_counter() - t0
        lines = _search_lines(summary)
        print()
        print(res.report)
        print()
        for line in lines:
            print(line)
        plan.save(out.file("plan.json"))
        if cal is not None:
            cal.save(out.file("calibration.json"))
        out.write("report.json", res.report.to_json() + "\n")
        out.write("report.md", _report_md(summary, lines, res))
        out.write("summary.json", _dump(summary))
        print(f"wrote {out.path}/{{plan,calibration,report,summary}}.json and report.md"
              + ("" if cal is None or not cal.hessians else
                 " (GPTQ's second moments: calibration.hessians.npz)"))
        return 0
    except BaseException:
        out.discard_if_empty()
        raise


def _pct(v) -> str:
    return f"{100 * v:.2f}%"


def _search_lines(s: dict) -> list[str]:
    lines = [f"AI: fp32 {s['ai_fp32']:.2f} -> plan {s['ai']:.2f} FLOP/B (x{s['ai_gain']:.3f})",
             f"validation accuracy ({s['data']['val_images']} images): fp32 "
             f"{_pct(s['accuracy_fp32'])} -> plan {_pct(s['accuracy'])}"]
    if "test_accuracy" in s:
        lines.append(f"test accuracy ({s['data']['test_images']} images): fp32 "
                     f"{_pct(s['test_accuracy_fp32'])} -> plan {_pct(s['test_accuracy'])}")
    resumed = f" ({s['resumed_evaluations']} from the journal)" if s["resumed_evaluations"] \
        else ""
    lines.append(f"search: {s['search']} (lambda {s['lambda']}), {s['search_evaluations']} "
                 f"plans measured{resumed} in {s['search_s']:.1f} s; total {s['wall_s']:.1f} s")
    return lines + [f"warning: {w}" for w in s["warnings"]]


def _report_md(summary, lines, res) -> str:
    m = summary["model"]
    out = [f"# AIQ search: {m['spec']} on {summary['data']['spec']}", "",
           f"Command: `TVM_NUM_THREADS={os.environ.get('TVM_NUM_THREADS', '')} "
           f"{summary['command']}`", "",
           f"Date: {summary['date']}; target `{summary['target']}`; roofline preset "
           f"`{summary['preset']}`.", "", "```", res.report.header(), "", *lines, "```", "",
           "Plan (JSON):", "", "```json", res.plan.to_json(), "```", "",
           "Per-layer report:", "", res.report.table(markdown=True), ""]
    return "\n".join(out)


# ----------------------------------------------------------------------------- sweep
SWEEP_ROUNDS = 7


def _plan_key(assignment) -> str:
    return json.dumps(assignment, sort_keys=True)


def _interleaved_latency(ctx, cal, plans, progress: Progress) -> dict[str, float]:
    """Milliseconds per distinct plan: each built once, then ``SWEEP_ROUNDS`` rounds that time
    every build in turn (in :func:`~aiq_tvm.bench.round_orders`' balanced order); the median
    of the rounds' medians.  Equal plans share one figure, and a slow spell of a shared host
    hits every plan alike instead of one of them."""
    from .bench import round_orders
    from .plan import Plan

    distinct = {_plan_key(p): p for p in plans}
    builds = {k: ctx.result(Plan.from_assignment(p), cal)
              for k, p in progress.bar(list(distinct.items()), desc="building plans")}
    rounds = {k: [] for k in builds}
    for order in progress.bar(round_orders(builds, SWEEP_ROUNDS), desc="benchmark rounds"):
        for k in order:  # no plan always timed right after the same one
            rounds[k].append(builds[k].benchmark(ctx.batch_size, repeat=5,
                                                 min_repeat_ms=50)["median_ms"])
    return {k: statistics.median(v) for k, v in rounds.items()}


def cmd_sweep(args, argv, progress: Progress) -> int:
    from . import phases, plots
    from .plan import Plan

    out = OutDir(args.out)
    SearchJournal.check_start(out.path / JOURNAL_NAME, args.resume)
    try:
        model, data = _load(args, progress)
        _warn_early(data)
        ctx = _context(model, data, args, progress, **_search_config(args))
        journal = SearchJournal(out.path / JOURNAL_NAME, _journal_run(args, model, data, ctx),
                                args.resume)
        cal = phases.calibrate(ctx)
        layers = ctx.cost.searchable
        points = []
        for lam in progress.bar(args.lams, desc="sweep points"):
            ctx.config = dataclasses.replace(ctx.config, lam=lam)
            plan, found = phases.search(ctx, cal, journal)
            progress.close("evaluation")
            points.append({"lambda": lam, "plan": plan.layers, "ai": ctx.cost.ai(
                plan.layers), "ai_gain": found.best.ai_norm, "accuracy": found.best.accuracy,
                "search_evaluations": found.evaluations, "search_s": found.wall_time_s})
        refs = {}
        acc_val = _accuracy_on(ctx, cal, *data.val)
        acc_test = _accuracy_on(ctx, cal, *data.test) if data.test is not None else None
        for p in REFERENCES:
            assignment = Plan.uniform(p).resolve(layers)
            if p not in ctx.config.choices(layers)[layers[0]]:
                print(f"uniform {p} is not among --precisions: not marked")
                continue
            refs[p] = {"ai": ctx.cost.ai(assignment), "accuracy": acc_val(assignment),
                       "plan": assignment}
        entries = [*points, *refs.values()]
        latency = _interleaved_latency(ctx, cal, [e["plan"] for e in entries], progress)
        for entry in entries:
            entry["latency_ms"] = latency[_plan_key(entry["plan"])]
            if acc_test is not None:
                entry["test_accuracy"] = acc_test(entry["plan"])
        pareto = {**_summary_head(args, argv, model, data, ctx),
                  "search": args.search, "objective": args.objective,
                  "precisions": list(ctx.config.precisions), "ai_fp32": ctx.cost.fp32_ai(),
                  "points": points, "references": refs,
                  "front_ai": plots.pareto_front([(p["ai"], p["accuracy"]) for p in points]),
                  "front_latency": plots.pareto_front(
                      [(-p["latency_ms"], p["accuracy"]) for p in points])}
        for pt in points:
            print(f"lambda {pt['lambda']:<5}: AI {pt['ai']:7.2f} FLOP/B (x{pt['ai_gain']:.2f}), "
                  f"val {_pct(pt['accuracy'])}"
                  + (f", test {_pct(pt['test_accuracy'])}" if "test_accuracy" in pt else "")
                  + f", {pt['latency_ms']:.3f} ms at batch {ctx.batch_size}, "
                  f"{pt['search_evaluations']} plans in {pt['search_s']:.1f} s")
        for p, r in refs.items():
            print(f"uniform {p:5}: AI {r['ai']:7.2f} FLOP/B, val {_pct(r['accuracy'])}"
                  + (f", test {_pct(r['test_accuracy'])}" if "test_accuracy" in r else "")
                  + f", {r['latency_ms']:.3f} ms")
        for text in pareto["warnings"]:
            print(f"warning: {text}")
        out.write("pareto.json", _dump(pareto))
        title = f"{model.name} on {data.spec}"
        plots.pareto_png(pareto, out.file("pareto.png"), title)
        mid = min(points, key=lambda pt: abs(pt["lambda"] - 0.9))
        plots.roofline_png(ctx.cost, ctx.preset, mid["plan"], out.file("roofline.png"),
                           f"{title}: plan of lambda {mid['lambda']}")
        plots.layers_png(ctx.cost, points, out.file("layers.png"), title)
        print(f"wrote {out.path}/pareto.json, pareto.png, roofline.png, layers.png")
        return 0
    except BaseException:
        out.discard_if_empty()
        raise


# ----------------------------------------------------------------------------- build
def resolve_plan_files(args) -> None:
    """``--plan`` may name ``aiq-tvm search``'s output directory (its plan.json is used), and
    without ``--calibration`` the calibration.json that search wrote beside the plan is used.
    Both choices are printed, so the build says which files it read."""
    plan = Path(args.plan)
    if plan.is_dir() and (plan / "plan.json").is_file():
        plan = plan / "plan.json"
        print(f"plan: {plan} (from the directory given to --plan)")
    args.plan = str(plan)
    beside = plan.parent / "calibration.json"
    if args.calibration is None and beside.is_file():
        args.calibration = str(beside)
        print(f"calibration: {beside} (beside the plan; --calibration to give another)")


def _check_calibration_given(ctx, plan_file: str) -> None:
    from . import phases
    from .calibrate import Calibration

    given = isinstance(ctx.config.calibration, Calibration) or ctx.calib_x is not None
    if not given and phases._needs_calibration(ctx):
        raise SourceError(f"plan {plan_file} quantizes activations, which needs their ranges: "
                          f"give --calibration calibration.json (aiq-tvm search writes it "
                          f"beside plan.json)")


def cmd_build(args, argv, progress: Progress) -> int:
    from . import phases
    from .calibrate import Calibration
    from .plan import Plan
    from .targets import capabilities

    target_file = check_output_file(args.output, "-o")
    resolve_plan_files(args)
    plan = Plan.load(args.plan)
    cal = Calibration.load(args.calibration) if args.calibration else None
    model, _ = _load(args, progress)
    config = {"plan": plan, "speed_floor": args.speed_floor,
              "speed_floor_timing": args.speed_floor_timing}
    if cal is not None:
        config["calibration"] = cal
    ctx = _context(model, None, args, progress, **config)
    _check_calibration_given(ctx, args.plan)
    cal = phases.calibrate(ctx)
    res = phases.finalize(ctx, plan, cal)
    caps = capabilities(res.target)
    kwargs = {}
    if not caps.host_runnable:
        arch = caps.triple.split("-", 1)[0] if caps.triple else ""
        cc = f"{caps.triple}-g++" if caps.triple else ""
        if not cc or shutil.which(cc) is None:
            raise SourceError(f"target {res.target} is not this machine's; exporting needs a "
                              f"cross compiler {cc or '(give the target an mtriple)'} on PATH "
                              f"(apt-get install g++-{arch or 'ARCH'}-linux-gnu)")
        kwargs["cc"] = cc
    written = res.export_library(str(target_file), ctx.batch_size,
                                 single_file=args.single_file, **kwargs)
    print(res.report)
    print(f"wrote {' and '.join(written)} (batch {ctx.batch_size}, target {res.target}"
          + (f", cross-compiled with {kwargs['cc']})" if kwargs else ")"))
    return 0


# ----------------------------------------------------------------------------- bench
def cmd_bench(args, argv, progress: Progress) -> int:
    from . import bench

    out = check_output_file(args.json, "--json") if args.json else None
    if args.plan:
        resolve_plan_files(args)
    model, data = _load(args, progress)
    rows = bench.run(model, data, args, progress)
    text = bench.table(rows)
    print(text)
    if out is not None:
        out.write_text(_dump({"command": "aiq-tvm " + " ".join(argv), "rows": rows}))
        print(f"wrote {out}")
    return 0
