"""Grouped convs the kernels lacked, after a 1x1 conv, FP32 and int8, batch 8 at 18 x 9:
whole-module medians and the layer's precision in the report. Run with the interpreter of
each checkout (before / after aiq_tvm/regroup_convs.py):

    TVM_NUM_THREADS=1 python docs/runs/s42/regroup_time.py [TARGET]
"""
import sys

import numpy as np
import torch
from torch import nn

import aiq_tvm

CASES = {
    "7x7 112->16 g8 (14 / 2 per group)": lambda: nn.Conv2d(112, 16, 7, padding=3, groups=8),
    "3x3 48->24 g8 (6 / 3 per group)": lambda: nn.Conv2d(48, 24, 3, padding=1, groups=8),
    "3x3 16->32 g16 (multiplier 2)": lambda: nn.Conv2d(16, 32, 3, padding=1, groups=16),
    "5x5 24->72 g24 (multiplier 3)": lambda: nn.Conv2d(24, 72, 5, padding=2, groups=24),
}
target = sys.argv[1] if len(sys.argv) > 1 else "llvm"
print(f"target {target}; ms per batch of 8, median of time_evaluator runs")
for name, make in CASES.items():
    torch.manual_seed(0)
    conv = make()
    c = conv.in_channels
    model = nn.Sequential(nn.Conv2d(c, c, 1), nn.ReLU(), conv, nn.ReLU()).eval()
    x = np.random.default_rng(0).standard_normal((8, c, 18, 9)).astype(np.float32)
    mod, params = aiq_tvm.from_torch(model, x)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    row = []
    for plan in ("fp32", "int8"):
        res = aiq_tvm.build(mod, target, params=params, plan=plan, batch_size=8,
                            calib_data=None if plan == "fp32" else x)
        err = np.abs(res.run(x) - ref).max() / np.abs(ref).max()
        ms = res.benchmark(8, x=x)["median_ms"]
        prec = res.report.precisions().get("2", "?")
        row.append(f"{plan} {ms:8.3f} ms (layer '2': {prec}, rel err {err:.1e})")
    print(f"{name:36s} " + " | ".join(row))
