"""Ad-hoc (session 23): a torchvision model built for this host at one batch size with each
given micro-batch (``off``, ``auto`` or an int, ``BuildConfig.micro_batch``), three medians
of TVM's time_evaluator each.

    TVM_NUM_THREADS=2 flock /work/bench.lock python docs/runs/s23/mb_exp.py MODEL BATCH PLAN M...
"""
import json
import sys

import numpy as np

sys.path.insert(0, "scripts")
import torch  # noqa: E402
from bench_models import load_model  # noqa: E402

import aiq_tvm  # noqa: E402

model_name, bs, prec = sys.argv[1], int(sys.argv[2]), sys.argv[3]
model, xc = load_model(model_name, 224)
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(xc[:1]))
x = np.ascontiguousarray(np.concatenate([xc] * 8)[:bs])
for mb in sys.argv[4:]:
    m = None if mb == "off" else ("auto" if mb == "auto" else int(mb))
    res = aiq_tvm.build(mod, "llvm", params=params, plan=prec, calib_data=xc[:16],
                        batch_size=bs, micro_batch=m)
    ts = [res.benchmark(bs, repeat=20, min_repeat_ms=200, x=x)["median_ms"] for _ in range(3)]
    print(json.dumps({"model": model_name, "batch": bs, "prec": prec, "micro": mb,
                      "median_ms": float(np.median(ts)), "runs": ts}), flush=True)
