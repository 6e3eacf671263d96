"""Ad-hoc (session 25): three builds of one torchvision model at uniform int8, timed in rounds
in one process: ``default`` (AIQ_AMX unset), ``1`` and ``0`` (medians of 5 rounds of TVM's
time_evaluator medians). It decided the AMX default: it ran on the code of ba510f6 with the
task order of 04c95d1 (output positions outermost, then an uncommitted switch), when the
default still kept short reductions and narrow rows on vpdpbusd and ``1`` forced tiles
wherever they apply; since 04c95d1 ``default`` and ``1`` are the same.

    TVM_NUM_THREADS=2 flock /work/bench.lock python docs/runs/s25_amx_rule.py MODEL BATCH
"""
import os
import sys

import numpy as np

sys.path.insert(0, "scripts")
import torch  # noqa: E402
from bench_models import load_model  # noqa: E402

import aiq_tvm  # noqa: E402

model_name, bs = sys.argv[1], int(sys.argv[2])
model, xc = load_model(model_name, 224)
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(xc[:1]))
builds = {}
for flag in ("", "1", "0"):
    os.environ["AIQ_AMX"] = flag
    builds[flag or "default"] = aiq_tvm.build(mod, "llvm", params=params, plan="int8",
                                              calib_data=xc[:16], batch_size=bs)
x = np.ascontiguousarray(np.concatenate([xc] * 8)[:bs])
times = {f: [] for f in builds}
for _ in range(5):
    for f in builds:
        times[f].append(builds[f].benchmark(bs, repeat=10, min_repeat_ms=200, x=x)["median_ms"])
print(model_name, bs, {f: round(float(np.median(v)), 3) for f, v in times.items()})
