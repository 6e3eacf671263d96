"""Session 36: int8 depthwise kernels (uint8 output, as in a model) with full-width vectors
against half-width ones (``conv2d.DW_HALF_WIDTH_INT``), and the fp32 kernel beside, one call
timed alone, medians of 200 calls, outputs of the two int8 kernels compared bit for bit.
Arguments ``TARGET`` (``host`` or a JSON target) then shapes ``H,C,K,STRIDE``::

    TVM_NUM_THREADS=1 flock /work/bench.lock python docs/runs/s36/dw_int8_half.py host \\
        56,72,3,1 28,120,5,1

Output: dw_int8_half.txt.
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

t = tvm.target.Target(host_target() if sys.argv[1] == "host" else json.loads(sys.argv[1]))
qp = ActQParams.from_range(0.0, 3.0)
print(f"# {sys.argv[1]}: us per call, one thread")


def timed(spec, scheme, w, b, x):
    k = conv2d_kernel(spec, scheme, w, b, act="relu", act_qparams=qp if scheme != "fp32" else None,
                      out_qparams=qp if scheme != "fp32" else None, target=t)
    fn = testing.compile_prim_func(k.prim_func, t).mod["main"]
    args = testing.kernel_args(k, testing.kernel_input(scheme, x, qp))
    fn(*args)
    ts = []
    for _ in range(200):
        t0 = time.perf_counter()
        fn(*args)
        ts.append(time.perf_counter() - t0)
    return np.median(ts) * 1e6, args[-1].numpy().copy(), k.info["schedule"]


for shape in sys.argv[2:]:
    h, c, k, s = map(int, shape.split(","))
    spec = ConvSpec(1, h, h, c, c, k, k, stride=s, padding=(k // 2, k // 2), groups=c)
    rng = np.random.default_rng(0)
    w = (rng.standard_normal(spec.weight_shape) / k).astype("float32")
    b = rng.standard_normal(c).astype("float32")
    x = np.abs(rng.standard_normal(spec.in_shape)).astype("float32")
    fp32 = timed(spec, "fp32", w, b, x)
    cm.DW_HALF_WIDTH_INT = False
    full = timed(spec, "int8", w, b, x)
    cm.DW_HALF_WIDTH_INT = True
    half = timed(spec, "int8", w, b, x)
    print(f"{shape:12} fp32 {fp32[0]:7.1f} ({fp32[2]})  int8 full {full[0]:7.1f} ({full[2]})  "
          f"half {half[0]:7.1f} ({half[2]})  full/half {full[0] / half[0]:.2f}x  "
          f"identical {np.array_equal(full[1], half[1])}", flush=True)
