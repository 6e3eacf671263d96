"""Ad-hoc (session 23): a torchvision model's whole-inference time with the kernel planner's
L2 figure set to ``L2`` bytes (-1: this host's, from sysfs), three medians of TVM's
time_evaluator.

    TVM_NUM_THREADS=2 flock /work/bench.lock python docs/runs/s23/l2_exp.py L2 MODEL BATCH [PLAN]
"""
import importlib
import json
import sys

import numpy as np

sys.path.insert(0, "scripts")
l2, model_name, bs = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
prec = sys.argv[4] if len(sys.argv) > 4 else "fp32"
caps_mod = importlib.import_module("aiq_tvm.targets.capabilities")
real = caps_mod.host_cache_bytes
if l2 >= 0:
    caps_mod.host_cache_bytes = lambda level=None, caches=caps_mod.SYSFS_CACHES: (
        l2 if level == 2 else real(level, caches))

import torch  # noqa: E402
from bench_models import load_model  # noqa: E402

import aiq_tvm  # noqa: E402

model, xc = load_model(model_name, 224)
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(xc[:1]))
res = aiq_tvm.build(mod, "llvm", params=params, plan=prec, calib_data=xc[:16], batch_size=bs)
x = np.ascontiguousarray(np.concatenate([xc] * 8)[:bs])
ts = [res.benchmark(bs, repeat=20, min_repeat_ms=200, x=x)["median_ms"] for _ in range(3)]
print(json.dumps({"l2": l2, "model": model_name, "batch": bs, "prec": prec,
                  "median_ms": float(np.median(ts)), "runs": ts}))
