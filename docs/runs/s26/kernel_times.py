"""Ad-hoc (session 26): single conv kernels built for this host (fp32, ReLU), each timed
hot (the same call repeated, median of 30 calls after one warm-up), with the schedule the
planner chose. Arguments ``N,H,W,C,O,KH,KW,STRIDE[,GROUPS]``; run it with each checkout's
interpreter to compare::

    TVM_NUM_THREADS=2 flock /work/bench.lock python docs/runs/s26/kernel_times.py \\
        1,14,14,1024,512,1,1,1 8,14,14,1024,512,1,1,1 ...
"""
import sys
import time

import numpy as np
import tvm

from aiq_tvm import testing
from aiq_tvm.targets import host_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel

target = tvm.target.Target(host_target())
for arg in sys.argv[1:]:
    v = list(map(int, arg.split(",")))
    n, h, w, c, o, kh, kw, s = v[:8]
    spec = ConvSpec(n, h, w, c, o, kh, kw, stride=(s, s), padding=kh // 2,
                    groups=v[8] if len(v) > 8 else 1)
    rng = np.random.default_rng(0)
    wt = (rng.standard_normal(spec.weight_shape) * 0.05).astype("float32")
    b = rng.standard_normal(o).astype("float32")
    k = conv2d_kernel(spec, "fp32", wt, b, act="relu", target=target)
    xin = testing.kernel_input("fp32", rng.standard_normal(spec.in_shape).astype("float32"), None)
    args = testing.kernel_args(k, xin)
    f = testing.compile_prim_func(k.prim_func, target).mod["main"]
    f(*args)
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        f(*args)
        times.append(time.perf_counter() - t0)
    print(f"{arg}: {np.median(times) * 1e3:.3f} ms, {k.info['schedule']}", flush=True)
