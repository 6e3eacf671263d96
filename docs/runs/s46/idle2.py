"""R50 fp32 b1: per-run times after 100 ms gaps spent (a) asleep, (b) spinning both threads
on register-only arithmetic (a TVM parallel kernel), (c) spinning one thread (Python)."""
import os, sys, time, numpy as np, torch
sys.path.insert(0, "/work/main/scripts")
import aiq_tvm, tvm
from tvm.script import tirx as T
from profile_layers import _model_and_calibration
name = sys.argv[1] if len(sys.argv) > 1 else "tv/resnet50"
model, calib = _model_and_calibration(name, 224, 32)
calib = np.asarray(calib)
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
res = aiq_tvm.build(mod, params=params, plan=os.environ.get("PLAN", "fp32"), calib_data=calib, micro_batch=None)
f = res.vm(1)["main"]
x = tvm.runtime.tensor(res.example_input(1))

@T.prim_func
def spin(a: T.Buffer((2, 16), "float32"), n: T.int32):
    for t in T.parallel(2):
        for i in range(n):
            for l in T.vectorized(16):
                a[t, l] = a[t, l] * T.float32(0.999999) + T.float32(1e-7)
spin_f = tvm.compile(tvm.IRModule({"main": spin}), tvm.target.Target({"kind":"llvm","mcpu":"skylake-avx512"}))["main"]
buf = tvm.runtime.tensor(np.ones((2, 16), "float32"))
t0 = time.perf_counter(); spin_f(buf, 1000000); per = (time.perf_counter() - t0) / 1e6
def gap_spin2():
    spin_f(buf, int(0.1 / per))
@T.prim_func
def stream(a: T.Buffer((2, 4194304, 16), "float32"), o: T.Buffer((2, 16), "float32"), n: T.int32):
    for t in T.parallel(2):
        for r, i in T.grid(n, 4194304):
            for l in T.vectorized(16):
                o[t, l] = o[t, l] + a[t, i, l]
stream_f = tvm.compile(tvm.IRModule({"main": stream}), tvm.target.Target({"kind":"llvm","mcpu":"skylake-avx512"}))["main"]
big = tvm.runtime.tensor(np.ones((2, 4194304, 16), "float32"))
t0 = time.perf_counter(); stream_f(big, buf, 2); sper = (time.perf_counter() - t0) / 2
def gap_stream():
    stream_f(big, buf, max(1, int(0.1 / sper)))
def gap_spin1():
    e = time.perf_counter() + 0.1
    while time.perf_counter() < e: pass
def gap_sleep():
    time.sleep(0.1)
for _ in range(20): f(x)
modes = {"sleep": gap_sleep, "spin2": gap_spin2, "spin1": gap_spin1, "stream": gap_stream}
seq = {m: np.zeros((12, 8)) for m in modes}
for r in range(12):
    for m, g in modes.items():
        g()
        for i in range(8):
            t0 = time.perf_counter(); f(x); seq[m][r, i] = time.perf_counter() - t0
for m in modes:
    print(f"{m:6s}", " ".join(f"{v*1e3:.2f}" for v in np.median(seq[m], 0)))
