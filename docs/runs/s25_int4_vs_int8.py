"""Ad-hoc (session 25): uniform int8 and uniform int4 builds of one torchvision model on this
machine's target (AMX tiles for both where the target has them), whole inferences timed in
alternating rounds in one process (medians of TVM's time_evaluator per round).

    TVM_NUM_THREADS=2 flock /work/bench.lock \\
        python docs/runs/s25_int4_vs_int8.py MODEL BATCH [ROUNDS]
"""
import json
import sys

import numpy as np

sys.path.insert(0, "scripts")
import torch  # noqa: E402
from bench_models import load_model  # noqa: E402

import aiq_tvm  # noqa: E402

model_name, bs = sys.argv[1], int(sys.argv[2])
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 7
model, xc = load_model(model_name, 224)
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(xc[:1]))
builds = {p: aiq_tvm.build(mod, "llvm", params=params, plan=p, calib_data=xc[:16],
                           batch_size=bs) for p in ("int8", "int4")}
notes = [n for n in builds["int4"].report.notes if "AMX" in n]
x = np.ascontiguousarray(np.concatenate([xc] * 8)[:bs])
times = {p: [] for p in builds}
for r in range(rounds):
    for p in (("int8", "int4") if r % 2 == 0 else ("int4", "int8")):
        times[p].append(builds[p].benchmark(bs, repeat=10, min_repeat_ms=200, x=x)["median_ms"])
med = {p: float(np.median(v)) for p, v in times.items()}
print(json.dumps({"model": model_name, "batch": bs, "int8_ms": med["int8"],
                  "int4_ms": med["int4"], "int8_over_int4": med["int8"] / med["int4"],
                  "amx_note": notes[0][:120] if notes else "",
                  "rounds": {p: [round(t, 3) for t in v] for p, v in times.items()}}))
