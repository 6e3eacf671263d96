"""Ad-hoc (session 27): fp32 depthwise convs whose channels fill half-width vectors only
(C % 16 == 8 on AVX-512): full-width vectors with a padded copy (``AIQ_INLINE_BORDER=0``)
against half-width vectors reading the borders inline (forced here for every shape, also
where the planner keeps full width), built for this host, same weights and input; times
interleaved (median of 7 rounds of 20 calls). Arguments ``N,H,W,C,C,KH,KW,STRIDE``::

    TVM_NUM_THREADS=2 flock /work/bench.lock python docs/runs/s27/dw_half.py \\
        1,56,56,72,72,3,3,1 8,28,28,120,120,5,5,1 ...
"""
import os, sys, time
from dataclasses import replace
import numpy as np, tvm
from aiq_tvm import testing
from aiq_tvm.targets import host_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.targets.x86 import conv2d as cm
target = tvm.target.Target(host_target())
orig = cm._narrow_cpu
def half(spec, cpu, scheme, qmax):
    if os.environ.get("HALF") == "1":
        return replace(cpu, isa=replace(cpu.isa, vector_bits=cpu.isa.vector_bits // 2))
    return orig(spec, cpu, scheme, qmax)
cm._narrow_cpu = half
for arg in sys.argv[1:]:
    v = list(map(int, arg.split(",")))
    n, h, w, c, o, kh, kw, s = v[:8]
    spec = ConvSpec(n, h, w, c, o, kh, kw, stride=(s, s), padding=kh // 2, groups=c)
    rng = np.random.default_rng(0)
    wt = (rng.standard_normal(spec.weight_shape) * 0.3).astype("float32")
    b = rng.standard_normal(o).astype("float32")
    x = rng.standard_normal(spec.in_shape).astype("float32")
    fns, outs, info = [], [], []
    for hv in ("0", "1"):
        os.environ["HALF"] = hv
        os.environ["AIQ_INLINE_BORDER"] = "0" if hv == "0" else ""
        k = conv2d_kernel(spec, "fp32", wt, b, act="relu", target=target)
        args = testing.kernel_args(k, x)
        f = testing.compile_prim_func(k.prim_func, target).mod["main"]
        f(*args)
        outs.append(args[-1].numpy().copy()); fns.append((f, args)); info.append(k.info["schedule"] + (" inline" if k.info["inline_border"] else " copy"))
    err = np.abs(outs[0] - outs[1]).max()
    ts = [[], []]
    for _ in range(7):
        for i, (f, args) in enumerate(fns):
            t0 = time.perf_counter()
            for _ in range(20):
                f(*args)
            ts[i].append((time.perf_counter() - t0) / 20)
    a, bb = np.median(ts[0]) * 1e3, np.median(ts[1]) * 1e3
    print(f"{arg}: full {a:.3f} ms ({info[0]}), half {bb:.3f} ms ({info[1]}), x{a/bb:.2f}, maxdiff {err:.2e}", flush=True)
