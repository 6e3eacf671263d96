"""Per-call in-situ times (scripts/profile_insitu.insitu_times) of one model built with TVM's
s_tir TIR pipeline and with aiq_tvm's, alternating repeats; the calls whose ratio is furthest
from 1, and the plain-inference medians."""
import os, sys, numpy as np, torch
sys.path.insert(0, "/work/main/scripts")
os.environ.setdefault("TVM_BIND_THREADS", "0")
import aiq_tvm, tvm
import aiq_tvm.pipeline as P
from profile_insitu import insitu_times
from profile_layers import _model_and_calibration
name, plan, bs = sys.argv[1], sys.argv[2], int(sys.argv[3])
model, calib = _model_and_calibration(name, 224, 32)
calib = np.asarray(calib)
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
def build(p):
    P.TIR_PIPELINE = p
    res = aiq_tvm.build(mod, params=params, plan=plan, calib_data=calib, micro_batch=None, batch_size=bs)
    return res.vm(bs), tvm.runtime.tensor(res.example_input(bs))
a, b = build("s_tir"), build("aiq_tvm")
ra, rb, pa, pb = [], [], [], []
for r in range(int(os.environ.get("REPEATS", 9))):
    n, u, plain, _, _ = insitu_times(*a, 20); ra.append(u); pa.append(plain)
    n, u, plain, _, _ = insitu_times(*b, 20); rb.append(u); pb.append(plain)
ma, mb = np.median(ra, 0), np.median(rb, 0)
print(f"plain: s_tir {np.median(pa):.3f} ms, aiq_tvm {np.median(pb):.3f} ms; in-situ sums {ma.sum()/1e3:.3f} / {mb.sum()/1e3:.3f} ms")
for i in np.argsort(-np.abs(mb - ma))[:10]:
    print(f"{i:3d} {n[i]:40s} {ma[i]:9.1f} {mb[i]:9.1f} {mb[i]/ma[i]:.3f}")
