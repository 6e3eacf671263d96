"""Ad-hoc (session 24): one conv layer's kernel with and without the weight prefetch
(``AIQ_WEIGHT_PREFETCH``), outputs compared bit for bit, then timed hot (the same call
repeated: weights cached) and cold (64 MB written by the CPU before each call: weights from
memory, as in a whole inference); medians of 40 calls, three rounds.

    TVM_NUM_THREADS=2 flock /work/bench.lock python docs/runs/s24_prefetch_kernel.py \\
        N,H,W,C,O,KH,KW,STRIDE fp32|int8 [MCPU]
"""
import os
import sys
import time

import numpy as np
import tvm

from aiq_tvm import testing
from aiq_tvm.quant import ActQParams
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel

n, h, w_, c, o, kh, kw, s = map(int, sys.argv[1].split(","))
prec = sys.argv[2]
mcpu = sys.argv[3] if len(sys.argv) > 3 else "rocketlake"
spec = ConvSpec(n, h, w_, c, o, kh, kw, stride=(s, s), padding=kh // 2)
rng = np.random.default_rng(0)
w = (rng.standard_normal((o, c, kh, kw)) * 0.05).astype("float32")
b = rng.standard_normal(o).astype("float32")
target = tvm.target.Target({"kind": "llvm", "mcpu": mcpu, "num-cores": 2})
qp = ActQParams.from_range(-4.0, 4.0) if prec != "fp32" else None
kernels = {}
for flag in ("0", "1"):
    os.environ["AIQ_WEIGHT_PREFETCH"] = flag
    kernels[flag] = conv2d_kernel(spec, prec, w, b, act="relu", act_qparams=qp, target=target)
info = kernels["1"].info
print(f"{sys.argv[1]} {prec} {mcpu}: {info['schedule']}, prefetch lines per group "
      f"{info.get('weight_prefetch')}")
xin = testing.kernel_input(prec, rng.standard_normal(spec.in_shape).astype("float32"), qp)
args = testing.kernel_args(kernels["0"], xin)
funcs = {f: testing.compile_prim_func(k.prim_func, target).mod["main"]
         for f, k in kernels.items()}
funcs["0"](*args)
ref = args[-1].numpy().copy()
funcs["1"](*args)
assert np.array_equal(ref, args[-1].numpy()), "outputs differ"
flush = np.ones((64 << 20) // 8)


def median_us(f, cold: bool, calls: int = 40) -> float:
    ts = []
    for _ in range(calls):
        if cold:
            flush[:] += 1.0
        t0 = time.perf_counter()
        f(*args)
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)) * 1e6


for _ in range(3):
    row = {f: (median_us(fn, False), median_us(fn, True)) for f, fn in funcs.items()}
    print(f"  off: hot {row['0'][0]:.1f} us, cold {row['0'][1]:.1f} us | "
          f"on: hot {row['1'][0]:.1f} us, cold {row['1'][1]:.1f} us")
