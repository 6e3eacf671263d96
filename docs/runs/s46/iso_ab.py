"""Per-kernel isolated times (aiq_tvm.profiling.profile) of one model built with TVM's
s_tir TIR pipeline and with aiq_tvm's, several alternating repeats; prints the kernels whose
ratio is furthest from 1."""
import os, sys, numpy as np, torch
sys.path.insert(0, "/work/main/scripts")
import aiq_tvm, tvm
import aiq_tvm.pipeline as P
from aiq_tvm.profiling import profile
from profile_layers import _model_and_calibration
name, plan, bs = sys.argv[1], sys.argv[2], int(sys.argv[3])
target = sys.argv[4] if len(sys.argv) > 4 else "llvm"
model, calib = _model_and_calibration(name, 224 if name.startswith("tv/") else 32, 32)
calib = np.asarray(calib)
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
def build(p):
    P.TIR_PIPELINE = p
    return aiq_tvm.build(mod, target, params=params, plan=plan, calib_data=calib, micro_batch=None, batch_size=bs)
a, b = build("s_tir"), build("aiq_tvm")
ta, tb = [], []
for r in range(5):
    ta.append(profile(a, bs, repeat=9)); tb.append(profile(b, bs, repeat=9))
names = [n for n, _ in ta[0]]
ma = np.median([[u for _, u in t] for t in ta], 0); mb = np.median([[u for _, u in t] for t in tb], 0)
print(f"sums: s_tir {ma.sum():.1f} us, aiq_tvm {mb.sum():.1f} us")
order = np.argsort(-np.abs(np.log(mb / ma)))
for i in order[:12]:
    print(f"{i:3d} {names[i]:40s} {ma[i]:9.1f} {mb[i]:9.1f} {mb[i]/ma[i]:.3f}")
