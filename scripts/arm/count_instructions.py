"""Executed aarch64 instructions per image of a model's builds, counted on the emulated board.

No Arm board is at hand, so aarch64 builds cannot be timed here; this measures what they
execute instead (:mod:`aiq_tvm.targets.arm.counting`: a qemu TCG plugin counts every executed
instruction of one thread). For each model, Arm ISA level (``+i8mm``, ``+dotprod``, plain
NEON) and plan (``fp32``, ``int8``, ``int4``, ``mixed``: every other quantized layer int4
between an int8 first and last layer; ``aiq``: the plan a user gets by default, the greedy
search at lambda 0.9 over the target's default precisions, with ``--val``
labelled validation images), it cross-builds on this host (calibration once per
model, on the host), exports one library with the weights embedded, runs it on the emulated
board (one warm-up run, then ``--runs`` counted runs), and prints instructions per image:
all of them, the model library's (the kernels), the multiply instructions among those
(``fmla`` / ``sdot`` / ``usdot`` / ``usmmla`` / ``smull``...), and the ratio of FP32's count
to each plan's on the same level. The board's output is compared with the host build of the
same plan (integer plans: bit for bit).

Counts are architectural and exact, not time: see the module's docstring and docs/arm.md.

    TVM_NUM_THREADS=2 python scripts/arm/count_instructions.py --models resnet20 mobilenet_v2 \\
        --jsonl counts.jsonl
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/: bench_models
sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/arm: check_models

from check_models import (  # noqa: E402
    emit,
    error_record,
    load_inputs,
    model_arguments,
    plan_builds,
    precision_counts,
    validation_data,
)

PLANS = ("fp32", "int8", "int4", "mixed", "aiq")
# Multiply(-accumulate) instructions of the kernels: FP32 FMA and the int8 families.
MULTIPLIES = ("fmla", "fmul", "sdot", "udot", "usdot", "sudot", "smmla", "usmmla", "smull",
              "smull2", "smlal", "smlal2")


def count_plan(res, x: np.ndarray, runs: int) -> dict:
    from aiq_tvm.targets.arm.counting import count_library

    with tempfile.TemporaryDirectory(prefix="aiq-count-") as tmp:
        lib = os.path.join(tmp, "model.so")
        res.export_library(lib, single_file=True)  # cross-linked, weights embedded
        counts = count_library(lib, x, runs=runs)
    host = res.run(x, len(x))
    board = counts.output.reshape(host.shape)
    per_image = counts.per_image()
    mult = {m: counts.mnemonics.get(m, 0.0) / len(x) for m in MULTIPLIES
            if counts.mnemonics.get(m)}
    kernels = sum(v for k, v in counts.functions.items() if k.endswith("_compute_"))
    return {"instructions": per_image["total"], "library": per_image["model library"],
            "runtime": per_image["TVM runtime"], "other": per_image["other"],
            "kernels": kernels / len(x), "multiplies": mult,
            "top_mnemonics": {k: v / len(x) for k, v in list(counts.mnemonics.items())[:12]},
            "bit_exact": bool(np.array_equal(board, host)),
            "max_rel_err": float(np.abs(board - host).max() / (np.abs(host).max() + 1e-30))}


def count_model(name: str, args) -> list[dict]:
    import torch

    import aiq_tvm

    model, xc, x = load_inputs(name, args.size, args.batch, args.calib)
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(x[:1]))
    val = validation_data(name, x.shape[-1], args.val) if "aiq" in args.plans else None
    records = []
    for level, plan_name, res, build_s in plan_builds(mod, params, xc, args.levels, args.plans,
                                                     args.batch, val):
        rec = {"model": name, "level": level, "plan": plan_name, "size": x.shape[-1],
               "batch": args.batch, "runs": args.runs}
        try:
            if isinstance(res, Exception):
                raise res
            rec["build_s"] = build_s
            rec["precisions"] = precision_counts(res.report.rows)
            rec["speed_floor"] = res.report.speed_floor
            t1 = time.perf_counter()
            rec.update(count_plan(res, x, args.runs))
            rec["board_s"] = time.perf_counter() - t1
            rec["status"] = "ok"
        except Exception as exc:  # one failing build must not hide the others
            rec.update(error_record(exc))
        emit(rec, args.jsonl)
        records.append(rec)
    return records


def _m(v: float) -> str:
    return f"{v / 1e6:.2f}"


def render(records: list[dict]) -> str:
    """One row per build; FP32's count over the plan's on the same model, level and batch."""
    fp32 = {(r["model"], r["level"], r["batch"]): r for r in records
            if r["status"] == "ok" and r["plan"] == "fp32"}
    head = ("| model | level | plan | batch | M instructions / image | model library | TVM "
            "runtime + other | multiply instructions (M / image) | fp32 / plan (all) | "
            "fp32 / plan (library) | board = host |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in records:
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | {r['level']} | {r['plan']} | {r['batch']} | "
                         f"{r['error'][:200]} | | | | | | |")
            continue
        base = fp32.get((r["model"], r["level"], r["batch"]))
        ratio_all = f"{base['instructions'] / r['instructions']:.2f}x" if base else ""
        ratio_lib = f"{base['library'] / r['library']:.2f}x" if base else ""
        mult = ", ".join(f"{k} {_m(v)}" for k, v in r["multiplies"].items())
        same = ("bit for bit" if r["bit_exact"] else f"rel. err {r['max_rel_err']:.1e}")
        lines.append(
            f"| {r['model']} | {r['level']} | {r['plan']} | {r['batch']} | "
            f"{_m(r['instructions'])} | {_m(r['library'])} | "
            f"{_m(r['runtime'] + r['other'])} | {mult} | {ratio_all} | {ratio_lib} | {same} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = model_arguments(__doc__, PLANS)
    ap.add_argument("--batch", type=int, default=1, help="images per run")
    ap.add_argument("--runs", type=int, default=2, help="counted runs after the warm-up")
    ap.add_argument("--val", type=int, default=200,
                    help="labelled validation images of the aiq plan's search")
    args = ap.parse_args(argv)
    if args.render:
        print(render([json.loads(line) for p in args.render for line in open(p)]))
        return 0
    if not args.models:
        ap.error("give --models (or --render)")
    if args.runs < 1 or args.batch < 1:
        ap.error("--runs and --batch must be >= 1")
    records = []
    for name in args.models:
        records += count_model(name, args)
    print(render(records))
    return 1 if any(r["status"] != "ok" for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
