"""1x1 conv 64 -> 256 at 56 x 56, batch 8, with the residual add: hot vs after a 64 MB write."""
import sys, os, time, numpy as np
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.testing import compile_prim_func
from aiq_tvm.targets import host_target
import tvm
n, h, c, o, res = (int(v) for v in sys.argv[1:6])
T = host_target()
spec = ConvSpec(n, h, h, c, o, 1, 1)
rng = np.random.default_rng(0)
w = (rng.standard_normal((o, c, 1, 1)) * 0.05).astype("float32"); b = rng.standard_normal(o).astype("float32")
k = conv2d_kernel(spec, "fp32", w, b, act="relu", target=T, residual=bool(res))
print(k.info.get("schedule"), k.info.get("weight_prefetch"))
f = compile_prim_func(k.prim_func, T).mod["main"]
from aiq_tvm.testing import kernel_args
x = (rng.standard_normal(spec.in_shape) + 0.2).astype("float32")
r = rng.standard_normal(spec.out_shape).astype("float32") if res else None
args = kernel_args(k, x, r)
junk = np.zeros(int(os.environ.get("JUNK_MB", "64")) << 20, np.uint8)
hot, cold = [], []
for _ in range(20):
    t0 = time.perf_counter(); f(*args); hot.append(time.perf_counter() - t0)
    junk += 1
    t0 = time.perf_counter(); f(*args); cold.append(time.perf_counter() - t0)
print(f"{sys.argv[1:6]} hot {np.median(hot)*1e3:.3f} ms, cold {np.median(cold)*1e3:.3f} ms")
if res:
    args2 = list(args); args2[-1] = args2[-2]  # output written over the residual
    hot2, cold2 = [], []
    for _ in range(20):
        t0 = time.perf_counter(); f(*args2); hot2.append(time.perf_counter() - t0)
        junk += 1
        t0 = time.perf_counter(); f(*args2); cold2.append(time.perf_counter() - t0)
    print(f"in place: hot {np.median(hot2)*1e3:.3f} ms, cold {np.median(cold2)*1e3:.3f} ms")
if res:
    a, b_ = [], []
    for _ in range(25):
        junk += 1
        t0 = time.perf_counter(); f(*args); a.append(time.perf_counter() - t0)
        junk += 1
        t0 = time.perf_counter(); f(*args2); b_.append(time.perf_counter() - t0)
    print(f"interleaved cold: separate output {np.median(a)*1e3:.3f} ms, in place {np.median(b_)*1e3:.3f} ms")
