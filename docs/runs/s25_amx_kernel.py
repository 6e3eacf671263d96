"""Ad-hoc (session 25): one int8 conv layer built with AMX tiles and with the vpdpbusd kernel
(``AIQ_AMX``), requantizing epilogue with a uint8 residual, outputs compared bit for bit, then
each timed hot (TVM's time_evaluator, median of 7 repeats of 20 calls).

    TVM_NUM_THREADS=2 flock /work/bench.lock python docs/runs/s25_amx_kernel.py \\
        N,H,W,C,O,KH,KW,STRIDE
"""
import os
import sys

import numpy as np
import tvm

from aiq_tvm import testing
from aiq_tvm.quant import ActQParams
from aiq_tvm.targets import host_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel

n, h, w_, c, o, kh, kw, s = map(int, sys.argv[1].split(","))
spec = ConvSpec(n, h, w_, c, o, kh, kw, stride=(s, s), padding=kh // 2)
rng = np.random.default_rng(0)
w = (rng.standard_normal((o, c, kh, kw)) * 0.05).astype("float32")
b = rng.standard_normal(o).astype("float32")
target = tvm.target.Target(host_target())
qp, oq = ActQParams.from_range(-4.0, 4.0), ActQParams.from_range(0.0, 6.0)
kernels = {}
for flag in ("0", "1"):
    os.environ["AIQ_AMX"] = flag
    kernels[flag] = conv2d_kernel(spec, "int8", w, b, act="relu", act_qparams=qp,
                                  out_qparams=oq, residual=True, residual_qparams=oq,
                                  target=target)
xin = testing.kernel_input("int8", rng.standard_normal(spec.in_shape).astype("float32"), qp)
res = rng.integers(0, 256, spec.out_shape).astype("uint8")
outs, times = {}, {}
for flag, kernel in kernels.items():
    args = testing.kernel_args(kernel, xin, res)
    lib = testing.compile_prim_func(kernel.prim_func, target).mod
    lib["main"](*args)
    outs[flag] = args[-1].numpy().copy()
    ev = lib.time_evaluator("main", tvm.cpu(), number=20, repeat=7)
    times[flag] = float(np.median(ev(*args).results)) * 1e6
assert np.array_equal(outs["0"], outs["1"]), "outputs differ"
gops = 2 * spec.macs() / times["1"] / 1e3
print(f"{sys.argv[1]}: vpdpbusd ({kernels['0'].info['schedule']}) {times['0']:.1f} us, "
      f"amx ({kernels['1'].info['schedule']}) {times['1']:.1f} us ({gops:.0f} GOP/s), "
      f"{times['0'] / times['1']:.2f}x, outputs identical")
