"""Low-bit speed per ISA level: FP32 vs int8 vs int4 builds of one model for one target.

For every model the script builds the uniform-precision plans for ``--target``, checks their
validation accuracy, and times them in interleaved rounds (each round runs every variant for
``--round-ms``; medians over rounds; ratios within the run). A target this machine cannot
execute (e.g. AVX-512 code on an AVX2 host) is cross-built only: calibration and accuracy run
on a host build of the same plan with the deploy target's numerics (its weight codes, see
docs/isa.md), the timing columns say "not run", and the table counts the int8 dot
instructions in the built library's assembly.

``--clock cpu`` times with this process's CPU time instead of the wall clock (only with
``TVM_NUM_THREADS=1``): on a machine shared with other jobs, a preempted kernel does not count
as slow, so per-core kernel speed is measured even when the wall clock is dominated by load.

    TVM_NUM_THREADS=1 python scripts/bench_isa.py --target '{"kind":"llvm","mcpu":"haswell"}' \
        --batches 1 16 --clock cpu --out docs/performance_isa.md
    python scripts/bench_isa.py --target '{"kind":"llvm","mcpu":"skylake-avx512"}' \
        --batches 16 --out docs/performance_isa.md --append
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_models import _cpu, _locked, cosine  # noqa: E402

from aiq_tvm.bench import CLOCKS, Timer, round_orders  # noqa: E402

# Instructions counted in the assembly of a build (int8 dot paths and the fp32 FMA).
ASM_PATTERNS = {
    "vpdpbusd zmm": r"vpdpbusd\s+[^\n]*zmm",
    "vpdpbusd ymm (VEX)": r"\{vex\}\s*vpdpbusd\s+[^\n]*ymm",
    "vpmaddubsw zmm": r"vpmaddubsw\s+[^\n]*zmm",
    "vpmaddubsw ymm": r"vpmaddubsw\s+[^\n]*ymm",
    # SSSE3 (legacy encoding, no "v"; AVX-only cores such as Sandy Bridge use vpmaddubsw xmm)
    "pmaddubsw xmm": r"\bv?pmaddubsw\s+[^\n]*xmm",
    # int8 Winograd's int16 GEMM (vpmaddwd also follows every vpmaddubsw of the direct path)
    "vpmaddwd zmm": r"vpmaddwd\s+[^\n]*zmm",
    "vpmaddwd ymm": r"vpmaddwd\s+[^\n]*ymm",
    # SSE2: the direct int8 path of the x86-64 baseline (and every 128-bit widening step)
    "pmaddwd xmm": r"\bv?pmaddwd\s+[^\n]*xmm",
    "vpdpwssd zmm": r"vpdpwssd\s+[^\n]*zmm",
    "vfmadd ymm": r"vfmadd\w+\s+[^\n]*ymm",
    "vfmadd zmm": r"vfmadd\w+\s+[^\n]*zmm",
}


def parse_target(text: str):
    """A JSON dict, a classic ``llvm -mcpu=...`` string, a preset name or ``llvm``."""
    return json.loads(text) if text.lstrip().startswith("{") else text


def asm_counts(build, batch: int) -> dict[str, int]:
    """How often each of :data:`ASM_PATTERNS` occurs in the build's generated assembly."""
    mod = build.executable(batch).mod
    text = "".join(m.inspect_source("asm") for m in [mod, *mod.imports]
                   if m.kind in ("llvm", "static_library") or "llvm" in m.kind)
    return {k: len(re.findall(p, text)) for k, p in ASM_PATTERNS.items()}


def _model_and_data(name: str, n_val: int, image_size: int):
    """(torch model, calibration images, validation images, reference) of a shipped model
    (trained weights; the reference is the Fashion-MNIST labels) or of ``tv/NAME``: a
    torchvision model with seeded random weights at ``image_size``, whose reference is torch's
    own FP32 logits (random weights have no accuracy; the build's logits are compared with
    torch's by cosine similarity, as issue 9's check does)."""
    import torch

    from aiq_tvm import datasets, models

    if not name.startswith("tv/"):
        xc, _ = datasets.calibration_set(256)
        xv, yv = datasets.validation_set(n_val)
        return models.get_model(name, pretrained=True), xc, xv, yv
    from aiq_tvm.models import torchvision_zoo as zoo

    model = zoo.torchvision_model(name[3:], size=image_size)
    xc = zoo.calibration_images(32, image_size)
    xv, _ = zoo.validation_images(n_val, image_size)
    with torch.no_grad():
        yv = np.concatenate([model(torch.from_numpy(xv[i:i + 16])).numpy()
                             for i in range(0, len(xv), 16)])
    return model, xc, xv, yv


def variants(precisions, speed_floor: str | None) -> list[str]:
    """The builds of a run: each precision, then with a speed floor each precision other than
    FP32 again with it (named ``"int8 floor fp32"``)."""
    floored = [f"{p}{FLOOR_SEP}{speed_floor}" for p in precisions if p != "fp32"]
    return list(precisions) + (floored if speed_floor else [])


