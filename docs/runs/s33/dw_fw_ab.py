"""int8 depthwise kernels alone: weight codes as float32 constants (AIQ_DW_FLOAT_WEIGHTS on)
against int8 constants converted per tap (off); same tiles, outputs compared, interleaved
rounds, one process. dw_fw_ab.py TARGET SET(32|224) BATCH...
SCHEME=int4 (session 40): int4 kernels, 4-bit codes as float32 constants (on) against the
nibble formats i4 / i4d (off), tiles planned per format."""
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

S32 = [(16, 32, 1, 3), (16, 96, 2, 3), (8, 144, 1, 3), (8, 144, 2, 3), (4, 192, 1, 3),
       (4, 192, 2, 3), (2, 384, 1, 3), (2, 576, 1, 3), (2, 576, 2, 3), (1, 960, 1, 3)]
S224 = [(112, 32, 1, 3), (112, 96, 2, 3), (56, 144, 1, 3), (56, 144, 2, 3), (28, 192, 1, 3),
        (28, 192, 2, 3), (14, 384, 1, 3), (14, 576, 1, 3), (14, 576, 2, 3), (7, 960, 1, 3),
        (56, 144, 2, 5), (28, 240, 1, 5), (14, 672, 1, 5), (7, 1152, 1, 5)]
target = resolve_target(sys.argv[1])[0]
shapes = S32 if sys.argv[2] == "32" else S224
scheme = os.environ.get("SCHEME", "int8")
cols = "int8 weights us | float weights us" if scheme == "int8" else "nibbles us | float codes us"
rng = np.random.default_rng(0)
print(f"# target {target} TVM_NUM_THREADS={os.environ['TVM_NUM_THREADS']} clock cpu, "
      "medians of 7 rounds")
print(f"| layer | batch | {cols} | speedup |\n|---|---|---|---|---|")
tot = [0.0, 0.0]
for n in map(int, sys.argv[3:]):
    for h, c, s, k in shapes:
        spec = ConvSpec(n, h, h, c, c, k, k, stride=s, padding=k // 2, groups=c)
        x = rng.standard_normal(spec.in_shape).astype(np.float32) + 0.3
        w = (rng.standard_normal(spec.weight_shape) / 3).astype(np.float32)
        qp = ActQParams.from_range(float(x.min()), float(x.max()))
        xin = quant.quantize_act(x, qp)
        fns, outs = [], []
        for flag in ("0", "1"):
            os.environ["AIQ_DW_FLOAT_WEIGHTS"] = flag
            kern = conv2d_kernel(spec, scheme, w, None, act_qparams=qp, target=target)
            ex = tvm.compile(tvm.IRModule({"main": kern.prim_func}), target)
            a = [tvm.runtime.tensor(v) for v in (xin, *kern.consts)]
            a.append(tvm.runtime.tensor(np.zeros(kern.out_shape, kern.out_dtype)))
            f = ex.mod["main"]
            f(*a)
            outs.append(a[-1].numpy())
            fns.append(Timer(lambda f=f, a=a: f(*a), "cpu"))
        assert np.array_equal(outs[0], outs[1]), spec
        samp = [[], []]
        for _ in range(7):
            for i, t in enumerate(fns):
                samp[i].append(t(30.0))
        us = [float(np.median(v)) * 1e6 for v in samp]
        tot[0] += us[0]
        tot[1] += us[1]
        name = f"dw{k}{'/2' if s == 2 else ''} {c} @{h}"
        print(f"| {name} | {n} | {us[0]:.1f} | {us[1]:.1f} | {us[0] / us[1]:.2f}x |", flush=True)
print(f"| total | | {tot[0]:.1f} | {tot[1]:.1f} | {tot[0] / tot[1]:.2f}x |")
