"""Whole-model A/B in one process, session 47: the default plans against the flat pointwise
plans (AIQ_FLAT_POINTWISE=1, off since session 32, when 24-accumulator blocks were heap
workspaces) with the planners' stack bound raised to the aiq_tvm pipeline's 4 KiB
(STACK_ACC_BYTES=4097, StackSmallBuffers), and each change alone.

    TVM_NUM_THREADS=2 python docs/runs/s47/ab_flat.py MODEL PLAN BATCH [VARIANTS]

VARIANTS: comma list of base, flat, limit, flat+limit (default base,flat+limit). Alternating
rounds of 150 ms in a Williams order; per-round ratio to base, median (p10, p90)."""
import os
import sys
from dataclasses import replace

import numpy as np
import torch

sys.path.insert(0, "/work/main/scripts")
import tvm  # noqa: E402
from profile_layers import _model_and_calibration  # noqa: E402

import aiq_tvm  # noqa: E402
import aiq_tvm.targets.x86.conv2d as cv  # noqa: E402
import aiq_tvm.targets.x86.dense as dn  # noqa: E402
import aiq_tvm.targets.x86.winograd as wg  # noqa: E402
import aiq_tvm.targets.x86.winograd_int8 as wi  # noqa: E402
from aiq_tvm.bench import Timer, round_orders  # noqa: E402

name, plan, bs = sys.argv[1], sys.argv[2], int(sys.argv[3])
variants = (sys.argv[4] if len(sys.argv) > 4 else "base,flat+limit").split(",")
model, calib = _model_and_calibration(name, 224 if name.startswith("tv/") else 32, 32)
calib = np.asarray(calib)
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
orig = (wi.PMADDWD_ARITH, wi.VPDPWSSD_ARITH)


def configure(variant):
    limit = 4097 if "limit" in variant else 1024
    cv.STACK_ACC_BYTES = dn.STACK_ACC_BYTES = wg.STACK_ACC_BYTES = limit
    wi.PMADDWD_ARITH = replace(orig[0], max_block_bytes=limit)
    wi.VPDPWSSD_ARITH = replace(orig[1], max_block_bytes=limit)
    os.environ["AIQ_FLAT_POINTWISE"] = "1" if "flat" in variant else "0"


builds = {}
for v in variants:
    configure(v)
    res = aiq_tvm.build(mod, params=params, plan=plan, calib_data=calib, micro_batch=None,
                        batch_size=bs)
    f = res.vm(bs)["main"]
    x = tvm.runtime.tensor(res.example_input(bs))
    builds[v] = (f, x)
configure("base")
ref = builds[variants[0]][0](builds[variants[0]][1]).numpy()
for v, (f, x) in builds.items():
    print(f"{v}: max |y - y_{variants[0]}| / max |y| = "
          f"{float(np.abs(f(x).numpy() - ref).max() / np.abs(ref).max()):.2e}")
timers = {v: Timer(lambda f=f, x=x: f(x)) for v, (f, x) in builds.items()}
times = {v: [] for v in variants}
for order in round_orders(variants, int(os.environ.get("ROUNDS", 16))):
    for v in order:
        times[v].append(timers[v](150))
base = np.asarray(times[variants[0]])
for v in variants:
    r = base / np.asarray(times[v])  # speed-up over the first variant, per round
    print(f"{name} {plan} b{bs} {v}: {np.median(times[v]) * 1e3:.3f} ms, speed-up over "
          f"{variants[0]} {np.median(r):.3f} (p10 {np.percentile(r, 10):.3f}, "
          f"p90 {np.percentile(r, 90):.3f})")
