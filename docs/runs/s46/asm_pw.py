import sys, numpy as np
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.testing import compile_prim_func
from aiq_tvm.targets import host_target
n, h, c, o = (int(v) for v in sys.argv[1:5])
T = host_target()
spec = ConvSpec(n, h, h, c, o, 1, 1, stride=(1, 1), padding=0)
rng = np.random.default_rng(0)
w = (rng.standard_normal((o, c, 1, 1)) * 0.05).astype("float32"); b = rng.standard_normal(o).astype("float32")
k = conv2d_kernel(spec, "fp32", w, b, act="relu", target=T, winograd=False)
print(k.info.get("schedule"), file=sys.stderr)
open("/work/s46/pw.s", "w").write(compile_prim_func(k.prim_func, T).mod.inspect_source("asm"))
open("/work/s46/pw.tir", "w").write(k.prim_func.script())
