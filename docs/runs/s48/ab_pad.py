"""Whole-model A/B in one process, session 48: FuseTransposeIntoPad (the first layer's padded
copy reads the NCHW input; no transpose kernel) against the pipeline without it.

    TVM_NUM_THREADS=2 python docs/runs/s48/ab_pad.py MODEL PLAN BATCH

Alternating rounds of 150 ms in a Williams order (ROUNDS, default 16); per-round speed-up over
"without", median (p10, p90)."""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, "/work/main/scripts")
import tvm  # noqa: E402
from profile_layers import _model_and_calibration  # noqa: E402

import aiq_tvm  # noqa: E402
import aiq_tvm.pipeline as pl  # noqa: E402
from aiq_tvm.bench import Timer, round_orders  # noqa: E402

name, plan, bs = sys.argv[1], sys.argv[2], int(sys.argv[3])
model, calib = _model_and_calibration(name, 224 if name.startswith("tv/") else 32, 32)
calib = np.asarray(calib)
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
fused_pass = pl.FuseTransposeIntoPad
variants = ["without", "with"]
builds = {}
for v in variants:
    pl.FuseTransposeIntoPad = fused_pass if v == "with" else (
        lambda: tvm.transform.Sequential([]))
    res = aiq_tvm.build(mod, params=params, plan=plan, calib_data=calib, micro_batch=None,
                        batch_size=bs)
    f = res.vm(bs)["main"]
    x = tvm.runtime.tensor(res.example_input(bs))
    builds[v] = (f, x, res)
pl.FuseTransposeIntoPad = fused_pass
ref = builds["without"][0](builds["without"][1]).numpy()
for v, (f, x, res) in builds.items():
    print(f"{v}: max |y - y_without| / max |y| = "
          f"{float(np.abs(f(x).numpy() - ref).max() / np.abs(ref).max()):.2e}")
timers = {v: Timer(lambda f=f, x=x: f(x)) for v, (f, x, _) in builds.items()}
times = {v: [] for v in variants}
for order in round_orders(variants, int(os.environ.get("ROUNDS", 16))):
    for v in order:
        times[v].append(timers[v](150))
base = np.asarray(times["without"])
for v in variants:
    r = base / np.asarray(times[v])
    print(f"{name} {plan} b{bs} {v}: {np.median(times[v]) * 1e3:.3f} ms, speed-up over "
          f"without {np.median(r):.3f} (p10 {np.percentile(r, 10):.3f}, "
          f"p90 {np.percentile(r, 90):.3f})")
