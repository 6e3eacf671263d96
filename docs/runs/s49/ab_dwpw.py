"""Whole-model A/B in one process, session 49: depthwise layers fused into their pointwise
kernels (targets/x86/dwpw.py) against separate kernels.

    TVM_NUM_THREADS=2 python docs/runs/s49/ab_dwpw.py MODEL BATCH [VARIANT ...]
    TARGET='{"kind":"llvm","mcpu":"haswell"}' TVM_NUM_THREADS=1 python ... mobilenet_v2 16

Variants: ``unfused`` (fuse_depthwise=False), ``rule`` (the default: dwpw.fusion_pays
decides), ``all`` (every pair that can fuse does). Alternating rounds of 150 ms in a Williams
order (ROUNDS, default 16); per-round speed-up over "unfused", median (p10, p90)."""
import dataclasses
import os
import sys

import numpy as np
import torch

sys.path.insert(0, "/work/main/scripts")
import tvm  # noqa: E402
from profile_layers import _model_and_calibration  # noqa: E402

import aiq_tvm  # noqa: E402
from aiq_tvm.bench import Timer, round_orders  # noqa: E402
from aiq_tvm.targets.x86 import dwpw  # noqa: E402

name, bs = sys.argv[1], int(sys.argv[2])
variants = sys.argv[3:] or ["unfused", "rule", "all"]
model, calib = _model_and_calibration(name, 224 if name.startswith("tv/") else 32, 32)
calib = np.asarray(calib)
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
rule = dwpw.fusion_pays
builds = {}
for v in variants:
    dwpw.fusion_pays = (lambda *a: True) if v == "all" else rule
    res = aiq_tvm.build(mod, os.environ.get("TARGET", "llvm"), params=params, plan="fp32",
                        calib_data=calib, micro_batch=None, batch_size=bs)
    res = dataclasses.replace(res, fuse_depthwise=v != "unfused", _exes={}, _run_exes={},
                              _embedded_exes={})
    exe = res.executable(bs)
    print(f"{v}: {len(exe.aiq_fused_layers)} fused kernels {sorted(exe.aiq_fused_layers)}")
    builds[v] = (res.vm(bs)["main"], tvm.runtime.tensor(res.example_input(bs)))
dwpw.fusion_pays = rule
ref = builds[variants[0]][0](builds[variants[0]][1]).numpy()
for v, (f, x) in builds.items():
    print(f"{v}: max |y - y_{variants[0]}| = {float(np.abs(f(x).numpy() - ref).max()):.2e}")
timers = {v: Timer(lambda f=f, x=x: f(x)) for v, (f, x) in builds.items()}
times = {v: [] for v in variants}
for order in round_orders(variants, int(os.environ.get("ROUNDS", 16))):
    for v in order:
        times[v].append(timers[v](150))
base = np.asarray(times[variants[0]])
for v in variants:
    r = base / np.asarray(times[v])
    print(f"{name} fp32 b{bs} {v}: {np.median(times[v]) * 1e3:.3f} ms, speed-up over "
          f"{variants[0]} {np.median(r):.3f} (p10 {np.percentile(r, 10):.3f}, "
          f"p90 {np.percentile(r, 90):.3f})")
