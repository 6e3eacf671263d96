"""R50 fp32 b1: per-call time continuous vs after idle gaps (bench_models' rounds)."""
import os, sys, time, numpy as np, torch
sys.path.insert(0, "/work/main/scripts")
import aiq_tvm, tvm
from aiq_tvm.bench import Timer
from profile_layers import _model_and_calibration
name = sys.argv[1] if len(sys.argv) > 1 else "tv/resnet50"
model, calib = _model_and_calibration(name, 224, 32)
calib = np.asarray(calib)
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
res = aiq_tvm.build(mod, params=params, plan="fp32", calib_data=calib, micro_batch=None)
f = res.vm(1)["main"]
x = tvm.runtime.tensor(res.example_input(1))
timer = Timer(lambda: f(x))
cont = [timer(150) for _ in range(10)]
gaps = []
for _ in range(10):
    time.sleep(0.1); gaps.append(timer(150))
single = []
for _ in range(30):
    time.sleep(0.02); t0 = time.perf_counter(); f(x); single.append(time.perf_counter() - t0)
print(f"continuous {np.median(cont)*1e3:.3f} ms, after 100 ms idle {np.median(gaps)*1e3:.3f} ms, single after 20 ms idle {np.median(single)*1e3:.3f}")
seq = np.zeros((10, 10))
for r in range(10):
    time.sleep(0.1)
    for i in range(10):
        t0 = time.perf_counter(); f(x); seq[r, i] = time.perf_counter() - t0
print("per run after 100 ms idle (median over 10 rounds):", " ".join(f"{v*1e3:.2f}" for v in np.median(seq, 0)))
print([l.strip() for l in open("/proc/self/smaps_rollup") if "AnonHuge" in l or l.startswith("Rss")])
