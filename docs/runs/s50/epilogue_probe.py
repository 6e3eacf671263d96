"""Timing probe: what the requantizing epilogue's steps cost in int8 kernels alone (not
a kernel change). Variants of one layer, one process, medians of 7 interleaved rounds of
CPU time: base (the codes clipped to [0, 255] before narrowing, as built before session
50), noclip (that clip dropped: the narrowing truncates; same values, the codes are already
within it; session 50's rule on AVX-512), nocorr (also no
zero-point correction subtracted: wrong values, a cost probe only).
epilogue_probe.py TARGET N H W C O K[/S] [dw]"""
import sys

import numpy as np
import tvm

from aiq_tvm import quant
from aiq_tvm.bench import Timer
from aiq_tvm.quant import ActQParams
from aiq_tvm.targets import resolve_target
from aiq_tvm.targets.x86 import ConvSpec, common, conv2d_kernel
from aiq_tvm.testing import compile_prim_func

target = resolve_target(sys.argv[1])[0]
n, h, w, c, o = map(int, sys.argv[2:7])
k, _, st = sys.argv[7].partition("/")
k, st = int(k), int(st or 1)
dw = len(sys.argv) > 8 and sys.argv[8] == "dw"
spec = ConvSpec(n, h, w, c, c if dw else o, k, k, stride=st, padding=k // 2,
                groups=c if dw else 1)
rng = np.random.default_rng(0)
x = np.maximum(rng.standard_normal(spec.in_shape), 0).astype(np.float32) * 2
wt = (rng.standard_normal(spec.weight_shape) / 3).astype(np.float32)
qp = ActQParams.from_range(float(x.min()), float(x.max()))
oq = ActQParams.from_range(0.0, 6.0)
xin = quant.quantize_act(x, qp)

base_codes = common._rounding_convert_codes
base_int, base_float = common._int_epilogue, common._float_acc_int_epilogue


def clip_codes(x_, zp, lo_c, hi_c, truncating_narrow=False):
    return base_codes(x_, zp, lo_c, hi_c, False)


def noclip_codes(x_, zp, lo_c, hi_c, truncating_narrow=False):
    return base_codes(x_, zp, lo_c, hi_c, True)


def nocorr_int(acc_val, o_, consts, debug_acc, acc_shift):
    return acc_val.astype("float32") * consts["comb"][o_] + consts["bias"][o_]


def nocorr_float(acc_val, o_, consts, debug_acc):
    return acc_val * consts["comb"][o_] + consts["bias"][o_]


res, outs = {}, {}
for name in ("base", "noclip", "nocorr"):
    common._rounding_convert_codes = clip_codes if name == "base" else noclip_codes
    common._EPILOGUE_EXPRS["int"] = nocorr_int if name == "nocorr" else base_int
    common._float_acc_int_epilogue = nocorr_float if name == "nocorr" else base_float
    kern = conv2d_kernel(spec, "int8", wt, None, act="relu6", act_qparams=qp, out_qparams=oq,
                         target=target)
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
      f"noclip same={np.array_equal(outs['base'], outs['noclip'])}: "
      + "  ".join(f"{sc} {v:.1f}" for sc, v in us.items())
      + f"  base/noclip {us['base'] / us['noclip']:.3f}"
      + f"  base/nocorr {us['base'] / us['nocorr']:.3f}")
