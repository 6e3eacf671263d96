"""Session 49 (tried, not kept): depthwise kernels with fewer than LIMIT output elements
built without a parallel loop, the whole model in one process against the default.

    TVM_NUM_THREADS=2 python docs/runs/s49/ab_serial_dw.py MODEL PLAN BATCH LIMIT
"""
import os
import sys
from math import prod

import numpy as np
import torch
import tvm

sys.path.insert(0, "/work/main/scripts")
from profile_layers import _model_and_calibration  # noqa: E402

import aiq_tvm  # noqa: E402
from aiq_tvm.bench import Timer, round_orders  # noqa: E402
from aiq_tvm.targets.x86 import schedules as S  # noqa: E402

name, plan, bs, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
model, calib = _model_and_calibration(name, 224 if name.startswith("tv/") else 32, 32)
calib = np.asarray(calib)
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
orig = S.TilePlan.num_parallel


def patched(self, extents):
    if self.mode == "dw" and prod(extents) < limit:
        return 0
    return orig(self, extents)


variants = ["default", "serial_dw"]
builds = {}
for v in variants:
    S.TilePlan.num_parallel = patched if v == "serial_dw" else orig
    res = aiq_tvm.build(mod, params=params, plan=plan, calib_data=calib, micro_batch=None,
                        batch_size=bs)
    builds[v] = (res.vm(bs)["main"], tvm.runtime.tensor(res.example_input(bs)), res)
S.TilePlan.num_parallel = orig
ref = builds["default"][0](builds["default"][1]).numpy()
for v, (f, x, _) in builds.items():
    print(v, float(np.abs(f(x).numpy() - ref).max()))
timers = {v: Timer(lambda f=f, x=x: f(x)) for v, (f, x, _) in builds.items()}
times = {v: [] for v in variants}
for order in round_orders(variants, int(os.environ.get("ROUNDS", 16))):
    for v in order:
        times[v].append(timers[v](150))
base = np.asarray(times["default"])
for v in variants:
    r = base / np.asarray(times[v])
    print(f"{name} {plan} b{bs} {v}: {np.median(times[v]) * 1e3:.3f} ms, speed-up "
          f"{np.median(r):.3f} (p10 {np.percentile(r, 10):.3f} p90 {np.percentile(r, 90):.3f})")
