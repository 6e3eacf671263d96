"""Ad-hoc (session 25): uniform int8 builds of one torchvision model with AMX tiles for layers
whose reduction steps are at least ``amx.MIN_KC`` channels, for three values of it (outputs
compared bit for bit, medians of 7 alternating rounds of TVM's time_evaluator medians).

    TVM_NUM_THREADS=2 flock /work/bench.lock python docs/runs/s25_amx_min_kc.py MODEL BATCH \\
        [MIN_KC ...]
"""
import sys

import numpy as np

sys.path.insert(0, "scripts")
import torch  # noqa: E402
from bench_models import load_model  # noqa: E402

import aiq_tvm  # noqa: E402
from aiq_tvm.targets.x86 import amx  # noqa: E402

model_name, bs = sys.argv[1], int(sys.argv[2])
model, xc = load_model(model_name, 224)
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(xc[:1]))
builds = {}
for kc in [int(v) for v in sys.argv[3:]] or [32, 48, 64]:
    amx.MIN_KC = kc
    builds[kc] = aiq_tvm.build(mod, "llvm", params=params, plan="int8", calib_data=xc[:16],
                               batch_size=bs)
x = np.ascontiguousarray(np.concatenate([xc] * 8)[:bs])
outs = [np.asarray(b.run(x)) for b in builds.values()]
same = all(np.array_equal(outs[0], o) for o in outs)
times = {k: [] for k in builds}
for r in range(7):
    for k in (builds if r % 2 == 0 else list(builds)[::-1]):
        times[k].append(builds[k].benchmark(bs, repeat=10, min_repeat_ms=200,
                                            x=x)["median_ms"])
print(model_name, bs, "outputs identical" if same else "OUTPUTS DIFFER",
      {k: round(float(np.median(v)), 3) for k, v in times.items()})
