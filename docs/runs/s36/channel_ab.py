"""Session 36: fp32 conv kernels planned without and with channel tasks offered where the first
read ranks the plans (``conv2d.CHANNEL_TASKS_BY_FIRST_READ``), each timed alone hot (the call
right after the same call) and cold (64 MB written before the call), medians of 21 alternating
rounds, outputs compared bit for bit. Arguments: shapes as plan_diff.py keys
``N,H,W,C,O,KH,KW,SH,PH,PW,DIL,GROUPS`` (several), then optionally ``--target JSON``::

    TVM_NUM_THREADS=2 flock /work/bench.lock python docs/runs/s36/channel_ab.py \\
        1,17,17,192,192,7,1,1,3,0,1,1

Output: channel_ab.txt. The constant is the experiment's, not kept: apply channel_tasks.patch
(``git apply docs/runs/s36/channel_tasks.patch``) to run this.
"""
import json
import sys
import time

import numpy as np
import tvm

from aiq_tvm import testing
from aiq_tvm.targets import host_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.targets.x86 import conv2d as cm

argv = sys.argv[1:]
target = host_target()
if "--target" in argv:
    i = argv.index("--target")
    target = json.loads(argv[i + 1])
    del argv[i:i + 2]
t = tvm.target.Target(target)
big = np.zeros(64 << 20 >> 3)
print(f"# target {json.dumps(target) if isinstance(target, dict) else target}: off / on, "
      "hot and cold medians in us")
for shape in argv:
    n, h, w_, c, o, kh, kw, sh, ph, pw, d, g = map(int, shape.split(","))
    spec = ConvSpec(n, h, w_, c, o, kh, kw, stride=sh, padding=(ph, pw), dilation=d, groups=g)
    rng = np.random.default_rng(0)
    w = (rng.standard_normal(spec.weight_shape) / np.sqrt(c // g * kh * kw)).astype("float32")
    b = rng.standard_normal(o).astype("float32")
    x = rng.standard_normal(spec.in_shape).astype("float32")
    runs = []
    for value in (False, True):
        cm.CHANNEL_TASKS_BY_FIRST_READ = value
        k = conv2d_kernel(spec, "fp32", w, b, act="relu", target=t)
        fn = testing.compile_prim_func(k.prim_func, t).mod["main"]
        args = testing.kernel_args(k, x)
        fn(*args)
        runs.append((fn, args, args[-1].numpy().copy(), k.info["schedule"],
                     ".".join(k.plan.par)))
    cm.CHANNEL_TASKS_BY_FIRST_READ = True
    same = np.array_equal(runs[0][2], runs[1][2])
    hot, cold = [[], []], [[], []]
    for _ in range(21):
        for i, (fn, args, *_) in enumerate(runs):
            big += 1.0
            t0 = time.perf_counter()
            fn(*args)
            t1 = time.perf_counter()
            fn(*args)
            t2 = time.perf_counter()
            cold[i].append(t1 - t0)
            hot[i].append(t2 - t1)
    mh = [np.median(v) * 1e6 for v in hot]
    mc = [np.median(v) * 1e6 for v in cold]
    print(f"{shape:34} off {runs[0][3]} par={runs[0][4]}  on {runs[1][3]} par={runs[1][4]}  "
          f"hot {mh[0]:8.1f} {mh[1]:8.1f} ({mh[0] / mh[1]:.2f}x)  cold {mc[0]:8.1f} "
          f"{mc[1]:8.1f} ({mc[0] / mc[1]:.2f}x)  identical {same}", flush=True)
