"""SSE2 (``x86-64``) int4 kernels against the int8 one on MobileNetV2's late 1 x 1 layers at
batch 1: the in-loop format (``decode_once=False``) and the decode-once one, medians over 15
rounds of each kernel's time over the int8 kernel's (the best of 3 x 100 calls per round).
Run from a checkout: ``TVM_NUM_THREADS=1 python docs/runs/s17_sse_int4_kernels.py``
(docs/performance_isa.md, session 17)."""

import statistics

import numpy as np
import tvm

from aiq_tvm import quant
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel

TARGET = {"kind": "llvm", "mcpu": "x86-64"}
SPECS = [ConvSpec(1, 1, 1, 320, 1280, 1, 1), ConvSpec(1, 1, 1, 960, 320, 1, 1),
         ConvSpec(1, 2, 2, 160, 960, 1, 1), ConvSpec(1, 2, 2, 576, 96, 1, 1)]
VARIANTS = [("w8", "int8", {}), ("loop", "int4", {"decode_once": False}),
            ("dec", "int4", {"decode_once": True})]


def timers(spec, rng):
    x = rng.standard_normal(spec.in_shape).astype(np.float32)
    w = (rng.standard_normal(spec.weight_shape) / 5).astype(np.float32)
    qp = quant.ActQParams.from_range(float(x.min()), float(x.max()))
    xq = quant.quantize_act(x, qp)
    out = {}
    for name, scheme, kw in VARIANTS:
        k = conv2d_kernel(spec, scheme, w, None, act_qparams=qp, target=TARGET, **kw)
        ex = tvm.compile(tvm.IRModule({"main": k.prim_func}), tvm.target.Target(TARGET))
        args = [tvm.runtime.tensor(a) for a in (xq, *k.consts)]
        args.append(tvm.runtime.tensor(np.zeros(k.out_shape, k.out_dtype)))
        f = ex.mod.time_evaluator("main", tvm.cpu(), number=100, repeat=3)
        out[name] = (f, args, k.info["weight_format"])
    return out


def main():
    rng = np.random.default_rng(0)
    for spec in SPECS:
        fs = timers(spec, rng)
        ratios = {n: [] for n in fs}
        for _ in range(15):
            t = {n: min(f(*a).results) for n, (f, a, _) in fs.items()}
            for n in fs:
                ratios[n].append(t[n] / t["w8"])
        print(f"{spec.H}x{spec.W} {spec.C}->{spec.O}: " + ", ".join(
            f"{n} ({fs[n][2]}) {statistics.median(v):.2f}x w8" for n, v in ratios.items()),
            flush=True)


if __name__ == "__main__":
    main()
