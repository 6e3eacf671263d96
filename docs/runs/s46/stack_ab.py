import sys, os, time, numpy as np, tvm
sys.path.insert(0, "/work/s46")
import stack_acc
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.testing import kernel_args
from aiq_tvm.targets import host_target
T = tvm.target.Target(host_target())
n, h, c, o, k, s = (int(v) for v in sys.argv[1:7])
prec = sys.argv[7] if len(sys.argv) > 7 else "fp32"
spec = ConvSpec(n, h, h, c, o, k, k, stride=(s, s), padding=k // 2)
rng = np.random.default_rng(0)
w = (rng.standard_normal((o, c, k, k)) * 0.05).astype("float32"); b = rng.standard_normal(o).astype("float32")
x = (rng.standard_normal(spec.in_shape) + 0.2).astype("float32")
kern = conv2d_kernel(spec, prec, w, b, act="relu", target=T, winograd=False)
print(kern.info.get("schedule"))
mod = tvm.IRModule({"main": kern.prim_func})
fa = tvm.tirx.build(mod, T)["main"]
lb = tvm.tirx.build(mod, T, pipeline="aiq_stack")
fb = lb["main"]
asm = lb.inspect_source("asm")
print("memset calls", asm.count("memset"), "AllocWorkspace", asm.count("TVMBackendAllocWorkspace"))
aa, ab = kernel_args(kern, x), kernel_args(kern, x)
fa(*aa); fb(*ab)
print("max diff", float(np.abs(aa[-1].numpy() - ab[-1].numpy()).max()))
t = {0: [], 1: []}
for r in range(21):
    for i, (f, a) in enumerate(((fa, aa), (fb, ab))):
        f(*a); t0 = time.perf_counter(); f(*a); f(*a); f(*a); t[i].append((time.perf_counter() - t0) / 3)
print(f"heap acc {np.median(t[0])*1e3:.3f} ms, stack acc {np.median(t[1])*1e3:.3f} ms, ratio {np.median(t[1])/np.median(t[0]):.3f}")
open("/work/s46/pw_stack.s","w").write(asm)
