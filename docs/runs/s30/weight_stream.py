"""Session 30: fp32 conv kernels planned with and without the weight-streaming terms
(``AIQ_WEIGHT_STREAM=0`` / unset), batch 1, same weights and input, interleaved rounds.
Arguments ``N,H,C,O,K,DILATION[,STRIDE]``; ``TARGET_JSON`` another target than this host's.
Output: weight_stream.txt::

    TVM_NUM_THREADS=2 flock /work/bench.lock python docs/runs/s30/weight_stream.py \\
        1,28,2048,512,1,1 1,28,512,2048,1,1 1,28,2048,512,3,1 1,14,960,256,3,12 \\
        1,28,512,512,3,4 1,7,2048,512,1,1 8,7,2048,512,1,1
"""
import os, sys
sys.path.insert(0, "/work/main/docs/runs/s27")
from dw_border import time_interleaved, compiled
import numpy as np, tvm
from aiq_tvm import testing
from aiq_tvm.targets import host_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
import json

tj = os.environ.get("TARGET_JSON")
t = tvm.target.Target(json.loads(tj) if tj else host_target())
for arg in sys.argv[1:]:
    n, h, c, o, k, d, *st = map(int, arg.split(","))
    spec = ConvSpec(n, h, h, c, o, k, k, stride=st[0] if st else 1, padding=d * (k // 2),
                    dilation=d)
    rng = np.random.default_rng(0)
    w = (rng.standard_normal(spec.weight_shape) / np.sqrt(c * k * k)).astype("float32")
    b = rng.standard_normal(o).astype("float32"); x = rng.standard_normal(spec.in_shape).astype("float32")
    fns, names, outs = [], [], []
    for env in ("0", ""):
        os.environ["AIQ_WEIGHT_STREAM"] = env
        kk = conv2d_kernel(spec, "fp32", w, b, act="relu", target=t)
        f, args, out = compiled(kk, x, t)
        fns.append((f, args)); outs.append(out)
        names.append(f"[{'off' if env == '0' else 'on'}] {kk.info['schedule']}" + ("" if kk.plan is None else f" {'.'.join(kk.plan.order)}"))
    ts = time_interleaved(fns, rounds=5, calls=3)
    err = testing.relative_error(outs[1], outs[0])
    for nm, tt in zip(names, ts):
        print(arg, nm, f"{tt:.3f} ms {2*spec.macs()/tt/1e6:.0f} GFLOP/s", flush=True)
    print(arg, f"off/on x{ts[0]/ts[1]:.2f}, outputs differ by {err:.1e}", flush=True)
