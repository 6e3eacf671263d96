"""``aiq-tvm``: AIQ on your model and your data from the command line.

    aiq-tvm search MODEL --data DATA --out DIR [--calib N] [--val N] [--lam L] [--search ...]
    aiq-tvm sweep MODEL --data DATA --lams 0.5,0.9,0.99 --out DIR
    aiq-tvm build MODEL --plan DIR/plan.json --calibration DIR/calibration.json -o model.so
        (writes model.so and its weights model.params; --single-file embeds them)
    aiq-tvm bench MODEL [--plan ...] [--batch 1,8] [--compare torch,onnxruntime]
    aiq-tvm run --model resnet20 --search greedy --lam 0.9
    aiq-tvm presets

MODEL is a shipped name (resnet20, mobilenet_v2), ``torchvision:<name>``, a ``.pt2`` file from
``torch.export.save`` or an ``.onnx`` file; DATA is ``fashion-mnist``, ``cifar10:<dir>``, a
``.npz`` with ``x``/``y`` (and optional ``x_test``/``y_test``) or an image folder (see
:mod:`aiq_tvm.sources` and :mod:`aiq_tvm.datasources`).  Bad input ends with one line on
stderr and exit code 2; Ctrl-C with one line and exit code 130.

``run`` imports the pretrained model, calibrates on a Fashion-MNIST calibration subset,
searches a plan on a validation subset (both carved from the training split), compiles it,
and prints the per-layer report, FP32 vs plan AI and validation accuracy, the search wall
time, test-split accuracy of both builds and, with ``--bench``, TVM runtime timings;
``--baselines int8,int4`` adds uniform-precision builds to the comparison.  Results go to
``--out`` as JSON (plan, calibration, report, summary), named
``<model>_<search>[_<objective>][_<precisions>]_<what>.json`` (the objective when it is not
``ai``, the candidate list when it is not all precisions).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

from .calibrate import CALIBRATION_METHODS, DEFAULT_CALIBRATION
from .config import FLOOR_TIMINGS
from .journal import JOURNAL_NAME
from .objectives import OBJECTIVES
from .schemes import PRECISIONS
from .search import SEARCH_METHODS
from .weight_correction import DEFAULT_WEIGHT_CORRECTION, WEIGHT_CORRECTIONS

MODELS = ("resnet20", "mobilenet_v2")


def _precisions(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in names if p not in PRECISIONS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"invalid precision(s) {bad or text!r}; choose from {', '.join(PRECISIONS)}")
    return names


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _micro_batch(text: str) -> int | str:
    if text in ("auto", "measure", "off"):
        return text
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected auto, measure, off or a positive integer "
                                         f"dividing the batch size, got {text!r}") from None


def _micro_batch_arg(p) -> None:
    p.add_argument("--micro-batch", type=_micro_batch, default=None,
                   metavar="{auto,measure,off,N}",
                   help="run each batch as sequential calls of N samples inside the built "
                   "module (N must divide --batch); auto: chosen from the plan's activation "
                   "and weight bytes and the target's LLC size; measure: the fastest of the "
                   "candidates timed on this machine; off (default): never split")


def _rpc_address(text: str) -> str:
    from .checks import check_remote

    try:
        return check_remote(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="aiq-tvm", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="calibrate, search, compile and report a shipped model")
    run.add_argument("--model", choices=MODELS, default="resnet20")
    run.add_argument("--search", choices=list(SEARCH_METHODS), default="greedy")
    run.add_argument("--lam", type=float, default=0.9, help="weight of AI in the loss")
    run.add_argument("--objective", choices=list(OBJECTIVES), default="ai",
                     help="what the loss rewards: arithmetic intensity (the paper), the "
                     "roofline-predicted speed-up, or the measured layer-kernel speed-up")
    run.add_argument("--budget", type=float, default=1.0,
                     help="accuracy budget in pp (search=budget)")
    _precisions_arg(run)
    run.add_argument("--calibration", choices=CALIBRATION_METHODS, default=DEFAULT_CALIBRATION)
    _weight_correction_arg(run)
    run.add_argument("--calib", type=_positive_int, default=512, help="calibration images")
    run.add_argument("--val", type=_positive_int, default=1000, help="validation images")
    run.add_argument("--test", type=_non_negative_int, default=10000,
                     help="test-split images for the final accuracy (0 to skip)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--target", default="llvm",
                     help="llvm (this machine), a preset name (aiq-tvm presets), a JSON target "
                     "or a target string ('llvm -mtriple=aarch64-linux-gnu -mattr=+neon')")
    run.add_argument("--batch", type=_positive_int, default=1,
                     help="batch size of the final build and of the measured objective's timing")
    _micro_batch_arg(run)
    _speed_floor_arg(run)
    run.add_argument("--baselines", type=_precisions, default=[],
                     help="also build these precisions uniformly (e.g. int8,int4) and report "
                     "their validation/test accuracy and, with --bench, their timings")
    run.add_argument("--bench", action="store_true",
                     help="also time FP32 and plan builds at batch 1 and 64")
    run.add_argument("--tune", metavar="DB", default=None,
                     help="meta-schedule-tune the plan's kernels into this JSON database "
                     "directory (reused by later runs; the faster of tuned and default is kept)")
    run.add_argument("--trials", type=_positive_int, default=64,
                     help="tuning trials per kernel the database does not know (with --tune)")
    run.add_argument("--rpc", metavar="HOST:PORT", type=_rpc_address, default=None,
                     help="TVM RPC device for every timing (--bench, --measure, "
                     "--objective measured): the build is uploaded and timed there")
    run.add_argument("--measure", action="store_true",
                     help="time every layer kernel and print it beside its roofline time")
    run.add_argument("--data-root", default=None, help="Fashion-MNIST IDX directory")
    run.add_argument("--out", default="results", help="directory for JSON outputs")
    run.add_argument("--markdown", default=None,
                     help="also write the summary and per-layer table to this Markdown file")
    pre = sub.add_parser("presets", help="list CPU presets and their roofline peaks, and the "
                         "preset a target gets (with what it assumes)")
    pre.add_argument("--target", default="llvm",
                     help="show the preset this target gets (default: this machine)")
    _add_model_commands(sub)
    return ap


def _lams(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        vals = []
    if not vals or any(not 0.0 <= v <= 1.0 for v in vals):
        raise argparse.ArgumentTypeError(f"expected comma-separated lambdas in [0, 1], got "
                                         f"{text!r}")
    return vals


def _lam(text: str) -> float:
    return _lams(text)[0] if "," not in text else _lams("x")[0]


def _batches(text: str) -> list[int]:
    return [_positive_int(v) for v in text.split(",") if v.strip()] or [_positive_int(text)]


def _frameworks(text: str) -> list[str]:
    from .bench import FRAMEWORKS

    names = [v.strip() for v in text.split(",") if v.strip()]
    bad = [n for n in names if n not in FRAMEWORKS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown framework(s) {bad}; choose from "
                                         f"{', '.join(FRAMEWORKS)}")
    return names


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _model_args(p, batch_default=1, batch_type=None) -> None:
    p.add_argument("model", metavar="MODEL",
                   help="resnet20 | mobilenet_v2 | torchvision:<name> | file.pt2 | file.onnx")
    p.add_argument("--weights", default=None,
                   help="state dict (torch.save(model.state_dict())) for a shipped or "
                   "torchvision model; torchvision models are randomly initialized without it")
    p.add_argument("--input-shape", default=None, metavar="C,H,W",
                   help="input shape without the batch, for models that leave it open "
                   "(torchvision models default to 3,224,224)")
    p.add_argument("--target", default="llvm",
                   help="llvm (this machine), a preset name (aiq-tvm presets), a JSON target")
    p.add_argument("--batch", type=batch_type or _positive_int, default=batch_default,
                   help="batch size of the build and of latency measurements")
    _micro_batch_arg(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _data_args(p, required=True) -> None:
    p.add_argument("--data", required=required, metavar="DATA",
                   help="fashion-mnist | cifar10:<dir> | file.npz | image folder")
    p.add_argument("--calib", type=_positive_int, default=512, help="calibration images")
    p.add_argument("--val", type=_positive_int, default=1000,
                   help="validation images (disjoint from the calibration images)")
    p.add_argument("--test", type=_non_negative_int, default=None,
                   help="test-split images to evaluate (default: all; 0: none)")
    p.add_argument("--mean", default=None, help="image folders: per-channel mean, e.g. "
                   "0.485,0.456,0.406 (default ImageNet's)")
    p.add_argument("--std", default=None, help="image folders: per-channel std")


def _search_args(p) -> None:
    p.add_argument("--search", choices=list(SEARCH_METHODS), default="greedy")
    p.add_argument("--budget", type=float, default=1.0,
                   help="accuracy budget in pp (search=budget)")
    p.add_argument("--objective", choices=list(OBJECTIVES), default="ai")
    _precisions_arg(p)
    p.add_argument("--calib-method", choices=CALIBRATION_METHODS, default=DEFAULT_CALIBRATION,
                   help="how activation ranges are taken from the calibration images")
    _weight_correction_arg(p)
    _speed_floor_arg(p)


def _weight_correction_arg(p) -> None:
    p.add_argument("--weight-correction", choices=WEIGHT_CORRECTIONS,
                   default=DEFAULT_WEIGHT_CORRECTION,
                   help="what is done to quantized weights before rounding: gptq "
                   "(error-compensating rounding on the calibration data), bias (bias "
                   "correction), bias+gptq or none (round to nearest)")


def _precisions_arg(p) -> None:
    p.add_argument("--precisions", type=_precisions, default=None,
                   help=f"comma-separated candidates from {','.join(PRECISIONS)} (default: "
                   "the target's, all where int8 pays; see docs/presets.md); without fp32 "
                   "every layer stays quantized (e.g. int8,int4: an int8/int4 mix)")


def _speed_floor_arg(p) -> None:
    p.add_argument("--speed-floor", choices=list(PRECISIONS), default=None, metavar="P",
                   help="no layer runs a precision whose modelled kernel time on --target "
                   "at --batch is above P's (e.g. int8: an int8/int4 plan never slower than "
                   f"uniform int8; choices: {', '.join(PRECISIONS)}; default: none)")
    p.add_argument("--speed-floor-timing", choices=list(FLOOR_TIMINGS), default="model",
                   help="what --speed-floor compares: the kernel library's modelled times "
                   "(model, the default) or the layer kernels timed at --batch after "
                   "calibration (measured: on this machine, or on --rpc where the command "
                   "has it)")


def _resume_arg(p) -> None:
    p.add_argument("--resume", action="store_true",
                   help=f"continue an interrupted search from {JOURNAL_NAME} in --out: plans "
                   "it holds are not evaluated again, and the search returns the plan an "
                   "uninterrupted one would")


def _add_model_commands(sub) -> None:
    s = sub.add_parser("search", help="search a plan for MODEL on DATA and write it to --out")
    _model_args(s)
    _data_args(s)
    _search_args(s)
    s.add_argument("--lam", type=_lam, default=0.9, help="weight of AI in the loss, in [0, 1]")
    s.add_argument("--out", required=True, help="directory for plan.json, calibration.json, "
                   f"report.json, report.md, summary.json, and {JOURNAL_NAME} (every plan "
                   "evaluated, written as the search goes)")
    _resume_arg(s)
    w = sub.add_parser("sweep", help="search at several lambdas; Pareto, roofline and layer "
                       "plots")
    _model_args(w)
    _data_args(w)
    _search_args(w)
    w.add_argument("--lams", type=_lams, default=[0.5, 0.9, 0.99],
                   help="comma-separated lambdas")
    w.add_argument("--out", required=True, help="directory for pareto.json, the PNGs and "
                   f"{JOURNAL_NAME}")
    _resume_arg(w)
    b = sub.add_parser("build", help="compile MODEL with a plan into a shared library")
    _model_args(b)
    b.add_argument("--plan", required=True, help="plan.json, or the directory aiq-tvm search "
                   "wrote it to")
    _speed_floor_arg(b)
    b.add_argument("--calibration", default=None,
                   help="calibration.json (needed when the plan quantizes activations; "
                   "default: the calibration.json beside the plan, if there is one)")
    b.add_argument("-o", "--output", required=True,
                   help="the .so to write (code; its weights go beside it, model.so -> "
                   "model.params; load both with aiq_tvm.load)")
    b.add_argument("--single-file", action="store_true",
                   help="embed the weights in the .so instead (tvm.runtime.load_module alone "
                   "loads it; loading takes several times the weights' memory)")
    r = sub.add_parser("bench", help="time TVM FP32 / int8 / plan beside PyTorch and ONNX "
                       "Runtime")
    _model_args(r, batch_default=[1, 8], batch_type=_batches)
    _data_args(r, required=False)
    r.add_argument("--plan", default=None, help="also time this plan.json (or the directory "
                   "aiq-tvm search wrote it to)")
    r.add_argument("--speed-floor", choices=list(PRECISIONS), default=None, metavar="P",
                   help="also time --plan with the layers whose modelled kernel time at each "
                   f"--batch is above P's moved to P (variant tvm-plan-floor-bN; choices: "
                   f"{', '.join(PRECISIONS)})")
    r.add_argument("--speed-floor-timing", choices=list(FLOOR_TIMINGS), default="model",
                   help="what --speed-floor compares: modelled kernel times (model) or the "
                   "layer kernels timed at each --batch (measured; on --rpc when given)")
    r.add_argument("--calibration", default=None, help="calibration.json for int8 and the plan "
                   "(default: the one beside --plan, else calibrated on --data)")
    r.add_argument("--compare", type=_frameworks, default=list(_frameworks("torch,onnxruntime")),
                   help="frameworks to time beside TVM: torch, onnxruntime (FP32 and INT8)")
    r.add_argument("--rpc", metavar="HOST:PORT", type=_rpc_address, default=None,
                   help="time the TVM builds on this TVM RPC server instead (PyTorch and ONNX "
                   "Runtime, local only, are then not run)")
    r.add_argument("--rounds", type=_positive_int, default=None,
                   help="timing rounds (default: at least 15, whole balanced designs: every "
                   "variant timed right after each other one equally often)")
    r.add_argument("--round-ms", type=float, default=150.0)
    r.add_argument("--gap-ms", type=float, default=100.0)
    r.add_argument("--json", default=None, help="also write the timings to this JSON file")


def _cmd_presets(target: str) -> int:
    from .targets import PRESETS, capabilities, default_precisions, resolve_target

    for p in PRESETS.values():
        print(p.describe())
    tgt, preset = resolve_target(target)  # a JSON target arrives as text
    print(f"\ntarget {tgt} gets:\n{preset.describe()}")
    cands, excluded = default_precisions(capabilities(tgt), preset)
    print(f"default precisions: {', '.join(cands)}"
          + "".join(f"\n  left out {p}: {why}" for p, why in excluded.items()))
    return 0


def _markdown(args, argv, res, summary, lines) -> str:
    cmd = "aiq-tvm " + " ".join(argv)
    out = [f"# AIQ on {args.model}", "",
           f"Command: `TVM_NUM_THREADS={os.environ['TVM_NUM_THREADS']} {cmd}`", "",
           f"Date: {datetime.date.today().isoformat()}; target `{res.target}`; roofline preset "
           f"`{res.preset.name}` ({res.preset.source}).", "", "```", res.report.header(), ""]
    out += lines
    out += ["```", "", "Plan (JSON):", "", "```json", res.plan.to_json(), "```", "",
            "Per-layer report:", "", res.report.table(markdown=True), ""]
    return "\n".join(out)


def _cmd_run(args, argv) -> int:
    from .commands import OutDir, check_output_file

    out = OutDir(args.out)  # every output path checked before any work
    markdown = check_output_file(args.markdown, "--markdown") if args.markdown else None
    import torch

    from .threads import unpin_tvm_threads

    os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))
    unpin_tvm_threads()  # before TVM starts its pool: --bench times in this process
    torch.set_num_threads(int(os.environ["TVM_NUM_THREADS"]))
    try:
        return _run_and_write(args, argv, out, markdown)
    except BaseException:
        out.discard_if_empty()  # a failed run leaves no empty --out directory
        raise


def _run_and_write(args, argv, out, markdown) -> int:
    from .api import build

    t0 = time.perf_counter()
    mod, params, xc, (xv, yv) = _run_inputs(args)
    res = _run_search(args, mod, params, xc, (xv, yv))
    summary = _run_summary(args, res, len(xv))
    lines = _Lines()
    _say_search_results(args, res, len(xv), lines)
    fp32 = None
    if args.test or args.bench:
        fp32 = build(mod, args.target, params=params, plan="fp32")
    uniform = _uniform_baselines(args, mod, params, xc, res)
    for p, b in uniform.items():
        acc = b.evaluate(xv, yv, 100)
        summary.setdefault("baselines", {})[p] = {"val_accuracy": acc}
        lines.say(f"uniform {p}: validation accuracy {100 * acc:.2f}%")
    if args.test:
        _run_test_split(args, fp32, res, uniform, summary, lines)
    if args.bench:
        _run_bench(args, fp32, res, uniform, summary, lines)
    _write_run(args, argv, out, markdown, res, summary, lines, t0)
    return 0


class _Lines(list):
    """The result lines of ``run``: printed, and kept for ``--markdown``."""

    def say(self, text: str) -> None:
        print(text)
        self.append(text)


def _run_inputs(args):
    """(Relax module, weights, calibration images, (validation images, labels)) of ``run``."""
    import torch

    from . import datasets, models
    from .frontend import from_torch

    model = models.get_model(args.model, pretrained=True)
    xc, _ = datasets.calibration_set(args.calib, seed=args.seed, root=args.data_root)
    xv, yv = datasets.validation_set(args.val, seed=args.seed, root=args.data_root)
    mod, params = from_torch(model, torch.from_numpy(xv[:2]))
    print(f"model {args.model}: {len(params)} weight tensors; calibration {len(xc)} and "
          f"validation {len(xv)} Fashion-MNIST training-split images (seed {args.seed})")
    return mod, params, xc, (xv, yv)


def _run_search(args, mod, params, xc, val):
    """Calibrate, search and compile the plan; print its report and the plan."""
    from .api import build
    from .profiling import measured_report

    res = build(mod, args.target, params=params, calib_data=xc, val_data=val,
                lam=args.lam, search=args.search, objective=args.objective,
                budget_pp=args.budget,
                precisions=args.precisions, calibration=args.calibration, seed=args.seed,
                weight_correction=args.weight_correction, batch_size=args.batch,
                speed_floor=args.speed_floor, speed_floor_timing=args.speed_floor_timing,
                micro_batch=args.micro_batch, tune=args.tune is not None, database=args.tune,
                tune_trials=args.trials, remote=args.rpc if _times_layers(args) else None,
                verbose=True)
    print()
    print(measured_report(res, remote=args.rpc) if args.measure else res.report)
    print()
    print("plan:", json.dumps(res.plan.layers))
    return res


def _times_layers(args) -> bool:
    """Whether the build times layer kernels (where --rpc then applies)."""
    floor_measured = args.speed_floor is not None and args.speed_floor_timing == "measured"
    return args.objective == "measured" or floor_measured


def _run_summary(args, res, val_images: int) -> dict:
    s = res.search
    summary = {
        "model": args.model, "search": args.search, "objective": args.objective,
        "lambda": args.lam,
        "budget_pp": args.budget if args.search == "budget" else None,
        "precisions": args.precisions or "target default", "target": str(res.target),
        "speed_floor": args.speed_floor, "speed_floor_timing": args.speed_floor_timing,
        "preset": res.preset.name, "preset_assumed": list(res.preset.assumed),
        "ai_fp32": res.report.ai_fp32, "ai_plan": res.report.ai,
        "ai_gain": res.report.ai_gain, "weight_correction": res.report.weight_correction,
        "val_images": val_images, "val_accuracy_fp32": s.baseline.accuracy,
        "val_accuracy_plan": res.report.accuracy, "val_accuracy_plan_search": s.best.accuracy,
        "search_evaluations": s.evaluations,
        "search_wall_s": s.wall_time_s, "timings_s": res.timings,
    }
    if res.tuning:
        summary["tuning"] = res.tuning
    return summary


def _say_search_results(args, res, val_images: int, lines: _Lines) -> None:
    s = res.search
    lines.say(f"AI: fp32 {res.report.ai_fp32:.2f} -> plan {res.report.ai:.2f} FLOP/B "
              f"(x{res.report.ai_gain:.3f})")
    lines.say(f"validation accuracy ({val_images} images): fp32 "
              f"{100 * s.baseline.accuracy:.2f}% -> plan {100 * res.report.accuracy:.2f}% "
              f"(search estimate {100 * s.best.accuracy:.2f}%)")
    lines.say(f"search: {args.search}, {s.evaluations} plans measured, {s.wall_time_s:.1f} s "
              f"(compile of all layer variants {res.timings.get('search_compile_s', 0):.1f} s, "
              f"calibration {res.timings.get('calibration_s', 0):.1f} s, "
              f"total build {res.timings['total_s']:.1f} s)")
    lines.say("plan: " + ", ".join(f"{k}={v}" for k, v in res.plan.layers.items()))


def _uniform_baselines(args, mod, params, xc, res) -> dict:
    """``--baselines``: one uniform-precision build per precision, with the plan's
    calibration."""
    from .api import build

    calibration = res.calibration if res.calibration is not None else args.calibration
    return {p: build(mod, args.target, params=params, plan=p, calib_data=xc,
                     calibration=calibration, batch_size=args.batch,
                     micro_batch=args.micro_batch)
            for p in args.baselines}


def _run_test_split(args, fp32, res, uniform: dict, summary: dict, lines: _Lines) -> None:
    """``--test N``: accuracy of FP32, the plan and the baselines on the test split."""
    from . import datasets

    xt, yt = datasets.fashion_mnist("test", root=args.data_root)
    xt, yt = xt[:args.test], yt[:args.test]
    acc32 = fp32.evaluate(xt, yt, 100)
    accq = res.evaluate(xt, yt, 100)
    summary.update(test_images=len(xt), test_accuracy_fp32=acc32, test_accuracy_plan=accq)
    lines.say(f"test accuracy ({len(xt)} images): fp32 {100 * acc32:.2f}% -> plan "
              f"{100 * accq:.2f}%")
    for p, b in uniform.items():
        acc = b.evaluate(xt, yt, 100)
        summary["baselines"][p]["test_accuracy"] = acc
        lines.say(f"uniform {p}: test accuracy {100 * acc:.2f}%")


def _run_bench(args, fp32, res, uniform: dict, summary: dict, lines: _Lines) -> None:
    """``--bench``: TVM runtime medians at batch 1 and 64 (FP32, plan, baselines)."""
    for bs in (1, 64):
        a, b = fp32.benchmark(bs, remote=args.rpc), res.benchmark(bs, remote=args.rpc)
        summary[f"bench_b{bs}"] = {"fp32_ms": a["median_ms"], "plan_ms": b["median_ms"]}
        line = (f"batch {bs}: fp32 {a['median_ms']:.3f} ms, plan {b['median_ms']:.3f} ms "
                f"(x{a['median_ms'] / b['median_ms']:.2f})")
        for p, u in uniform.items():
            ms = u.benchmark(bs, remote=args.rpc)["median_ms"]
            summary[f"bench_b{bs}"][f"{p}_ms"] = ms
            line += f", uniform {p} {ms:.3f} ms (x{a['median_ms'] / ms:.2f})"
        lines.say(line)


def _write_run(args, argv, out, markdown, res, summary: dict, lines: _Lines, t0: float) -> None:
    """Plan, calibration, report and summary JSON in ``--out`` (and ``--markdown``)."""
    stem = f"{args.model}_{args.search}" + ("" if args.objective == "ai" else f"_{args.objective}")
    if args.precisions is not None and list(args.precisions) != list(PRECISIONS):
        stem += "_" + "-".join(args.precisions)
    res.plan.save(out.file(f"{stem}_plan.json"))
    if res.calibration is not None:
        res.calibration.save(out.file(f"{stem}_calibration.json"))
    out.write(f"{stem}_report.json", res.report.to_json() + "\n")
    summary["wall_s"] = time.perf_counter() - t0
    out.write(f"{stem}_summary.json", json.dumps(summary, indent=2, default=float) + "\n")
    print(f"wrote {out.path}/{stem}_{{plan,calibration,report,summary}}.json "
          f"({summary['wall_s']:.0f} s in all)")
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)  # checked creatable up front
        markdown.write_text(_markdown(args, argv, res, summary, lines))
        print(f"wrote {markdown}")


_interrupted = []


def _on_sigint(signum, frame):
    # TVM turns a KeyboardInterrupt raised inside its C++ callbacks into a bare RuntimeError;
    # the flag tells main() that such an error was the user's Ctrl-C. A SIGINT while that
    # first interrupt unwinds is ignored: a second KeyboardInterrupt escaping main() would end
    # the process by SIGINT (exit -2) instead of the one line and 130.
    if _interrupted:
        return
    _interrupted.append(True)
    raise KeyboardInterrupt


def main(argv=None) -> int:
    import signal

    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        code = _run_reporting_errors(args, argv)
    finally:
        signal.signal(signal.SIGINT, previous)
        interrupted = bool(_interrupted)
        _interrupted.clear()
    if code == 130 or interrupted:
        # Printed only now, after the exception and its frames are gone: TVM objects they held
        # (a BlockBuilder mid-pass) log their destruction to stderr, which must come before
        # our one line, not after it.
        import gc

        gc.collect()
        print("aiq-tvm: interrupted", file=sys.stderr)
        return 130
    return code


def run() -> None:
    """The ``aiq-tvm`` console command (and ``python -m aiq_tvm``): :func:`main`, then exit with
    its code. After a Ctrl-C (130) the process leaves at once, its output flushed, without the
    interpreter's finalization: interrupted searches now and then ended by SIGINT (exit -2)
    after printing their line (1 in about 25 tries; cause not pinned down), and an
    interrupted run has nothing left to finalize."""
    code = main()
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)


def _run_reporting_errors(args, argv) -> int:
    """``_dispatch`` with every error as one stderr line and an exit code (130: Ctrl-C, which
    ``main`` reports)."""
    try:
        return _dispatch(args, argv)
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as err:
        if _interrupted:
            return 130
        print(f"aiq-tvm: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:
        if _interrupted:
            return 130
        if os.environ.get("AIQ_TVM_DEBUG"):
            raise
        print(f"aiq-tvm: internal error: {type(err).__name__}: {_one_line(err)} (set "
              "AIQ_TVM_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


def _one_line(err) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _dispatch(args, argv) -> int:
    if args.cmd == "presets":
        return _cmd_presets(args.target)
    if args.cmd == "run":
        return _cmd_run(args, argv)
    from . import commands
    from .progress import Progress

    os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))
    command = {"search": commands.cmd_search, "sweep": commands.cmd_sweep,
               "build": commands.cmd_build, "bench": commands.cmd_bench}[args.cmd]
    progress = Progress(quiet=args.quiet)
    try:
        return command(args, argv, progress)
    finally:
        progress.close()


if __name__ == "__main__":
    sys.exit(main())
