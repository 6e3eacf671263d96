"""Session 30: fp32 3x3 960 -> 256 at 14 x 14, dilation 12 (DeepLabV3-MobileNetV3's atrous
rate 12), batch 1: the planner's default against forced register blocks with and without
reduction chunks (``TilePlan.kchunk``, channels per chunk; 0 = none), same outputs (relative error
to the numpy reference). Arguments ``N,H,C,O,K,DILATION`` then ``TILES:ORDER:NPAR:OCV:KCHUNK``.
Output: kchunk.txt::

    TVM_NUM_THREADS=2 flock /work/bench.lock python docs/runs/s30/kchunk.py 1,14,960,256,3,12 \\
        1x2x2:o.s0.s1.s2:1:4:0 1x2x2:o.s0.s1.s2:1:4:64 1x2x2:o.s0.s1.s2:1:4:32 \\
        1x2x2:o.s0.s1.s2:1:4:16 1x2x2:o.s0.s1.s2:1:4:8 1x1x7:o.s0.s1.s2:1:3:16
"""
import sys

sys.path.insert(0, "/work/main/docs/runs/s27")
from dataclasses import replace
from dw_border import time_interleaved, compiled
import numpy as np, tvm
from aiq_tvm import testing
from aiq_tvm.targets import host_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.targets.x86 import conv2d as cm
t = tvm.target.Target(host_target())
n, h, c, o, k, d = map(int, sys.argv[1].split(","))
spec = ConvSpec(n, h, h, c, o, k, k, padding=d * (k // 2), dilation=d)
rng = np.random.default_rng(0)
w = (rng.standard_normal(spec.weight_shape) / np.sqrt(c * k * k)).astype("float32")
b = rng.standard_normal(o).astype("float32"); x = rng.standard_normal(spec.in_shape).astype("float32")
ref = testing.reference(spec, "fp32", x, w, b).y
orig = cm.conv_candidates
fns, names = [], []
for v in [None] + sys.argv[2:]:   # "tiles:order:npar:ocv:kchunk"
    if v is not None:
        tl, order, npar, ocv, kc = v.split(":")
        tiles = tuple(map(int, tl.split("x"))); order = tuple(order.split(".")); npar = int(npar); ocv = int(ocv); kc = int(kc)
        def forced(spec, fmt, cpu, tiles=tiles, order=order, npar=npar, ocv=ocv, kc=kc):
            cands = [z for z in orig(spec, fmt, cpu) if z[1].tile.ocb == ocv * cpu.lanes and z[1].tile.tiles == tiles]
            cost, p = min(cands, key=lambda z: z[0])
            tile = replace(p.tile, order=order, par=order[:npar], kchunk=kc, min_tasks=0)
            return [(cost, replace(p, tile=tile))]
        cm.conv_candidates = forced
    kk = conv2d_kernel(spec, "fp32", w, b, target=t, winograd=False)
    cm.conv_candidates = orig
    f, args, out = compiled(kk, x, t)
    err = testing.relative_error(out, ref)
    fns.append((f, args)); names.append(f"{kk.info['schedule']} {'.'.join(kk.plan.order)} par={'.'.join(kk.plan.par)} err {err:.1e}")
ts = time_interleaved(fns, rounds=5, calls=5)
for nm, tt in zip(names, ts):
    print(sys.argv[1], nm, f"{tt:.3f} ms {2*spec.macs()/tt/1e6:.0f} GFLOP/s", flush=True)
