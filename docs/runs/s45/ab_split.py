"""A/B in one process: a 1x1 conv kernel with rows split (default) vs output channels split,
alternating, hot and after a 64 MB write."""
import sys, time, numpy as np
import aiq_tvm.targets.x86.conv2d as cv
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.testing import compile_prim_func, kernel_args, kernel_input
from aiq_tvm.targets import host_target
T = host_target()
junk = np.zeros(64 << 20, np.uint8)
for s in sys.argv[1:]:
    n, h, c, o = (int(v) for v in s.split(","))
    spec = ConvSpec(n, h, h, c, o, 1, 1)
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((o, c, 1, 1)) * 0.05).astype("float32"); b = rng.standard_normal(o).astype("float32")
    x = (rng.standard_normal(spec.in_shape) + 0.2).astype("float32")
    fs = []
    for share in (0.75, 0.0):
        cv.ROW_SPLIT_L2_SHARE = share
        k = conv2d_kernel(spec, "fp32", w, b, act="relu", target=T)
        fs.append((k.info.get("schedule"), compile_prim_func(k.prim_func, T).mod["main"], kernel_args(k, kernel_input("fp32", x, None))))
    hot = [[], []]; cold = [[], []]
    for _ in range(200):
        for i, (_, f, a) in enumerate(fs):
            t0 = time.perf_counter(); f(*a); hot[i].append(time.perf_counter() - t0)
            junk += 1
            t0 = time.perf_counter(); f(*a); cold[i].append(time.perf_counter() - t0)
    r = lambda v: f"{np.median(v)*1e6:.1f}"
    print(f"{s}: rows {fs[0][0]} hot {r(hot[0])} cold {r(cold[0])} | channels {fs[1][0]} hot {r(hot[1])} cold {r(cold[1])}", flush=True)