FLOOR_SEP = " floor "


def _build_all(name, model, target, precisions, xc, xv, yv, batch=None, floor_timing="model"):
    import torch

    import aiq_tvm

    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(xc[:2]))
    builds, acc, cal = {}, {}, None
    for prec in precisions:
        t0 = time.perf_counter()
        plan, _, floor = prec.partition(FLOOR_SEP)
        # The floor compares kernel times (modelled or measured) at the batch the run times.
        b = aiq_tvm.build(mod, target, params=params, plan=plan, calib_data=xc,
                          calibration=cal or "percentile", micro_batch=None,
                          speed_floor=floor or None, batch_size=batch if floor else None,
                          speed_floor_timing=floor_timing if floor else "model")
        cal = b.calibration or cal
        builds[prec] = b
        # On a target this machine cannot run, a host build with the deploy numerics.
        if yv.ndim == 2:  # torch's logits: the smallest cosine similarity over the images
            acc[prec] = cosine(b.run(xv, min(16, len(xv))), yv)
            what = f"min cosine to torch {acc[prec]:.4f}"
        else:
            acc[prec] = b.evaluate(xv, yv, batch_size=min(50, len(xv)))
            what = f"val acc {100 * acc[prec]:.2f} %"
        moved = [m["layer"] for m in b.report.floor if m["action"] == "moved"]
        kept = [m["layer"] for m in b.report.floor if m["action"] == "kept"]
        moves = (f", {len(moved)} layer(s) moved to {floor}: {', '.join(moved)}" if floor else "")
        if kept:
            moves += (f"; kept as given (the floored plan ran slower as a whole): "
                      f"{', '.join(kept)}")
        print(f"[{name}] {prec}: built in {time.perf_counter() - t0:.1f}s, {what}{moves}",
              flush=True)
    return builds, acc


def _time_all(builds, x, rounds, round_ms, gap_ms, clock, lock=None) -> dict[str, float]:
    import tvm

    timers = {}
    for key, b in builds.items():
        f = b.vm(x.shape[0])["main"]  # compiled here, outside the lock
        arg = tvm.runtime.tensor(x)
        timers[key] = Timer(lambda f=f, arg=arg: f(arg), clock)
    samples = {k: [] for k in timers}
    with _locked(lock):
        for order in round_orders(timers, rounds):  # no variant always after the same one
            for k in order:
                time.sleep(gap_ms / 1e3)
                samples[k].append(timers[k](round_ms))
    return {k: float(np.median(v)) * 1e3 for k, v in samples.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="llvm",
                    help="JSON target dict, 'llvm -mcpu=...' string, preset name or llvm")
    ap.add_argument("--models", nargs="+", default=["resnet20", "mobilenet_v2"],
                    help="shipped models, or tv/NAME: a torchvision model with random weights "
                         "at --image-size (accuracy = min cosine of the logits to torch's)")
    ap.add_argument("--image-size", type=int, default=224, help="input size of tv/ models")
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "int8", "int4"])
    ap.add_argument("--speed-floor", default=None, metavar="PRECISION",
                    help="also build every precision but fp32 with BuildConfig.speed_floor="
                         "PRECISION (layers the target's kernel model prices slower than at "
                         "PRECISION move to it), priced at the one --batches value")
    ap.add_argument("--speed-floor-timing", choices=["model", "measured"], default="model",
                    help="what --speed-floor compares: modelled kernel times, or the layer "
                         "kernels timed here (measured)")
    ap.add_argument("--val", type=int, default=None,
                    help="validation images for accuracy (default 1000; 64 for tv/ models)")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--round-ms", type=float, default=150.0)
    ap.add_argument("--gap-ms", type=float, default=50.0)
    ap.add_argument("--clock", choices=list(CLOCKS), default="wall",
                    help="wall clock, or this process's CPU time (needs TVM_NUM_THREADS=1)")
    ap.add_argument("--lock", default=None,
                    help="flock this file while timing (builds and accuracy runs unlocked)")
    ap.add_argument("--out", default=None, help="Markdown file for the results")
    ap.add_argument("--append", action="store_true",
                    help="add this run's section to --out instead of starting the page")
    args = ap.parse_args(argv)
    if "fp32" not in args.precisions:
        ap.error("--precisions must include fp32 (the ratios are against it)")
    if args.speed_floor and len(args.batches) != 1:
        ap.error(f"--speed-floor prices the layers at one batch size; give one --batches "
                 f"value, not {args.batches}")
    from aiq_tvm.schemes import PRECISIONS

    if args.speed_floor and args.speed_floor not in PRECISIONS:
        ap.error(f"--speed-floor {args.speed_floor!r} is not a precision; choose from "
                 f"{', '.join(PRECISIONS)}")
    builds_of = variants(args.precisions, args.speed_floor)

    threads = int(os.environ.setdefault("TVM_NUM_THREADS", "2"))
    if args.clock == "cpu" and threads != 1:
        ap.error("--clock cpu measures one thread's work: run with TVM_NUM_THREADS=1")
    from aiq_tvm.targets import capabilities, resolve_target

    target = parse_target(args.target)
    caps = capabilities(resolve_target(target)[0])
    print(f"target {args.target}: {caps.describe()}; runs here: {caps.host_runnable}",
          flush=True)
    rows = []
    for name in args.models:
        n_val = args.val or (64 if name.startswith("tv/") else 1000)
        model, xc, xv, yv = _model_and_data(name, n_val, args.image_size)
        builds, acc = _build_all(name, model, target, builds_of, xc, xv, yv, args.batches[0],
                                 args.speed_floor_timing)
        for bs in args.batches:
            if caps.host_runnable:
                x = np.ascontiguousarray(np.resize(xc, (bs, *xc.shape[1:])), np.float32)
                med = _time_all(builds, x, args.rounds, args.round_ms, args.gap_ms, args.clock,
                                args.lock)
            else:
                med = {}
            asm = {p: asm_counts(b, bs) for p, b in builds.items()}
            rows.append((name, bs, med, acc, asm))
            print(f"[{name} batch {bs}] ms: {med or 'not run (host lacks '}"
                  f"{'' if med else ', '.join(caps.missing_on_host) + ')'}", flush=True)
    table = format_table(rows, builds_of)
    print(table)
    if args.out:
        write_section(args, argv, caps, threads, table)
    return 0


