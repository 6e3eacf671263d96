"""Whole-model A/B in one process: the planners' 1 KiB stack bound (STACK_ACC_BYTES = 1024,
TVM's) vs the aiq_tvm pipeline's 4 KiB (4097), both built with the aiq_tvm TIR pipeline."""
import os, sys, time, numpy as np, torch
from dataclasses import replace
sys.path.insert(0, "/work/main/scripts")
os.environ.setdefault("TVM_BIND_THREADS", "0")
import aiq_tvm, tvm
import aiq_tvm.targets.x86.conv2d as cv, aiq_tvm.targets.x86.dense as dn
import aiq_tvm.targets.x86.winograd as wg, aiq_tvm.targets.x86.winograd_int8 as wi
from aiq_tvm.bench import Timer
from profile_layers import _model_and_calibration
name, plan, bs = sys.argv[1], sys.argv[2], int(sys.argv[3])
target = sys.argv[4] if len(sys.argv) > 4 else "llvm"
model, calib = _model_and_calibration(name, 224 if name.startswith("tv/") else 32, 32)
calib = np.asarray(calib)
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
orig = (wi.PMADDWD_ARITH, wi.VPDPWSSD_ARITH)
def set_limit(v):
    cv.STACK_ACC_BYTES = dn.STACK_ACC_BYTES = wg.STACK_ACC_BYTES = v
    wi.PMADDWD_ARITH = replace(orig[0], max_block_bytes=v)
    wi.VPDPWSSD_ARITH = replace(orig[1], max_block_bytes=v)
def build():
    res = aiq_tvm.build(mod, target, params=params, plan=plan, calib_data=calib, micro_batch=None, batch_size=bs)
    f = res.vm(bs)["main"]; x = tvm.runtime.tensor(res.example_input(bs))
    return res, f, x
set_limit(1024); a = build()
set_limit(4097); b = build()
set_limit(1024)
ya, yb = a[1](a[2]).numpy(), b[1](b[2]).numpy()
print("max |a-b|", float(np.abs(ya - yb).max()), "scale", float(np.abs(ya).max()))
ka = [k.get("schedule") for k in a[0].report.get("kernels", [])] if isinstance(a[0].report, dict) else None
ta, tb = Timer(lambda: a[1](a[2])), Timer(lambda: b[1](b[2]))
ra, rb, ratio = [], [], []
for r in range(int(os.environ.get("ROUNDS", 15))):
    pair = (ta, tb) if r % 2 == 0 else (tb, ta)
    v = [p(150) for p in pair]
    va, vb = (v[0], v[1]) if r % 2 == 0 else (v[1], v[0])
    ra.append(va); rb.append(vb); ratio.append(vb / va)
print(f"{name} {plan} b{bs} {target}: limit 1024 {np.median(ra)*1e3:.3f} ms, limit 4097 {np.median(rb)*1e3:.3f} ms, per-round ratio median {np.median(ratio):.3f} (p10 {np.percentile(ratio,10):.3f}, p90 {np.percentile(ratio,90):.3f})")
