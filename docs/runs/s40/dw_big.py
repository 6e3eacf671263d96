"""fp32 vs int8 vs int4 depthwise kernels alone on a target, one thread, CPU time, medians of
7 interleaved rounds; prints each kernel's plan. dw_big.py TARGET BATCH H W C K [K...]"""
import os
import sys

os.environ.setdefault("TVM_NUM_THREADS", "1")
import numpy as np
import tvm

from aiq_tvm import quant
from aiq_tvm.bench import Timer
from aiq_tvm.quant import ActQParams
from aiq_tvm.targets import resolve_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel

target = resolve_target(sys.argv[1])[0]
n, h, w, c = map(int, sys.argv[2:6])
rng = np.random.default_rng(0)
for k in map(int, sys.argv[6:]):
    spec = ConvSpec(n, h, w, c, c, k, k, stride=1, padding=k // 2, groups=c)
    x = rng.standard_normal(spec.in_shape).astype(np.float32) + 0.3
    wt = (rng.standard_normal(spec.weight_shape) / 3).astype(np.float32)
    qp = ActQParams.from_range(float(x.min()), float(x.max()))
    res = {}
    for scheme in ("fp32", "int8", "int4"):
        xin = quant.quantize_act(x, qp) if scheme != "fp32" else x
        kern = conv2d_kernel(spec, scheme, wt, None, act_qparams=qp, target=target)
        print(scheme, getattr(kern, "plan", None) or getattr(kern, "name", ""), flush=True)
        ex = tvm.compile(tvm.IRModule({"main": kern.prim_func}), target)
        a = [tvm.runtime.tensor(v) for v in (xin, *kern.consts)]
        a.append(tvm.runtime.tensor(np.zeros(kern.out_shape, kern.out_dtype)))
        f = ex.mod["main"]
        res[scheme] = Timer(lambda f=f, a=a: f(*a), "cpu")
    samples = {sc: [] for sc in res}
    for _ in range(7):
        for sc, t in res.items():
            samples[sc].append(t(40.0))
    us = {sc: float(np.median(v)) * 1e6 for sc, v in samples.items()}
    print(f"dw{k} {c}@{h}x{w} b{n}: " + "  ".join(f"{sc} {v:.1f} us" for sc, v in us.items())
          + f"  fp32/int8 {us['fp32'] / us['int8']:.2f}", flush=True)
