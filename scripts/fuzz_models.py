"""Run random CNNs (tests/random_cnns.py) through import -> build -> run, fp32 and int8.

    TVM_NUM_THREADS=2 python scripts/fuzz_models.py --count 200 --out docs/fuzz.md

Each network is imported with ``aiq_tvm.from_torch``, built at fp32 and at int8 (calibrated on
its own input) and compared with torch: fp32 relative error must stay below 1e-4 and int8
below 0.1. Every failure is printed with its seed, the layers drawn and the error, so
``--seeds N`` reproduces it. The exit code is the number of failing networks (capped at 100).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from random_cnns import random_cnn, relative_error  # noqa: E402

import aiq_tvm  # noqa: E402

FP32_TOL = 1e-4
INT8_TOL = 0.1


def check(seed: int) -> dict:
    """Build and compare network ``seed``; returns its row for the table."""
    case = random_cnn(seed)
    row = {"seed": seed, "layers": case.describe(), "fp32": None, "int8": None, "error": ""}
    try:
        with torch.no_grad():
            ref = case.model(torch.from_numpy(case.x)).numpy().astype(np.float64)
        mod, params = aiq_tvm.from_torch(case.model, case.x)
        n = len(case.x)
        fp32 = aiq_tvm.build(mod, params=params, plan="fp32", batch_size=n)
        row["fp32"] = relative_error(fp32.run(case.x), ref)
        int8 = aiq_tvm.build(mod, params=params, plan="int8", calib_data=case.x, batch_size=n)
        row["int8"] = relative_error(int8.run(case.x), ref)
    except Exception as err:  # noqa: BLE001 - a fuzzer reports every failure kind
        row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        row["trace"] = traceback.format_exc()
    return row


def failed(row: dict) -> bool:
    return bool(row["error"]) or row["fp32"] >= FP32_TOL or row["int8"] >= INT8_TOL


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100, help="networks to draw (seeds 0..count-1)")
    ap.add_argument("--first", type=int, default=0, help="first seed")
    ap.add_argument("--seeds", type=int, nargs="*", help="exact seeds (overrides --count)")
    ap.add_argument("--out", type=Path, help="write a Markdown summary here")
    ap.add_argument("--verbose", action="store_true", help="print tracebacks of failures")
    args = ap.parse_args(argv)
    seeds = args.seeds if args.seeds else list(range(args.first, args.first + args.count))
    rows, t0 = [], time.perf_counter()
    for seed in seeds:
        row = check(seed)
        rows.append(row)
        status = "FAIL" if failed(row) else "ok"
        errs = f"fp32 {row['fp32']:.1e} int8 {row['int8']:.3f}" if row["int8"] is not None \
            else row["error"]
        print(f"{status:4} {row['layers']} | {errs}", flush=True)
        if args.verbose and row.get("trace"):
            print(row["trace"])
    bad = [r for r in rows if failed(r)]
    fp32_max = max((r["fp32"] for r in rows if r["fp32"] is not None), default=float("nan"))
    int8 = [r["int8"] for r in rows if r["int8"] is not None]
    summary = (f"{len(rows)} networks in {time.perf_counter() - t0:.0f} s: {len(bad)} failed; "
               f"max fp32 relative error {fp32_max:.2e}; int8 relative error median "
               f"{np.median(int8) if int8 else float('nan'):.4f}, max "
               f"{max(int8, default=float('nan')):.4f}")
    print(summary)
    if args.out:
        lines = ["# Random CNN fuzzing", "", "Command: `TVM_NUM_THREADS=2 python "
                 f"scripts/fuzz_models.py {' '.join(argv or sys.argv[1:])}`", "", summary, ""]
        if bad:
            lines += ["| seed | layers | fp32 | int8 | error |", "|---|---|---|---|---|"]
            lines += [f"| {r['seed']} | {r['layers']} | {r['fp32']} | {r['int8']} | "
                      f"{r['error']} |" for r in bad]
        args.out.write_text("\n".join(lines) + "\n")
    return min(len(bad), 100)


if __name__ == "__main__":
    sys.exit(main())
