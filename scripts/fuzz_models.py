"""Run random CNNs (tests/random_cnns.py) through import -> build -> run, fp32 and int8.

    TVM_NUM_THREADS=2 python scripts/fuzz_models.py --count 200 --out docs/fuzz.md
    TVM_NUM_THREADS=2 python scripts/fuzz_models.py --count 50 \
        --target '{"kind":"llvm","mcpu":"haswell"}'
    TVM_NUM_THREADS=2 python scripts/fuzz_models.py --profile wide --count 30
    TVM_NUM_THREADS=2 python scripts/fuzz_models.py --profile modern --frontend onnx-script

Each network is imported with ``aiq_tvm.from_torch`` (with ``--frontend``: exported to ONNX by
PyTorch and imported with ``aiq_tvm.from_onnx``; networks PyTorch cannot export are listed, not
run), built at fp32 and at int8 (calibrated on its own input) for ``--target`` (default: this
host; a target this host cannot run, such as aarch64, runs as a host build with that target's
numerics) and compared with torch: fp32 relative error must stay below 1e-4 and int8 below 0.1.
``--profile wide`` draws them at the sizes of real networks' middle stages (16-256 channels,
32-96 pixels) instead of small ones. Every failure is printed with its seed, the layers drawn
and the error, so ``--seeds N`` (with the same ``--profile``) reproduces it. The exit code is
the number of failing networks (capped at 100).

Long runs go in pieces: ``--journal FILE`` appends every network's row to a JSONL file as it
is checked and skips seeds already there, ``--minutes M`` stops after M minutes; run the same
command again to continue.  ``--out`` summarizes every row of the journal.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from random_cnns import (  # noqa: E402
    FP32_TOL,
    FRONTENDS,
    INT8_TOL,
    PROFILES,
    OnnxExportError,
    build_and_compare,
    random_cnn,
)


def check(seed: int, max_blocks: int, target: str = "llvm", profile: str = "small",
          frontend: str = "torch") -> dict:
    """Build and compare network ``seed``; returns its row for the table."""
    case = random_cnn(seed, max_blocks=max_blocks, profile=profile)
    row = {"seed": seed, "max_blocks": max_blocks, "target": target, "profile": profile,
           "frontend": frontend, "layers": case.describe(),
           "fp32": None, "int8": None, "error": ""}
    try:
        row.update(build_and_compare(case, target, frontend))
    except OnnxExportError as err:
        row["skipped"] = str(err)
    except Exception as err:  # noqa: BLE001 - a fuzzer reports every failure kind
        row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        row["trace"] = traceback.format_exc()
    return row


def skipped(row: dict) -> bool:
    """PyTorch could not export the network through the row's ONNX frontend."""
    return bool(row.get("skipped"))


def failed(row: dict) -> bool:
    # `not <` so that a NaN error counts as a failure
    return not skipped(row) and (bool(row["error"]) or not (row["fp32"] < FP32_TOL
                                                              and row["int8"] < INT8_TOL))


def load_journal(journal: Path | None) -> list[dict]:
    """The rows of a JSONL journal (none when there is no journal yet)."""
    if journal is None or not journal.exists():
        return []
    return [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]


def recorded_command(script: str, argv) -> str:
    """The command line a report records: the run's own TVM_NUM_THREADS (not an assumed
    one), the script and its arguments without ``--verbose``."""
    threads = os.environ.get("TVM_NUM_THREADS")
    return (f"TVM_NUM_THREADS={threads} " if threads else "") + f"python scripts/{script} " + \
        shlex.join(a for a in (argv or sys.argv[1:]) if a != "--verbose")


def _summary(rows: list[dict]) -> str:
    bad = [r for r in rows if failed(r)]
    fp32 = [r["fp32"] for r in rows if r["fp32"] is not None]
    int8 = [r["int8"] for r in rows if r["int8"] is not None]
    nan = float("nan")
    unexported = sum(skipped(r) for r in rows)
    not_run = f" ({unexported} that PyTorch could not export to ONNX not run)" if unexported \
        else ""
    return (f"{len(rows)} networks{not_run}: {len(bad)} failed; fp32 relative error max "
            f"{max(fp32, default=nan):.2e}; int8 relative error median "
            f"{np.median(int8) if int8 else nan:.4f}, max {max(int8, default=nan):.4f}")


