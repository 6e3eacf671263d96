"""A norm between two 1x1 convs at 56 x 56 x 64, FP32, one thread, batch 1 and 4: ms per
image (whole module, time_evaluator median) and the error to torch. Run with each
checkout's interpreter:

    TVM_NUM_THREADS=1 python docs/runs/s42/instance_norm_batch.py
"""
import warnings

import numpy as np
import torch
from torch import nn

import aiq_tvm

NORMS = {
    "BatchNorm2d (folded)": lambda: nn.BatchNorm2d(64),
    "GroupNorm(8)": lambda: nn.GroupNorm(8, 64),
    "InstanceNorm2d(affine)": lambda: nn.InstanceNorm2d(64, affine=True),
}
for name, make in NORMS.items():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(64, 64, 1), make(), nn.ReLU(), nn.Conv2d(64, 64, 1)).eval()
    row = []
    for n in (1, 4):
        x = np.random.default_rng(0).standard_normal((n, 64, 56, 56)).astype(np.float32)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mod, params = aiq_tvm.from_torch(model, x)
        static = any("static batch" in str(w.message) for w in caught)
        res = aiq_tvm.build(mod, params=params, plan="fp32", batch_size=n)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        err = np.abs(res.run(x) - ref).max() / np.abs(ref).max()
        ms = res.benchmark(n, x=x)["median_ms"] / n
        row.append(f"batch {n}: {ms:.3f} ms/image (err {err:.1e}"
                   f"{', static-batch import' if static else ''})")
    print(f"{name:24s} " + " | ".join(row))
