"""Whole-model A/B in one process, session 50: integer kernels whose accumulators start at
minus the zero-point correction where conv2d._corr_in_acc's rule puts them (constant
acc_init; INIT_SWITCH=1: wherever it applies) against accumulators starting at 0 and the
correction subtracted in the epilogue (AIQ_CORR_IN_ACC=0).

    TVM_NUM_THREADS=2 python docs/runs/s50/ab_corr.py MODEL PLAN BATCH
    TARGET='{"kind":"llvm","mcpu":"skylake-avx512"}' TVM_NUM_THREADS=1 python ... \\
        mobilenet_v2 int8 16

Alternating rounds of 150 ms in a Williams order (ROUNDS, default 16), CPU clock with one
thread; per-round speed-up of "init" over "subtract", median (p10, p90); outputs compared."""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, "/work/main/scripts")
import tvm  # noqa: E402
from profile_layers import _model_and_calibration  # noqa: E402

import aiq_tvm  # noqa: E402
from aiq_tvm.bench import Timer, round_orders  # noqa: E402

name, plan, bs = sys.argv[1], sys.argv[2], int(sys.argv[3])
model, calib = _model_and_calibration(name, 224 if name.startswith("tv/") else 32, 32)
calib = np.asarray(calib)
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
builds = {}
for v in ("subtract", "init"):
    if v == "init" and os.environ.get("INIT_SWITCH"):  # e.g. 1: wherever it applies
        os.environ["AIQ_CORR_IN_ACC"] = os.environ["INIT_SWITCH"]
    elif v == "init":  # the rule (conv2d._corr_in_acc)
        os.environ.pop("AIQ_CORR_IN_ACC", None)
    else:
        os.environ["AIQ_CORR_IN_ACC"] = "0"
    res = aiq_tvm.build(mod, os.environ.get("TARGET", "llvm"), params=params, plan=plan,
                        calib_data=calib, batch_size=bs)
    builds[v] = (res.vm(bs)["main"], tvm.runtime.tensor(res.example_input(bs)))
ref = builds["subtract"][0](builds["subtract"][1]).numpy()
out = builds["init"][0](builds["init"][1]).numpy()
print(f"max |y_init - y_subtract| = {float(np.abs(out - ref).max()):.2e}")
clock = "cpu" if os.environ.get("TVM_NUM_THREADS") == "1" else "wall"
timers = {v: Timer(lambda f=f, x=x: f(x), clock) for v, (f, x) in builds.items()}
times = {v: [] for v in builds}
for order in round_orders(list(builds), int(os.environ.get("ROUNDS", 16))):
    for v in order:
        times[v].append(timers[v](150))
r = np.asarray(times["subtract"]) / np.asarray(times["init"])
print(f"{name} {plan} b{bs}: subtract {np.median(times['subtract']) * 1e3:.3f} ms, init "
      f"{np.median(times['init']) * 1e3:.3f} ms, speed-up {np.median(r):.3f} "
      f"(p10 {np.percentile(r, 10):.3f}, p90 {np.percentile(r, 90):.3f})")
