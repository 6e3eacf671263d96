"""Whole-model A/B in one process: TVM's "s_tir" TIR pipeline (before) vs aiq_tvm's (with
StackSmallBuffers), alternating rounds (median of per-round ratios)."""
import os, sys, time, numpy as np, torch
sys.path.insert(0, "/work/main/scripts")
os.environ.setdefault("TVM_BIND_THREADS", "0")
import aiq_tvm, tvm
import aiq_tvm.pipeline as P
from aiq_tvm.bench import Timer
from profile_layers import _model_and_calibration
name, plan, bs = sys.argv[1], sys.argv[2], int(sys.argv[3])
target = sys.argv[4] if len(sys.argv) > 4 else "llvm"
model, calib = _model_and_calibration(name, 224 if name.startswith("tv/") else 32, 32)
calib = np.asarray(calib)
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
def build():
    res = aiq_tvm.build(mod, target, params=params, plan=plan, calib_data=calib, micro_batch=None, batch_size=bs)
    f = res.vm(bs)["main"]; x = tvm.runtime.tensor(res.example_input(bs))
    return res, f, x
P.TIR_PIPELINE = "s_tir"
a = build()
P.TIR_PIPELINE = "aiq_tvm"
b = build()
ya, yb = a[1](a[2]).numpy(), b[1](b[2]).numpy()
print("max |a-b|", float(np.abs(ya - yb).max()), "scale", float(np.abs(ya).max()))
ta, tb = Timer(lambda: a[1](a[2])), Timer(lambda: b[1](b[2]))
ra, rb, ratio = [], [], []
for r in range(int(os.environ.get("ROUNDS", 15))):
    pair = (ta, tb) if r % 2 == 0 else (tb, ta)
    v = [p(150) for p in pair]
    va, vb = (v[0], v[1]) if r % 2 == 0 else (v[1], v[0])
    ra.append(va); rb.append(vb); ratio.append(vb / va)
print(f"{name} {plan} b{bs} {target}: s_tir {np.median(ra)*1e3:.3f} ms, aiq_tvm {np.median(rb)*1e3:.3f} ms, per-round ratio median {np.median(ratio):.3f} (p10 {np.percentile(ratio,10):.3f}, p90 {np.percentile(ratio,90):.3f})")
