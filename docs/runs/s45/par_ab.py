"""One fp32 conv kernel under each parallel split (best plan of each), alternating, hot and
after a 64 MB write."""
import sys, os, time, numpy as np
import aiq_tvm.targets.x86.conv2d as cv
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.testing import compile_prim_func, kernel_args
from aiq_tvm.targets import host_target
n, h, c, o, k, s = (int(v) for v in sys.argv[1:7])
res = len(sys.argv) > 7 and sys.argv[7] == "res"
T = host_target()
spec = ConvSpec(n, h, h, c, o, k, k, stride=(s, s), padding=k // 2)
rng = np.random.default_rng(0)
w = (rng.standard_normal((o, c, k, k)) * 0.05).astype("float32"); b = rng.standard_normal(o).astype("float32")
x = (rng.standard_normal(spec.in_shape) + 0.2).astype("float32")
r = rng.standard_normal(spec.out_shape).astype("float32") if res else None
orig = cv.conv_candidates
def only(pred):
    def f(*a, **kw):
        cands = [t for t in orig(*a, **kw) if pred(t[1])]
        return cands
    return f
kinds = {"default": None, "channels": lambda p: p.tile.par == ("o",),
         "images": lambda p: p.tile.par == ("s0",), "rows": lambda p: p.tile.par == ("s0", "s1")}
fs = []
for name, pred in kinds.items():
    cv.conv_candidates = orig if pred is None else only(pred)
    try:
        kern = conv2d_kernel(spec, "fp32", w, b, act="relu", target=T, winograd=False, residual=res)
    except ValueError as e:
        print(name, "none:", str(e)[:80]); continue
    cv.conv_candidates = orig
    fs.append((name, kern.info.get("schedule"), compile_prim_func(kern.prim_func, T).mod["main"], kernel_args(kern, x, r)))
junk = np.zeros(64 << 20, np.uint8)
hot = {f[0]: [] for f in fs}; cold = {f[0]: [] for f in fs}
for _ in range(15):
    for name, _, f, a in fs:
        f(*a); t0 = time.perf_counter(); f(*a); hot[name].append(time.perf_counter() - t0)
        junk += 1
        t0 = time.perf_counter(); f(*a); cold[name].append(time.perf_counter() - t0)
for name, sched, _, _ in fs:
    print(f"{sys.argv[1:]} {name:9s} {sched:45s} hot {np.median(hot[name])*1e3:.3f} ms cold {np.median(cold[name])*1e3:.3f} ms")
