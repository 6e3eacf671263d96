"""Kernels alone, session 50: accumulators starting at -corr (conv2d._corr_in_acc, "init")
against starting at 0 with the correction subtracted in the epilogue (AIQ_CORR_IN_ACC=0,
"subtract"); int8, relu6, uint8 output; one thread, medians of 7 interleaved rounds of CPU
time; outputs compared. corr_kernels.py TARGET N H W C O K[/S][dw] ..."""
import os
import sys

import numpy as np
import tvm

from aiq_tvm import quant
from aiq_tvm.bench import Timer
from aiq_tvm.quant import ActQParams
from aiq_tvm.targets import resolve_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.testing import compile_prim_func

target = resolve_target(sys.argv[1])[0]
n, h, w = map(int, sys.argv[2:5])
rng = np.random.default_rng(0)
for case in sys.argv[5:]:
    c, o, k = case.split(",")
    dw = k.endswith("dw")
    k, _, st = k.removesuffix("dw").partition("/")
    c, o, k, st = int(c), int(o), int(k), int(st or 1)
    spec = ConvSpec(n, h, w, c, c if dw else o, k, k, stride=st, padding=k // 2,
                    groups=c if dw else 1)
    x = np.maximum(rng.standard_normal(spec.in_shape), 0).astype(np.float32) * 2
    wt = (rng.standard_normal(spec.weight_shape) / 3).astype(np.float32)
    qp = ActQParams.from_range(float(x.min()), float(x.max()))
    xin = quant.quantize_act(x, qp)
    res, outs = {}, {}
    for name in ("subtract", "init"):
        os.environ["AIQ_CORR_IN_ACC"] = "1" if name == "init" else "0"
        kern = conv2d_kernel(spec, "int8", wt, None, act="relu6", act_qparams=qp,
                             out_qparams=ActQParams.from_range(0.0, 6.0), target=target)
        f = compile_prim_func(kern.prim_func, target)
        a = [tvm.runtime.tensor(v) for v in (xin, *kern.consts)]
        a.append(tvm.runtime.tensor(np.zeros(spec.out_shape, "uint8")))
        f(*a)
        outs[name] = a[-1].numpy()
        res[name] = Timer(lambda f=f, a=a: f(*a), "cpu")
    samples = {sc: [] for sc in res}
    for _ in range(7):
        for sc, t in res.items():
            samples[sc].append(t(40.0))
    us = {sc: float(np.median(v)) * 1e6 for sc, v in samples.items()}
    print(f"{'dw' if dw else 'conv'}{k}/{st} {c}->{spec.O}@{h}x{w} b{n} "
          f"same={np.array_equal(outs['subtract'], outs['init'])}: subtract "
          f"{us['subtract']:.1f}  init {us['init']:.1f}  speed-up "
          f"{us['subtract'] / us['init']:.3f}", flush=True)
