"""Session 37: how much the measured speed floor's per-layer kernel times (``measured_report``,
repeat=5, as ``phases._measured_floor_times`` takes them) move between two timings of the same
build: the ratio of the slower to the faster of each layer's two times, per model and
precision, one target::

    TVM_NUM_THREADS=1 python docs/runs/s37/floor_noise.py '{"kind":"llvm","mcpu":"skylake-avx512"}' 16
"""
import json
import sys

import numpy as np
import torch

import aiq_tvm
from aiq_tvm import datasets, models
from aiq_tvm.profiling import measured_report

target, batch = json.loads(sys.argv[1]), int(sys.argv[2])
xc, _ = datasets.calibration_set(64)
for name in ("resnet20", "mobilenet_v2"):
    model = models.get_model(name, pretrained=True)
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(xc[:2]))
    for prec in ("fp32", "int8"):
        res = aiq_tvm.build(mod, target, params=params, plan=prec, calib_data=xc,
                            batch_size=batch)
        runs = [{r.name: r.measured_us for r in measured_report(res, repeat=5).rows
                 if r.measured_us is not None} for _ in range(3)]
        ratios = np.array([max(r[n] for r in runs) / min(r[n] for r in runs) for n in runs[0]])
        big = {n: round(max(r[n] for r in runs), 1) for n in runs[0]
               if max(r[n] for r in runs) / min(r[n] for r in runs) > 1.05}
        print(f"{name} {prec} batch {batch}: {len(ratios)} layers, slowest/fastest of 3 timings "
              f"median {np.median(ratios):.3f}, p90 {np.quantile(ratios, 0.9):.3f}, "
              f"max {ratios.max():.3f}; above 1.05: {big}", flush=True)
