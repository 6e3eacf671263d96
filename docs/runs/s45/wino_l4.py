"""Time one fp32 conv kernel direct vs Winograd, hot and after a 64 MB write."""
import sys, os, time, numpy as np
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.testing import compile_prim_func, kernel_args, kernel_input
n, h, c, o = (int(v) for v in sys.argv[1:5])
T = {"kind": "llvm", "mcpu": "rocketlake", "num-cores": 2, "mattr": ["+amx-tile", "+amx-int8"]}
spec = ConvSpec(n, h, h, c, o, 3, 3, padding=1)
rng = np.random.default_rng(0)
w = (rng.standard_normal((o, c, 3, 3)) * 0.05).astype("float32"); b = rng.standard_normal(o).astype("float32")
x = (rng.standard_normal(spec.in_shape) + 0.2).astype("float32")
junk = np.zeros(int(os.environ.get("JUNK_MB", "64")) << 20, np.uint8)
for wino in (False, 2, 4, None):
    k = conv2d_kernel(spec, "fp32", w, b, act="relu", target=T, winograd=wino)
    f = compile_prim_func(k.prim_func, T).mod["main"]
    args = kernel_args(k, kernel_input("fp32", x, None))
    hot, cold = [], []
    for _ in range(30):
        t0 = time.perf_counter(); f(*args); hot.append(time.perf_counter() - t0)
        junk += 1
        t0 = time.perf_counter(); f(*args); cold.append(time.perf_counter() - t0)
    print(f"winograd={wino}: {k.info.get('schedule')} hot {np.median(hot)*1e3:.3f} ms, cold {np.median(cold)*1e3:.3f} ms", flush=True)
