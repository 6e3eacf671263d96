import sys, numpy as np, tvm
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.targets import host_target
import aiq_tvm.pipeline
T = tvm.target.Target(host_target())
n, h, c, o, k, s = (int(v) for v in sys.argv[1:7])
spec = ConvSpec(n, h, h, c, o, k, k, stride=(s, s), padding=k // 2)
rng = np.random.default_rng(0)
w = (rng.standard_normal((o, c, k, k)) * 0.05).astype("float32"); b = rng.standard_normal(o).astype("float32")
kern = conv2d_kernel(spec, "fp32", w, b, act="relu", target=T)
print(kern.info.get("schedule"))
mod = tvm.IRModule({"main": kern.prim_func})
for p in ("s_tir", "aiq_tvm"):
    asm = tvm.compile(mod, T, tir_pipeline=p).mod.inspect_source("asm")
    open(f"/work/s46/k_{p}.s", "w").write(asm)
    print(p, "memset", asm.count("memset"), "ws", asm.count("TVMBackendAllocWorkspace"), "lines", asm.count("\n"))
