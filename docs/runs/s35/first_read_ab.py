"""Session 35: one conv kernel planned without and with the first-read term
(``conv2d.FIRST_READ_MAX_BATCH`` set to 0 for "off"), each timed alone hot (the call right
after the same call) and cold (64 MB written before the call), medians of 21 alternating
rounds, outputs compared bit for bit. Arguments ``N,H,W,C,O,KH,KW,S[,PADDING] [scheme]
[target JSON]`` (default: this host):

    TVM_NUM_THREADS=2 flock /work/bench.lock python docs/runs/s35/first_read_ab.py \\
        1,8,8,448,384,3,3,1 fp32

Output: first_read_ab.txt.
"""
import json
import sys
import time

import numpy as np
import tvm

from aiq_tvm import testing
from aiq_tvm.quant import ActQParams
from aiq_tvm.targets import host_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.targets.x86 import conv2d as cm

t = tvm.target.Target(json.loads(sys.argv[3]) if len(sys.argv) > 3 else host_target())
scheme = sys.argv[2] if len(sys.argv) > 2 else "fp32"
n, h, w_, c, o, kh, kw, s, *pad = map(int, sys.argv[1].split(","))
spec = ConvSpec(n, h, w_, c, o, kh, kw, stride=s,
                padding=(pad[0], pad[0]) if pad else (kh // 2, kw // 2))
rng = np.random.default_rng(0)
w = (rng.standard_normal(spec.weight_shape) / np.sqrt(c * kh * kw)).astype("float32")
b = rng.standard_normal(o).astype("float32")
x = rng.standard_normal(spec.in_shape).astype("float32")
qp = ActQParams.from_range(-3.0, 3.0) if scheme != "fp32" else None
default = cm.FIRST_READ_MAX_BATCH
runs = []
for flag, value in (("off", 0), ("on", default)):
    cm.FIRST_READ_MAX_BATCH = value
    k = conv2d_kernel(spec, scheme, w, b, act="relu", act_qparams=qp, target=t)
    fn = testing.compile_prim_func(k.prim_func, t).mod["main"]
    args = testing.kernel_args(k, testing.kernel_input(scheme, x, qp))
    fn(*args)
    runs.append((flag, fn, args, args[-1].numpy().copy(), k.info["schedule"]))
cm.FIRST_READ_MAX_BATCH = default
big = np.zeros(64 << 20 >> 3)
res = {flag: ([], []) for flag, *_ in runs}
for _ in range(21):
    for flag, fn, args, *_ in runs:
        big += 1.0
        t0 = time.perf_counter()
        fn(*args)
        t1 = time.perf_counter()
        fn(*args)
        t2 = time.perf_counter()
        res[flag][0].append((t2 - t1) * 1e6)
        res[flag][1].append((t1 - t0) * 1e6)
same = np.array_equal(runs[0][3], runs[1][3])
for flag, _, _, _, sch in runs:
    hot, cold = res[flag]
    print(f"{sys.argv[1]} {scheme} {t.attrs.get('mcpu', '')} first_read={flag} {sch} hot {np.median(hot):8.1f} us "
          f"cold {np.median(cold):8.1f} us same={same}", flush=True)
