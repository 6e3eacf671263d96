"""The AIQ plan against uniform INT8 / INT4 in one process, session 48 (bench_models' builds:
percentile calibration for the uniform ones, the plan with its own calibration file, the
plan with the uniform builds' calibration, and the plan under speed_floor="int8", modelled and
measured).

    TVM_NUM_THREADS=2 python docs/runs/s48/ab_plan.py MODEL BATCH

Alternating rounds of 150 ms in a Williams order (ROUNDS, default 16); per-round speed-up over
int8, median (p10, p90)."""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, "/work/main/scripts")
import tvm  # noqa: E402
from bench_models import load_model  # noqa: E402

import aiq_tvm  # noqa: E402
from aiq_tvm.bench import Timer, round_orders  # noqa: E402

name, bs = sys.argv[1], int(sys.argv[2])
stem = name.replace("/", "_")
model, xc = load_model(name, 224)
xc = np.asarray(xc)
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(xc[:2]))
plan = aiq_tvm.Plan.load(f"docs/runs/{stem}_int8int4_ai_plan.json")
pcal = aiq_tvm.Calibration.load(f"docs/runs/{stem}_int8int4_ai_calibration.json")
kw = dict(params=params, calib_data=xc, eval_batch_size=16, micro_batch=None, batch_size=bs)
builds = {"int8": aiq_tvm.build(mod, plan="int8", calibration="percentile", **kw)}
cal = builds["int8"].calibration
builds["int4"] = aiq_tvm.build(mod, plan="int4", calibration=cal, **kw)
builds["plan"] = aiq_tvm.build(mod, plan=plan, calibration=pcal, **kw)
builds["plan-int8cal"] = aiq_tvm.build(mod, plan=plan, calibration=cal, **kw)
builds["plan-floor"] = aiq_tvm.build(mod, plan=plan, calibration=pcal, speed_floor="int8", **kw)
builds["plan-floor-measured"] = aiq_tvm.build(mod, plan=plan, calibration=pcal, speed_floor="int8",
                                              speed_floor_timing="measured", **kw)
for v in ("plan-floor", "plan-floor-measured"):
    moved = [n for n, p in builds[v].plan.resolve(builds[v].cost.names).items()
             if p != builds["plan"].plan.resolve(builds["plan"].cost.names)[n]]
    print(f"{v}: layers moved from the plan: {moved}")
variants = list(builds)
calls = {}
for v, res in builds.items():
    f = res.vm(bs)["main"]
    x = tvm.runtime.tensor(res.example_input(bs))
    calls[v] = (f, x)
timers = {v: Timer(lambda f=f, x=x: f(x)) for v, (f, x) in calls.items()}
times = {v: [] for v in variants}
for order in round_orders(variants, int(os.environ.get("ROUNDS", 16))):
    for v in order:
        times[v].append(timers[v](150))
base = np.asarray(times["int8"])
for v in variants:
    r = base / np.asarray(times[v])
    print(f"{name} b{bs} {v}: {np.median(times[v]) * 1e3:.3f} ms, speed-up over int8 "
          f"{np.median(r):.3f} (p10 {np.percentile(r, 10):.3f}, p90 {np.percentile(r, 90):.3f})")
