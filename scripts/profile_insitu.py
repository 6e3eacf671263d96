"""Kernel times inside real inferences beside the isolated, hot-cache ones.

``scripts/profile_layers.py`` (``aiq_tvm.profiling.profile``) times every kernel call on its
own, repeated, so its weights and input stay in cache. This script also times each call
inside consecutive whole inferences (a VM instrument records the time between the call's
start and end): a call much slower in situ pays for cold weights or activations, and the
plain loop's time against the in-situ sum shows the VM's own overhead. Prints the plain
inference time, the in-situ and isolated sums, then one line per call with the bytes of its
arguments (every input read once and the output written once: a lower bound on its memory
traffic) and the isolated rate in GB/s, which flags a memory-bound kernel (a transpose, a
pooling, a residual add) running far below a streaming copy. ``--cold MB`` adds a column of
each call timed inside inferences right after the CPU wrote ``MB`` megabytes (more than the
last-level cache): what a call costs when its weights and input come from memory. Run under
the lock::

    TVM_NUM_THREADS=2 flock /work/bench.lock python scripts/profile_insitu.py \
        --model resnet50 --plan int8 --batch 1 [--cold 64]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _nbytes(arg) -> int:
    shape = getattr(arg, "shape", None)
    if shape is None:
        return 0
    dtype = np.dtype(str(arg.dtype)) if str(arg.dtype) != "bool" else np.dtype(bool)
    return int(np.prod([int(d) for d in shape])) * dtype.itemsize


def _call_times(vm, x, runs: int, before_call=None
                ) -> tuple[list[str], list[float], list[float]]:
    """(call names, median us per kernel call, seconds per inference) of ``runs`` inferences
    of the VM's ``main``, each call timed by the VM's instrument right after
    ``before_call()`` (if given) ran."""
    start = [0.0]
    rec: list = []

    def instrument(func, name, before_run, ret_value, *args):
        if not str(name).startswith("vm."):
            if before_run:
                if before_call is not None:
                    before_call()
                start[0] = time.perf_counter()
            else:
                rec.append((str(name), time.perf_counter() - start[0]))
        return 0

    vm.set_instrument(instrument)
    per_run, totals = [], []
    for _ in range(runs):
        rec.clear()
        t0 = time.perf_counter()
        vm["main"](x)
        totals.append(time.perf_counter() - t0)
        per_run.append(list(rec))
    names = [n for n, _ in per_run[0]]
    us = [float(np.median([r[i][1] for r in per_run])) * 1e6 for i in range(len(names))]
    return names, us, totals


def insitu_times(vm, x, runs: int
                 ) -> tuple[list[str], list[float], float, float, list[int]]:
    """(call names, median in-situ us per call, plain ms, instrumented ms, bytes of each
    call's arguments) of ``runs`` inferences of the VM's ``main``."""
    f = vm["main"]
    for _ in range(5):
        f(x)
    t0 = time.perf_counter()
    for _ in range(runs):
        f(x)
    plain = (time.perf_counter() - t0) / runs * 1e3
    sizes: list[int] = []

    def record_sizes(func, name, before_run, ret_value, *args):
        if before_run and not str(name).startswith("vm."):
            sizes.append(sum(_nbytes(a) for a in args))
        return 0

    vm.set_instrument(record_sizes)
    f(x)
    names, us, totals = _call_times(vm, x, runs)
    return names, us, plain, float(np.median(totals)) * 1e3, sizes


def cold_times(vm, x, runs: int, evict_mb: float) -> list[float]:
    """Median us per kernel call of ``runs`` inferences, each call timed right after
    ``evict_mb`` megabytes were written (evicting the caches)."""
    junk = np.zeros(max(1, int(evict_mb * 2**20) // 4), np.float32)
    return _call_times(vm, x, runs, lambda: np.add(junk, 1.0, out=junk))[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet50",
                    help="shipped model (resnet20, mobilenet_v2) or torchvision model name "
                         "(tv/NAME for torchvision's mobilenet_v2), or tvseg/NAME for a "
                         "torchvision segmentation model")
    ap.add_argument("--target", default="llvm",
                    help="JSON target dict, 'llvm -mcpu=...' string, preset name or llvm "
                         "(a target this host can execute)")
    ap.add_argument("--size", type=int, default=224, help="input size of torchvision models")
    ap.add_argument("--plan", default="int8",
                    help="uniform precision, or a plan JSON file (aiq_tvm.Plan.save)")
    ap.add_argument("--speed-floor", default=None, metavar="PRECISION",
                    help="BuildConfig.speed_floor: layers the target's kernel model prices "
                         "slower than at this precision move to it (e.g. fp32)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--cold", type=float, default=0.0, metavar="MB",
                    help="also time each call after writing MB megabytes (0: off)")
    args = ap.parse_args()
    if args.cold < 0:
        ap.error(f"--cold must be >= 0 megabytes, got {args.cold}")
    os.environ.setdefault("TVM_NUM_THREADS", "2")
    import torch
    import tvm
    from profile_layers import _model_and_calibration

    import aiq_tvm
    from aiq_tvm.profiling import profile

    model, calib = _model_and_calibration(args.model, args.size, 32)
    calib = np.asarray(calib)
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
    # build() resolves the target text (JSON dict text, target string or preset name)
    plan = aiq_tvm.Plan.load(args.plan) if args.plan.endswith(".json") else args.plan
    res = aiq_tvm.build(mod, args.target, params=params, plan=plan, calib_data=calib,
                        batch_size=args.batch, eval_batch_size=16, micro_batch=None,
                        speed_floor=args.speed_floor)
    vm = res.vm(args.batch)  # weights bound: vm["main"](x)
    x = tvm.runtime.tensor(res.example_input(args.batch))
    names, insitu, plain, instrumented, sizes = insitu_times(vm, x, args.runs)
    cold = cold_times(vm, x, args.runs, args.cold) if args.cold else None
    iso = profile(res, args.batch, repeat=9)
    cold_sum = f", cold sum {sum(cold) / 1e3:.3f} ms ({args.cold:g} MB written before each " \
        "call)" if cold else ""
    floor = f" (speed floor {args.speed_floor})" if args.speed_floor else ""
    print(f"{args.model} {args.plan}{floor} batch {args.batch}: plain inference {plain:.3f} ms, "
          f"instrumented {instrumented:.3f} ms, in-situ sum {sum(insitu) / 1e3:.3f} ms, "
          f"isolated sum {sum(u for _, u in iso) / 1e3:.3f} ms{cold_sum}\n")
    cold_head = ("cold us | ", "---|") if cold else ("", "")
    print(f"| # | kernel | in situ us | {cold_head[0]}isolated us | ratio | MB | isolated GB/s |\n"
          f"|---|---|---|{cold_head[1]}---|---|---|---|")
    for i, (name, us) in enumerate(zip(names, insitu, strict=True)):
        iso_us = iso[i][1] if i < len(iso) else float("nan")
        cold_us = f"{cold[i]:.1f} | " if cold else ""
        print(f"| {i} | {name} | {us:.1f} | {cold_us}{iso_us:.1f} | {us / iso_us:.2f} | "
              f"{sizes[i] / 1e6:.3f} | {sizes[i] / iso_us / 1e3:.1f} |")


if __name__ == "__main__":
    main()
