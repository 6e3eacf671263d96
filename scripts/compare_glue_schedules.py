"""One torchvision model built twice in one process: ScheduleGlue as of a git revision
against the checkout's, everything else the same; plain inference timed in alternating
rounds under the lock, then every kernel call isolated (``aiq_tvm.profiling.profile``).

Prints both medians, whether the outputs are identical, and the non-conv kernel calls whose
isolated times differ by more than 15 %::

    TVM_NUM_THREADS=2 python scripts/compare_glue_schedules.py --model shufflenet_v2_x1_0 \\
        --plan int8 --batch 8 --before 08f0439

Builds run without the lock (run the script under ``nice``); timing takes /work/bench.lock.
``--clock cpu`` times the inferences in process CPU time (with ``TVM_NUM_THREADS=1``: less
disturbed by other jobs on a shared host than the wall clock).
"""

from __future__ import annotations

import argparse
import fcntl
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LAYER_KERNELS = ("_int8", "_int4", "_fp32")  # AIQ conv/dense kernels: not glue


def schedule_glue_at(rev: str):
    """The ``schedule_glue_func`` of passes/schedule_glue.py at ``rev``."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:passes/schedule_glue.py"],
                         check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "schedule_glue_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("schedule_glue_before", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.schedule_glue_func


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="torchvision model name")
    ap.add_argument("--plan", default="int8", help="uniform precision")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--before", required=True, help="git revision of the 'before' ScheduleGlue")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--lock", default="/work/bench.lock")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="inference timer: wall clock or process CPU time")
    args = ap.parse_args()
    os.environ.setdefault("TVM_NUM_THREADS", "2")
    import torch
    import tvm

    import aiq_tvm
    from aiq_tvm.models import torchvision_zoo as zoo
    from aiq_tvm.passes import schedule_glue as glue
    from aiq_tvm.profiling import profile

    model = zoo.torchvision_model(args.model, size=224)
    calib = zoo.calibration_images(32, 224)
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
    after_fn, builds = glue.schedule_glue_func, {}
    for tag, fn in (("before", schedule_glue_at(args.before)), ("after", after_fn)):
        glue.schedule_glue_func = fn  # ScheduleGlue looks it up at call time
        res = aiq_tvm.build(mod, "llvm", params=params, plan=args.plan, calib_data=calib,
                            batch_size=args.batch, eval_batch_size=16, micro_batch=None)
        builds[tag] = (res, res.vm(args.batch))
    glue.schedule_glue_func = after_fn
    x = tvm.runtime.tensor(builds["after"][0].example_input(args.batch))
    same = np.array_equal(*(vm["main"](x).numpy() for _, vm in builds.values()))
    per_round = 10 if args.batch == 1 else 4
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    rounds: dict[str, list[float]] = {t: [] for t in builds}
    with open(args.lock, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for _, vm in builds.values():
            for _ in range(3):
                vm["main"](x)
        for _ in range(args.rounds):
            for tag, (_, vm) in builds.items():
                t0 = clock()
                for _ in range(per_round):
                    vm["main"](x)
                rounds[tag].append((clock() - t0) / per_round * 1e3)
        iso = {tag: profile(res, args.batch, repeat=9) for tag, (res, _) in builds.items()}
    b, a = (float(np.median(rounds[t])) for t in ("before", "after"))
    print(f"{args.model} {args.plan} batch {args.batch}: plain inference before {b:.3f} ms, "
          f"after {a:.3f} ms ({args.clock} clock, {os.environ['TVM_NUM_THREADS']} threads, medians "
          f"of {args.rounds} alternating rounds), outputs identical: "
          f"{same}; unscheduled glue after: {builds['after'][0].unscheduled_glue(args.batch)}")
    print(f"isolated sums: before {sum(u for _, u in iso['before']) / 1e3:.3f} ms, after "
          f"{sum(u for _, u in iso['after']) / 1e3:.3f} ms\n")
    print("| # | kernel | before us | after us |\n|---|---|---|---|")
    for i, ((name, ub), (_, ua)) in enumerate(zip(iso["before"], iso["after"], strict=True)):
        if name.endswith(LAYER_KERNELS) or max(ub, ua) < 10 or abs(ub - ua) < 0.15 * max(ub, ua):
            continue
        print(f"| {i} | {name} | {ub:.1f} | {ua:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
