"""Session 49: the fused depthwise -> pointwise FP32 kernel (targets/x86/dwpw.py) against the
two kernels it replaces, alone, hot cache, two threads.

    TVM_NUM_THREADS=2 python docs/runs/s49/dwpw_pairs.py [BATCH ...]

Per pair: the max relative difference of the outputs (0: bit for bit), the two kernels'
time in sequence and the fused kernel's (median of 7 repeats of a timed loop, three
alternations, median), and whether targets.x86.dwpw.fusion_pays would fuse it."""
import sys
import time

import numpy as np
import tvm

from aiq_tvm.targets import resolve_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.targets.x86.dwpw import depthwise_pointwise_kernel, fusion_pays, fusion_reason
from aiq_tvm.testing import compile_prim_func

# (H, C, O, stride, k) of the depthwise -> project pairs of MobileNetV2 (and a 5x5 one).
PAIRS = [(112, 32, 16, 1, 3), (112, 96, 24, 2, 3), (56, 144, 24, 1, 3), (56, 144, 32, 2, 3),
         (28, 192, 32, 1, 3), (28, 192, 64, 2, 3), (14, 384, 64, 1, 3), (14, 576, 96, 1, 3),
         (14, 576, 160, 2, 3), (7, 960, 160, 1, 3), (56, 72, 40, 2, 5), (28, 120, 40, 1, 5)]


def timed(f, number):
    f()
    ts = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(number):
            f()
        ts.append((time.perf_counter() - t0) / number)
    return float(np.median(ts)) * 1e6


def run(n, h, c, o, s, k, target):
    rng = np.random.default_rng(0)
    dws = ConvSpec(n, h, h, c, c, k, k, stride=s, padding=k // 2, groups=c)
    pws = ConvSpec(n, dws.OH, dws.OW, c, o, 1, 1)
    why = fusion_reason(dws, pws, target)
    if why:
        print(f"N{n} {h}x{h} C{c} O{o} s{s} k{k}: not fusable: {why}")
        return
    dw_w = rng.standard_normal(dws.weight_shape).astype(np.float32) * 0.3
    dw_b = rng.standard_normal(c).astype(np.float32)
    pw_w = rng.standard_normal(pws.weight_shape).astype(np.float32) * 0.1
    pw_b = rng.standard_normal(o).astype(np.float32)
    kf = depthwise_pointwise_kernel(dws, pws, dw_w, dw_b, pw_w, pw_b, dw_act="relu6",
                                    target=target)
    kd = conv2d_kernel(dws, "fp32", dw_w, dw_b, act="relu6", target=target)
    kp = conv2d_kernel(pws, "fp32", pw_w, pw_b, target=target)
    mf, md, mp = (compile_prim_func(kk.prim_func, target)["main"] for kk in (kf, kd, kp))
    t = lambda a: tvm.runtime.tensor(a)  # noqa: E731
    x = t(rng.standard_normal(dws.in_shape).astype(np.float32))
    mid = t(np.zeros(dws.out_shape, np.float32))
    y1, y2 = t(np.zeros(pws.out_shape, np.float32)), t(np.zeros(pws.out_shape, np.float32))
    cd, cp, cf = ([t(v) for v in kk.consts] for kk in (kd, kp, kf))

    def separate():
        md(x, *cd, mid)
        mp(mid, *cp, y1)

    def fused():
        mf(x, *cf, y2)

    separate()
    fused()
    err = float(np.abs(y1.numpy() - y2.numpy()).max() / np.abs(y1.numpy()).max())
    number = max(3, int(2e7 / (n * h * h * c)))
    ts, tf = [], []
    for _ in range(3):
        ts.append(timed(separate, number))
        tf.append(timed(fused, number))
    sep, fus = float(np.median(ts)), float(np.median(tf))
    print(f"N{n} {h}x{h} C{c} O{o} s{s} k{k}: rel diff {err:.1e}; separate {sep:.1f} us "
          f"({kd.info['schedule']} + {kp.info['schedule']}), fused {fus:.1f} us "
          f"({kf.info['schedule']}), speed-up {sep / fus:.2f}, fusion_pays "
          f"{fusion_pays(dws, pws, target)}", flush=True)


if __name__ == "__main__":
    target = resolve_target("llvm")[0]
    for n in [int(a) for a in sys.argv[1:]] or [1, 8]:
        for pair in PAIRS:
            run(n, *pair, target)
