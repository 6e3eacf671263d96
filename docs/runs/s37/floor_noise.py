"""Session 37: how much the measured speed floor's per-layer kernel times move between timings
of the same build. One timing is what ``phases._measured_floor_times`` takes: each layer's
fastest of ``ROUNDS`` rounds of ``measured_report(repeat=REPEAT)`` (default
``FLOOR_TIMING_ROUNDS`` and 3, the floor's; floor_noise_skx16.txt was printed with ROUNDS 1,
REPEAT 5, the floor's first version). Printed: the ratio of the slowest to the fastest of
each layer's three timings, per model and precision, one target::

    TVM_NUM_THREADS=1 python docs/runs/s37/floor_noise.py \
        '{"kind":"llvm","mcpu":"skylake-avx512"}' 16 [ROUNDS REPEAT]
"""
import json
import sys

import numpy as np
import torch

import aiq_tvm
from aiq_tvm import datasets, models
from aiq_tvm.phases import FLOOR_TIMING_ROUNDS
from aiq_tvm.profiling import measured_report


def timing(res) -> dict[str, float]:
    rounds = [{r.name: r.measured_us for r in measured_report(res, repeat=REPEAT).rows
               if r.measured_us is not None} for _ in range(ROUNDS)]
    return {n: min(r[n] for r in rounds) for n in rounds[0]}


target, batch = json.loads(sys.argv[1]), int(sys.argv[2])
ROUNDS, REPEAT = map(int, sys.argv[3:5]) if len(sys.argv) > 3 else (FLOOR_TIMING_ROUNDS, 3)
xc, _ = datasets.calibration_set(64)
for name in ("resnet20", "mobilenet_v2"):
    model = models.get_model(name, pretrained=True)
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(xc[:2]))
    for prec in ("fp32", "int8"):
        res = aiq_tvm.build(mod, target, params=params, plan=prec, calib_data=xc,
                            batch_size=batch)
        runs = [timing(res) for _ in range(3)]
        ratios = np.array([max(r[n] for r in runs) / min(r[n] for r in runs) for n in runs[0]])
        big = {n: round(max(r[n] for r in runs), 1) for n in runs[0]
               if max(r[n] for r in runs) / min(r[n] for r in runs) > 1.05}
        print(f"{name} {prec} batch {batch}: {len(ratios)} layers, slowest/fastest of 3 timings "
              f"median {np.median(ratios):.3f}, p90 {np.quantile(ratios, 0.9):.3f}, "
              f"max {ratios.max():.3f}; above 1.05: {big}", flush=True)
