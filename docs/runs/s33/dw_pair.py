"""fp32 vs int8 depthwise kernels of MobileNetV2 32x32 at batch B on a target, 1 thread."""
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

SHAPES = [(16, 32, 1), (16, 96, 2), (8, 144, 1), (8, 144, 2), (4, 192, 1), (4, 192, 2),
          (2, 384, 1), (2, 576, 1), (2, 576, 2), (1, 960, 1)]
target = resolve_target(sys.argv[1])[0]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 16
asm = sys.argv[3] if len(sys.argv) > 3 else None
rng = np.random.default_rng(0)
tot = {"fp32": 0, "int8": 0}
for h, c, s in SHAPES:
    spec = ConvSpec(n, h, h, c, c, 3, 3, stride=s, padding=1, groups=c)
    x = rng.standard_normal(spec.in_shape).astype(np.float32) + 0.3
    w = (rng.standard_normal(spec.weight_shape) / 3).astype(np.float32)
    qp = ActQParams.from_range(float(x.min()), float(x.max()))
    res = {}
    for scheme in ("fp32", "int8"):
        xin = quant.quantize_act(x, qp) if scheme != "fp32" else x
        k = conv2d_kernel(spec, scheme, w, None, act_qparams=qp, target=target)
        ex = tvm.compile(tvm.IRModule({"main": k.prim_func}), target)
        if asm and scheme == "int8" and f"{h}_{c}_{s}" == asm:
            open(f"/tmp/dw_{asm}.s", "w").write(ex.mod.imports[0].inspect_source("asm") if ex.mod.imports else ex.mod.inspect_source("asm"))
        a = [tvm.runtime.tensor(v) for v in (xin, *k.consts)]
        a.append(tvm.runtime.tensor(np.zeros(k.out_shape, k.out_dtype)))
        f = ex.mod["main"]
        t = Timer(lambda f=f, a=a: f(*a), "cpu")
        res[scheme] = (t, k.name if hasattr(k, "name") else "")
    samples = {sc: [] for sc in res}
    for _ in range(7):
        for sc, (t, _) in res.items():
            samples[sc].append(t(40.0))
    ms = {sc: float(np.median(v)) * 1e3 for sc, v in samples.items()}
    for sc in ms: tot[sc] += ms[sc]
    print(f"dw{'/2' if s == 2 else ''} {c}@{h} b{n}: fp32 {ms['fp32']*1e3:.1f} us  int8 {ms['int8']*1e3:.1f} us  fp32/int8 {ms['fp32']/ms['int8']:.2f}", flush=True)
print(f"total fp32 {tot['fp32']*1e3:.1f} us int8 {tot['int8']*1e3:.1f} us ratio {tot['fp32']/tot['int8']:.2f}")
