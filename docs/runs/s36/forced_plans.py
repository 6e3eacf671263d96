"""Session 36: one fp32 conv's default plan against forced register blocks / loop orders /
parallel loops, each timed alone hot (the call right after the same call) and cold (64 MB
written before the call), medians of 21 alternating rounds, outputs checked against numpy.
Arguments ``N,H,W,C,O,KH,KW,S`` then ``TILES:OCB:ORDER:NPAR`` (ORDER "-" keeps the
candidate's; NPAR 0 keeps its parallel loops)::

    TVM_NUM_THREADS=2 flock /work/bench.lock python docs/runs/s36/forced_plans.py \\
        1,17,17,192,192,7,1,1 1x1x6:48:o.s0.s1.s2:1
"""
import os
import sys
import time
from dataclasses import replace

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np
import tvm
from aiq_tvm import testing
from aiq_tvm.targets import host_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.targets.x86 import conv2d as cm

t = tvm.target.Target(host_target())
n, h, wd, c, o, kh, kw, s = map(int, sys.argv[1].split(","))
spec = ConvSpec(n, h, wd, c, o, kh, kw, stride=s, padding=(kh // 2, kw // 2))
rng = np.random.default_rng(0)
w = (rng.standard_normal(spec.weight_shape) / np.sqrt(c * kh * kw)).astype("float32")
b = rng.standard_normal(o).astype("float32")
x = rng.standard_normal(spec.in_shape).astype("float32")
ref = testing.reference(spec, "fp32", x, w, b).y
orig = cm.conv_candidates
fns, names = [], []
for v in [None] + sys.argv[2:]:
    if v is not None:
        tl, ocb, order, npar = v.split(":")
        tiles, ocb, npar = tuple(map(int, tl.split("x"))), int(ocb), int(npar)

        def forced(spec_, fmt, cpu, *a, tiles=tiles, ocb=ocb, order=order, npar=npar, **k):
            cands = [z for z in orig(spec_, fmt, cpu, *a, **k)
                     if z[1].tile.ocb == ocb and z[1].tile.tiles == tiles]
            cost, p = min(cands, key=lambda z: z[0])
            od = p.tile.order if order == "-" else tuple(order.split("."))
            par = od[:npar] if npar else p.tile.par
            tile = replace(p.tile, order=od, par=par, min_tasks=0 if npar else p.tile.min_tasks)
            return [(cost, replace(p, tile=tile))]
        cm.conv_candidates = forced
    try:
        kk = conv2d_kernel(spec, "fp32", w, b, target=t, winograd=False)
    finally:
        cm.conv_candidates = orig
    args = testing.kernel_args(kk, x)
    f = testing.compile_prim_func(kk.prim_func, t).mod["main"]
    f(*args)
    err = testing.relative_error(args[-1].numpy().reshape(ref.shape), ref)
    fns.append((f, args))
    pl = kk.plan
    names.append(f"{kk.info['schedule']} {'.'.join(pl.order)} par={'.'.join(pl.par)} "
                 f"mt={pl.min_tasks} err {err:.1e}")
big = np.zeros(64 << 20 >> 3)
hot, cold = [[] for _ in fns], [[] for _ in fns]
for _ in range(21):
    for i, (f, args) in enumerate(fns):
        big += 1.0
        t0 = time.perf_counter()
        f(*args)
        t1 = time.perf_counter()
        f(*args)
        t2 = time.perf_counter()
        cold[i].append(t1 - t0)
        hot[i].append(t2 - t1)
print(f"# {sys.argv[1]}: hot / cold ms, GFLOP/s hot (first line: the planner's default)")
for nm, th, tc in zip(names, hot, cold):
    mh, mc = np.median(th) * 1e3, np.median(tc) * 1e3
    print(f"  {mh:.3f}  {mc:.3f} ms {2 * spec.macs() / mh / 1e6:5.0f}  {nm}", flush=True)
