"""Session 32: fp32 direct convs (1x1 or strided 3x3) of ResNet-50 at batch 8, the planner's
default against forced register blocks / orders / reduction chunks (``TilePlan.kchunk``), same
outputs (relative error to the numpy reference). Arguments ``N,H,C,O,K,STRIDE`` (or ``N,H,C,O,KH,KW,STRIDE``, ``N,H,W,C,O,KH,KW,STRIDE``) then
``TILES:OCB:ORDER:NPAR:KCHUNK`` (ORDER "-" keeps the candidate's). Output: pw_tiles.txt::

    TVM_NUM_THREADS=2 flock /work/bench.lock python docs/runs/s32/pw_tiles.py 8,12,1024,256,1,1 \\
        1x1x6:64:-:0:0 1x2x2:64:-:0:0 1x1x4:64:-:0:0
"""
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # the reference's BLAS threads spin
sys.path.insert(0, "/work/main/docs/runs/s27")
from dataclasses import replace
from dw_border import time_interleaved, compiled
import numpy as np, tvm
from aiq_tvm import testing
from aiq_tvm.targets import host_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.targets.x86 import conv2d as cm
t = tvm.target.Target(host_target())
dims = list(map(int, sys.argv[1].split(",")))  # N,H,C,O,K,S / N,H,C,O,KH,KW,S / N,H,W,C,O,KH,KW,S
if len(dims) == 8:
    n, h, wd, c, o, kh, kw, s = dims
else:
    n, h, c, o = dims[:4]
    wd = h
    kh, kw, s = (dims[4], dims[4], dims[5]) if len(dims) == 6 else dims[4:7]
spec = ConvSpec(n, h, wd, c, o, kh, kw, stride=s, padding=(kh // 2, kw // 2))
k = kh * kw
rng = np.random.default_rng(0)
w = (rng.standard_normal(spec.weight_shape) / np.sqrt(c * k)).astype("float32")
b = rng.standard_normal(o).astype("float32"); x = rng.standard_normal(spec.in_shape).astype("float32")
ref = testing.reference(spec, "fp32", x, w, b).y
orig = cm.conv_candidates
fns, names = [], []
for v in [None] + sys.argv[2:]:
    if v is not None:
        tl, ocb, order, npar, kc = v.split(":")
        tiles = tuple(map(int, tl.split("x"))); ocb = int(ocb); npar = int(npar); kc = int(kc)
        def forced(spec, fmt, cpu, tiles=tiles, ocb=ocb, order=order, npar=npar, kc=kc):
            cands = [z for z in orig(spec, fmt, cpu) if z[1].tile.ocb == ocb and z[1].tile.tiles == tiles]
            cost, p = min(cands, key=lambda z: z[0])
            od = p.tile.order if order == "-" else tuple(order.split("."))
            tile = replace(p.tile, order=od, par=od[:npar] if npar else p.tile.par, kchunk=kc,
                           min_tasks=0 if kc else p.tile.min_tasks)
            return [(cost, replace(p, tile=tile))]
        cm.conv_candidates = forced
    kk = conv2d_kernel(spec, "fp32", w, b, target=t, winograd=False)
    cm.conv_candidates = orig
    f, args, out = compiled(kk, x, t)
    err = testing.relative_error(out, ref)
    fns.append((f, args)); names.append(f"{kk.info['schedule']} {'.'.join(kk.plan.order)} par={'.'.join(kk.plan.par)} mt={kk.plan.min_tasks} err {err:.1e}")
ts = time_interleaved(fns, rounds=5, calls=5)
for nm, tt in zip(names, ts):
    print(sys.argv[1], nm, f"{tt:.3f} ms {2*spec.macs()/tt/1e6:.0f} GFLOP/s", flush=True)