def _markdown(rows: list[dict], command: str) -> str:
    seeds = sorted(r["seed"] for r in rows)
    lines = ["# Random CNN fuzzing", "",
             f"Command (run in pieces, same journal): `{command}`", "",
             f"Seeds {seeds[0]}..{seeds[-1]}" if seeds else "No seeds", "",
             _summary(rows), ""]
    bad = [r for r in rows if failed(r)]
    if bad:
        lines += ["| seed | layers | fp32 | int8 | error |", "|---|---|---|---|---|"]
        lines += [f"| {r['seed']} | {r['layers']} | {r['fp32']} | {r['int8']} | "
                  f"{r['error']} |" for r in sorted(bad, key=lambda r: r["seed"])]
    unexported = [r for r in rows if skipped(r)]
    if unexported:
        lines += ["", "Not run (PyTorch's exporter failed):", ""]
        lines += [f"- seed {r['seed']}: {r['skipped']}" for r in unexported]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100, help="networks to draw (seeds 0..count-1)")
    ap.add_argument("--first", type=int, default=0, help="first seed")
    ap.add_argument("--seeds", type=int, nargs="*", help="exact seeds (overrides --count)")
    ap.add_argument("--max-blocks", type=int, default=4, help="blocks after the stem, at most")
    ap.add_argument("--target", default="llvm",
                    help="build target: JSON dict, target string or preset name (default: "
                         "this host)")
    ap.add_argument("--profile", default="small", choices=sorted(PROFILES),
                    help="layer sizes to draw: small maps and channels (default) or the sizes "
                         "of real networks' middle stages")
    ap.add_argument("--frontend", default="torch", choices=FRONTENDS,
                    help="import through torch.export (default) or an ONNX file written by "
                         "PyTorch's TorchScript exporter (onnx-script) or its torch.export-based "
                         "one (onnx-dynamo)")
    ap.add_argument("--journal", type=Path, help="JSONL of checked networks (appended, resumed)")
    ap.add_argument("--minutes", type=float, help="stop starting new networks after this long")
    ap.add_argument("--out", type=Path, help="write a Markdown summary here")
    ap.add_argument("--verbose", action="store_true", help="print tracebacks of failures")
    args = ap.parse_args(argv)
    seeds = args.seeds if args.seeds else list(range(args.first, args.first + args.count))
    done = {r["seed"]: r for r in load_journal(args.journal)
            if r.get("max_blocks") == args.max_blocks
            and r.get("target", "llvm") == args.target
            and r.get("profile", "small") == args.profile
            and r.get("frontend", "torch") == args.frontend}
    rows, t0 = [done[s] for s in seeds if s in done], time.perf_counter()
    for seed in (s for s in seeds if s not in done):
        if args.minutes is not None and time.perf_counter() - t0 > 60 * args.minutes:
            print(f"stopped after {args.minutes} minutes; run again to continue", flush=True)
            break
        row = check(seed, args.max_blocks, args.target, args.profile, args.frontend)
        rows.append(row)
        if args.journal:
            with args.journal.open("a") as f:
                f.write(json.dumps({k: v for k, v in row.items() if k != "trace"}) + "\n")
        status = "FAIL" if failed(row) else "skip" if skipped(row) else "ok"
        errs = f"fp32 {row['fp32']:.1e} int8 {row['int8']:.3f}" if row["int8"] is not None \
            else row.get("skipped") or row["error"]
        print(f"{status:4} {row['layers']} | {errs}", flush=True)
        if args.verbose and row.get("trace"):
            print(row["trace"])
    print(f"{_summary(rows)} ({time.perf_counter() - t0:.0f} s this run)")
    if args.out:
        args.out.write_text(_markdown(rows, recorded_command("fuzz_models.py", argv)))
    return min(sum(failed(r) for r in rows), 100)


if __name__ == "__main__":
    sys.exit(main())
