"""Time one conv kernel (ResNet-50 layer4 3x3 512, batch 8, int8, haswell) hot and after a cache flush."""
import sys, time, numpy as np, tvm
from aiq_tvm.quant import ActQParams
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.testing import compile_prim_func, kernel_args, kernel_input
import aiq_tvm
T = {"kind": "llvm", "mcpu": "haswell", "num-cores": 1}
spec = ConvSpec(8, 7, 7, 512, 512, 3, 3, padding=1)
rng = np.random.default_rng(0)
w = (rng.standard_normal((512, 512, 3, 3)) * 0.05).astype("float32"); b = rng.standard_normal(512).astype("float32")
x = (rng.standard_normal(spec.in_shape) + 0.2).astype("float32")
qp = ActQParams.from_range(-3.0, 3.0)
k = conv2d_kernel(spec, sys.argv[1], w, b, act="relu", act_qparams=qp, target=T, winograd=4)
print(aiq_tvm.__file__, k.info.get("schedule"), "prefetch", k.info.get("weight_prefetch"))
f = compile_prim_func(k.prim_func, T).mod["main"]
args = kernel_args(k, kernel_input(sys.argv[1], x, qp))
junk = np.zeros(64 << 20, np.uint8)
hot, cold = [], []
for _ in range(30):
    t0 = time.perf_counter(); f(*args); hot.append(time.perf_counter() - t0)
    junk += 1
    t0 = time.perf_counter(); f(*args); cold.append(time.perf_counter() - t0)
print(f"hot {np.median(hot)*1e3:.3f} ms, cold {np.median(cold)*1e3:.3f} ms")
