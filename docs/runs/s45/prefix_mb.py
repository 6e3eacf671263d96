"""Potential of micro-batching only a network's first stages: ResNet-50 FP32 batch 8, the
stem..layerK part run in calls of m vs whole, timed alternately in one process."""
import os, sys, time, numpy as np, torch
sys.path.insert(0, "/work/main/scripts")
os.environ.setdefault("TVM_BIND_THREADS", "0")
import aiq_tvm, tvm
from aiq_tvm.bench import Timer
from profile_layers import _model_and_calibration
name, cut, B = sys.argv[1], sys.argv[2], 8
model, calib = _model_and_calibration(name, 224, 32)
calib = np.asarray(calib)
names = [n for n, _ in model.named_children()]
k = names.index(cut) + 1
head = torch.nn.Sequential(*[m for n, m in model.named_children()][:k]).eval()
print("head:", names[:k])
mod, params = aiq_tvm.from_torch(head, torch.from_numpy(calib[:2]))
res = aiq_tvm.build(mod, params=params, plan="fp32", calib_data=calib, micro_batch=None, calibration="percentile")
x8 = tvm.runtime.tensor(res.example_input(B))
fs = {m: res.vm(m)["main"] for m in (1, 2, 4, 8)}
xs = {m: [tvm.runtime.tensor(res.example_input(m, seed=i)) for i in range(B // m)] for m in fs}
def runner(m):
    f, parts = fs[m], xs[m]
    return lambda: [f(p) for p in parts]
timers = {m: Timer(runner(m)) for m in fs}
res_t = {m: [] for m in fs}
for r in range(9):
    order = list(fs)[r % 4:] + list(fs)[:r % 4]
    for m in order:
        time.sleep(0.05); res_t[m].append(timers[m](200))
print(f"{name} FP32 stem..{cut} at batch {B}: " + ", ".join(f"calls of {m}: {np.median(v)*1e3:.2f} ms" for m, v in res_t.items()))
