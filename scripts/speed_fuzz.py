"""Low-bit speed on random CNNs: is int8 / int4 ever slower than FP32 for a target?

    TVM_NUM_THREADS=1 python scripts/speed_fuzz.py --target '{"kind":"llvm","mcpu":"haswell"}' \
        --count 20 --journal /tmp/sf_haswell.jsonl --out docs/runs/sf_haswell.md

``scripts/bench_isa.py`` times the two shipped models; a user's network has other shapes. This
draws the random networks of ``tests/random_cnns.py`` (``--profile wide``: 16-256 channels,
32-96 pixels, every conv kind, activations, residuals, concats and pools), builds each at the
uniform precisions for ``--target`` (and, with ``--speed-floor fp32``, each low-bit plan again
with that floor), times the builds in interleaved rounds on this machine (one thread, process
CPU time by default; medians over rounds, ratios within the network's run) and reports every
network whose low-bit build ran slower than its FP32 build by more than ``--tolerance``
(timing noise). Each build's output is also compared with torch's (relative error) and an
FP32 or int8 build beyond ``scripts/fuzz_models.py``'s bounds (1e-4, 0.1) is reported as
wrong, so a fast wrong build cannot pass (int4's error is reported, not bounded). A target
this machine cannot execute is an error: speed needs real runs.

Long runs go in pieces: ``--journal FILE`` appends every network's row and skips seeds
already there, ``--minutes M`` stops starting new networks after M minutes. The exit code
is the number of networks with a slower low-bit build, a wrong build or a failure (capped
at 100).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_isa import FLOOR_SEP, _time_all, variants  # noqa: E402
from fuzz_models import load_journal, recorded_command  # noqa: E402
from random_cnns import (  # noqa: E402
    FP32_TOL,
    INT8_TOL,
    PROFILES,
    random_cnn,
    relative_error,
)

from aiq_tvm.bench import CLOCKS  # noqa: E402


def _inputs(case, batch: int) -> np.ndarray:
    """``batch`` inputs of the network's shape, drawn from the network's seed."""
    _, c, h, w = case.x.shape
    return np.random.default_rng([case.seed, 2]).standard_normal((batch, c, h, w)).astype(
        np.float32)


def _builds(case, x, target, names):
    """Each variant built for ``target`` at ``len(x)`` and its relative error to torch."""
    import torch

    import aiq_tvm

    with torch.no_grad():
        ref = case.model(torch.from_numpy(x)).numpy().astype(np.float64)
    mod, params = aiq_tvm.from_torch(case.model, x[:2])
    builds, errors, moved, cal = {}, {}, {}, None
    for name in names:
        plan, _, floor = name.partition(FLOOR_SEP)
        b = aiq_tvm.build(mod, target, params=params, plan=plan, batch_size=len(x),
                          calib_data=None if plan == "fp32" else x,
                          calibration=cal or "percentile", speed_floor=floor or None)
        cal = b.calibration or cal
        builds[name] = b
        errors[name] = relative_error(b.run(x, len(x)), ref)
        moved[name] = [m["layer"] for m in b.report.floor if m["action"] == "moved"]
    return builds, errors, moved


def check(seed: int, args) -> dict:
    """Build, compare and time network ``seed``; returns its journal row."""
    case = random_cnn(seed, max_blocks=args.max_blocks, profile=args.profile)
    case = dataclasses.replace(case, x=_inputs(case, args.batch))  # described as timed
    names = variants(args.precisions, args.speed_floor)
    row = {"seed": seed, "target": args.target, "profile": args.profile,
           "max_blocks": args.max_blocks, "batch": args.batch, "layers": case.describe(),
           "ms": {}, "error": {}, "moved": {}, "failure": ""}
    try:
        x = case.x
        builds, row["error"], row["moved"] = _builds(case, x, args.target, names)
        # interleaved rounds, as bench_isa.py times its models (no gap between builds)
        row["ms"] = _time_all(builds, x, args.rounds, args.round_ms, 0, args.clock)
    except Exception as err:  # noqa: BLE001 - every failure kind is a row of the report
        row["failure"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        row["trace"] = traceback.format_exc()
    return row


def speedups(row: dict) -> dict[str, float]:
    """FP32's time over each low-bit variant's (> 1: the low-bit build is faster)."""
    ms = row["ms"]
    return {k: ms["fp32"] / v for k, v in ms.items() if k != "fp32"} if "fp32" in ms else {}


def slower(row: dict, tolerance: float) -> list[str]:
    """The low-bit variants of a row that ran slower than FP32 beyond ``tolerance``."""
    return [k for k, s in speedups(row).items() if s < 1 / (1 + tolerance)]


# Relative error to torch beyond which a build is wrong, per plan (fuzz_models.py's bounds).
BOUNDS = {"fp32": FP32_TOL, "int8": INT8_TOL}


def wrong(row: dict) -> list[str]:
    """The variants of a row whose output is further from torch's than their plan's bound."""
    return [k for k, e in row["error"].items()
            if not e < BOUNDS.get(k.partition(FLOOR_SEP)[0], float("inf"))]


def _summary(rows: list[dict], names: list[str], tolerance: float) -> list[str]:
    ok = [r for r in rows if not r["failure"]]
    lines = [f"{len(rows)} networks, {len(rows) - len(ok)} failed to build or run; "
             f"slower than FP32 by more than {100 * tolerance:.0f} %:"]
    for name in (n for n in names if n != "fp32"):
        s = [speedups(r)[name] for r in ok if name in r["ms"]]
        bad = [r["seed"] for r in ok if name in slower(r, tolerance)]
        if s:
            lines.append(f"- {name}: {len(bad)} of {len(s)} networks (seeds {bad or 'none'}); "
                         f"speedup over FP32 min {min(s):.2f}x, median {np.median(s):.2f}x, "
                         f"max {max(s):.2f}x")
    err = {n: max((r["error"][n] for r in ok if n in r["error"]), default=float("nan"))
           for n in names}
    lines.append("- largest relative error to torch: " + ", ".join(
        f"{n} {e:.2e}" for n, e in err.items()))
    bad = [r["seed"] for r in ok if wrong(r)]
    lines.append(f"- wrong (fp32 >= {FP32_TOL:g} or int8 >= {INT8_TOL:g} from torch): "
                 f"{len(bad)} networks (seeds {bad or 'none'})")
    return lines


def _markdown(rows, names, args, command: str) -> str:
    lines = ["# Low-bit speed on random CNNs", "", f"Command: `{command}`", "",
             f"Target `{args.target}`, batch {args.batch}, {args.rounds} interleaved rounds of "
             f"{args.round_ms:g} ms per build, {args.clock} clock, medians; speedup = FP32 "
             "time / the build's time.", "", *_summary(rows, names, args.tolerance), "",
             "| seed | layers | FP32 ms | " + " | ".join(f"{n} speedup" for n in names
                                                      if n != "fp32") + " | note |",
             "|---|---|---|" + "---|" * (len(names) - 1) + "---|"]
    for r in sorted(rows, key=lambda r: r["seed"]):
        s = speedups(r)
        cells = [f"{s[n]:.2f}x" if n in s else "" for n in names if n != "fp32"]
        note = r["failure"] or "; ".join(
            f"{n}: {len(m)} moved" for n, m in r["moved"].items() if m)
        fp32 = f"{r['ms']['fp32']:.3f}" if "fp32" in r["ms"] else ""
        lines.append(f"| {r['seed']} | {r['layers']} | {fp32} | " + " | ".join(cells) +
                     f" | {note} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from aiq_tvm.schemes import PRECISIONS
    from aiq_tvm.targets import capabilities, resolve_target

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="llvm", help="TVM target (string or JSON); must run here")
    ap.add_argument("--count", type=int, default=20, help="networks to draw (seeds first..)")
    ap.add_argument("--first", type=int, default=0, help="first seed")
    ap.add_argument("--seeds", type=int, nargs="*", help="exact seeds (overrides --count)")
    ap.add_argument("--profile", default="wide", choices=sorted(PROFILES),
                    help="layer sizes to draw from (tests/random_cnns.py)")
    ap.add_argument("--max-blocks", type=int, default=4, help="blocks after the stem, at most")
    ap.add_argument("--batch", type=int, default=8, help="batch size built and timed")
    ap.add_argument("--precisions", nargs="+", default=["fp32", "int8", "int4"],
                    choices=sorted(PRECISIONS), help="uniform plans to time (fp32 required)")
    ap.add_argument("--speed-floor", choices=["fp32"],
                    help="also time each low-bit plan with this speed floor")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    ap.add_argument("--round-ms", type=float, default=150.0, help="time per build per round")
    ap.add_argument("--clock", default="cpu", choices=sorted(CLOCKS),
                    help="cpu: process CPU time (time preempted by other jobs is not counted)")
    ap.add_argument("--tolerance", type=float, default=0.03,
                    help="a low-bit build counts as slower when FP32 is faster by more than this")
    ap.add_argument("--journal", type=Path, help="JSONL of checked networks (appended, resumed)")
    ap.add_argument("--minutes", type=float, help="stop starting new networks after this long")
    ap.add_argument("--out", type=Path, help="write a Markdown report here")
    ap.add_argument("--verbose", action="store_true", help="print tracebacks of failures")
    args = ap.parse_args(argv)
    if "fp32" not in args.precisions:
        ap.error("--precisions must include fp32: every speedup is over the FP32 build")
    if args.batch < 1 or args.rounds < 1:
        ap.error("--batch and --rounds must be at least 1")
    caps = capabilities(resolve_target(args.target)[0])
    if not caps.host_runnable:
        ap.error(f"this machine cannot execute code for {args.target} (it lacks "
                 f"{', '.join(caps.missing_on_host) or 'its architecture'}); speed needs real runs")
    names = variants(args.precisions, args.speed_floor)
    seeds = args.seeds if args.seeds else list(range(args.first, args.first + args.count))
    same = ("target", "profile", "max_blocks", "batch")
    done = {r["seed"]: r for r in load_journal(args.journal)
            if all(r.get(k) == getattr(args, k) for k in same)}
    rows, t0 = [done[s] for s in seeds if s in done], time.perf_counter()
    for seed in (s for s in seeds if s not in done):
        if args.minutes is not None and time.perf_counter() - t0 > 60 * args.minutes:
            print(f"stopped after {args.minutes} minutes; run again to continue", flush=True)
            break
        row = check(seed, args)
        rows.append(row)
        if args.journal:
            with args.journal.open("a") as f:
                f.write(json.dumps({k: v for k, v in row.items() if k != "trace"}) + "\n")
        s = speedups(row)
        text = row["failure"] or ", ".join(f"{n} {v:.2f}x" for n, v in s.items())
        flag = ("FAIL" if row["failure"] else "WRONG" if wrong(row)
                else "SLOW" if slower(row, args.tolerance) else "ok")
        print(f"{flag:4} {row['layers']} | FP32 {row['ms'].get('fp32', float('nan')):.3f} ms"
              f" | {text}", flush=True)
        if args.verbose and row.get("trace"):
            print(row["trace"])
    print("\n".join(_summary(rows, names, args.tolerance)))
    print(f"({time.perf_counter() - t0:.0f} s this run)")
    if args.out:
        args.out.write_text(_markdown(rows, names, args, recorded_command("speed_fuzz.py", argv)))
    return min(sum(bool(r["failure"] or wrong(r) or slower(r, args.tolerance)) for r in rows),
               100)


if __name__ == "__main__":
    sys.exit(main())
