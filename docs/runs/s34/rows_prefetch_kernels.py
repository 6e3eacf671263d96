"""Session 34: one conv kernel alone, without and with the rows-first weight prefetch
(``prefetch.ROWS_FIRST_MIN_BYTES`` raised past the layer for "off"), hot (the call right
after the same call) and cold (64 MB written before the call), medians of 31 alternating
rounds, outputs compared bit for bit. Arguments ``N,H,W,C,O,KH,KW,S [scheme]``:

    TVM_NUM_THREADS=2 flock /work/bench.lock \
        python docs/runs/s34/rows_prefetch_kernels.py 1,14,14,256,1024,1,1,1

Output: rows_prefetch_kernels.txt.
"""
import sys, time
import numpy as np, tvm
from aiq_tvm import testing
from aiq_tvm.quant import ActQParams
from aiq_tvm.targets import host_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel, prefetch
t = tvm.target.Target(host_target())
scheme = sys.argv[2] if len(sys.argv) > 2 else "fp32"
n, h, w_, c, o, kh, kw, s = map(int, sys.argv[1].split(","))
spec = ConvSpec(n, h, w_, c, o, kh, kw, stride=s, padding=kh // 2)
rng = np.random.default_rng(0)
w = (rng.standard_normal(spec.weight_shape) / np.sqrt(c * kh * kw)).astype("float32")
b = rng.standard_normal(o).astype("float32"); x = rng.standard_normal(spec.in_shape).astype("float32")
qp = ActQParams.from_range(-3.0, 3.0) if scheme != "fp32" else None
fns = []
default = prefetch.ROWS_FIRST_MIN_BYTES
for flag in ("0", "1"):
    prefetch.ROWS_FIRST_MIN_BYTES = default if flag == "1" else 1 << 62
    k = conv2d_kernel(spec, scheme, w, b, act="relu", act_qparams=qp, target=t, winograd=False)
    fn = testing.compile_prim_func(k.prim_func, t).mod["main"]
    args = testing.kernel_args(k, testing.kernel_input(scheme, x, qp))
    fn(*args)
    fns.append((flag, fn, args, args[-1].numpy().copy(), k.info["schedule"], k.info["weight_prefetch"]))
big = np.zeros(64 << 20 >> 3)
res = {f: ([], []) for f, *_ in fns}
for r in range(31):
    for flag, fn, args, *_ in fns:
        big += 1.0
        t0 = time.perf_counter(); fn(*args); t1 = time.perf_counter(); fn(*args); t2 = time.perf_counter()
        res[flag][0].append((t2 - t1) * 1e6); res[flag][1].append((t1 - t0) * 1e6)
same = np.array_equal(fns[0][3], fns[1][3])
for flag, fn, args, out, sch, lines in fns:
    hot, cold = res[flag]
    print(f"{sys.argv[1]} {scheme} rows_prefetch={flag} {sch} lines={lines} hot {np.median(hot):7.1f} us cold {np.median(cold):7.1f} us same={same}")