PAGE_HEAD = """# int8 / int4 vs FP32 per x86 ISA level

Written by `scripts/bench_isa.py` (one section per run, the command above each table). Why each
ISA level takes its int8 path, and the 7-bit weights of `vpmaddubsw` targets:
[isa.md](isa.md).
"""


def write_section(args, argv, caps, threads: int, table: str) -> None:
    """Write (or with ``--append`` add) this run's section of the Markdown page."""
    words = [Path(sys.argv[0]).as_posix()] + (argv if argv is not None else sys.argv[1:])
    cmd = f"TVM_NUM_THREADS={threads} python " + " ".join(
        f"'{w}'" if " " in w or "{" in w else w for w in words)
    clock = ("wall-clock" if args.clock == "wall" else
             "process CPU time (one thread; time preempted by other jobs is not counted)")
    if caps.host_runnable:
        ran = (f"Medians of {args.rounds} interleaved rounds of {args.round_ms:.0f} ms per "
               f"variant (each round in the order of a Williams design: every variant right "
               f"after each other one equally often), {clock}; ratios are speedups over FP32 "
               f"within the run.")
    else:
        ran = ("**Not timed: this machine cannot execute code for this target** (it lacks "
               f"{', '.join(caps.missing_on_host)}); cross-built, accuracy from a host build "
               "with the target's numerics, instructions counted in the built library.")
    section = (f"## {caps.isa}: `{args.target}`, {clock if caps.host_runnable else 'cross'}"
               f"\n\nCommand: `{cmd}`\n\n{caps.describe()}. Machine: {_cpu()}, {threads} "
               f"threads, {datetime.date.today().isoformat()}. {_accuracy_text(args)} {ran}"
               f"\n\n{table}\n")
    out = Path(args.out)
    head = out.read_text() if args.append and out.exists() else PAGE_HEAD
    out.write_text(head.rstrip("\n") + "\n\n" + section)
    print(f"wrote {args.out}")


def _accuracy_text(args) -> str:
    """What the accuracy columns measure, for the models of the run."""
    parts = []
    if any(not m.startswith("tv/") for m in args.models):
        parts.append(f"top-1 on {args.val or 1000} validation images")
    if any(m.startswith("tv/") for m in args.models):
        parts.append(f"for tv/ models (random weights) the smallest cosine similarity of the "
                     f"logits to torch FP32's over {args.val or 64} images at "
                     f"{args.image_size} x {args.image_size}")
    return "Accuracy: " + "; ".join(parts) + "."


def format_table(rows, precisions) -> str:
    """Markdown table: times, speed-ups over FP32, accuracy, dot-instruction counts."""
    low = [p for p in precisions if p != "fp32"]
    tv = any(name.startswith("tv/") for name, *_ in rows)
    head = (["model", "batch"] + [f"{p} ms" for p in precisions]
            + [f"{p} vs fp32" for p in low]
            + [f"{p} acc %{' (tv/: min cos)' if tv else ''}" for p in precisions]
            + ["int8 dot instructions (int8 build)"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, bs, med, acc, asm in rows:
        times = [f"{med[p]:.3f}" if p in med else "not run" for p in precisions]
        ratios = [f"{med['fp32'] / med[p]:.2f}x" if p in med else "-" for p in low]
        accs = [f"{acc[p]:.4f}" if name.startswith("tv/") else f"{100 * acc[p]:.2f}"
                for p in precisions]
        dots = asm.get("int8", {})
        found = ", ".join(f"{k} x{v}" for k, v in dots.items() if v and "vfmadd" not in k)
        lines.append("| " + " | ".join([name, str(bs), *times, *ratios, *accs, found or "-"])
                     + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
