"""Session 35: the planner's top fp32 conv plans of one shape, each forced and timed alone
(hot: the call right after the same call; medians of alternating rounds), with the model's
cost beside, to see whether the model ranks the plans the way the machine does. Arguments
``N,H,W,C,O,KH,KW,S[,PADDING] [TOP]``:

    TVM_NUM_THREADS=2 flock /work/bench.lock python docs/runs/s35/cand_rank.py 1,17,17,768,192,1,1,1 8
"""
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np
import tvm
from aiq_tvm import testing
from aiq_tvm.targets import host_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.targets.x86 import conv2d as cm

t = tvm.target.Target(host_target())
n, h, w_, c, o, kh, kw, s, *pad = map(int, sys.argv[1].split(","))  # [,PADDING]
top = int(sys.argv[2]) if len(sys.argv) > 2 else 8
spec = ConvSpec(n, h, w_, c, o, kh, kw, stride=s,
                padding=(pad[0], pad[0]) if pad else (kh // 2, kw // 2))
rng = np.random.default_rng(0)
w = (rng.standard_normal(spec.weight_shape) / np.sqrt(c * kh * kw)).astype("float32")
b = rng.standard_normal(o).astype("float32")
x = rng.standard_normal(spec.in_shape).astype("float32")
orig = cm.conv_candidates
seen, ranked = set(), []
captured = []


def capture(spec_, fmt, cpu, *a, **k):
    out = orig(spec_, fmt, cpu, *a, **k)
    captured.append(out)
    return out


cm.conv_candidates = capture
k0 = conv2d_kernel(spec, "fp32", w, b, target=t, winograd=False)
cm.conv_candidates = orig
for cost, p in sorted((z for c_ in captured for z in c_), key=lambda z: z[0]):
    key = (p.tile.tiles, p.tile.ocb, p.tile.order, p.tile.par, p.tile.kchunk, p.inline_border,
           p.flat)
    if key in seen:
        continue
    seen.add(key)
    ranked.append((cost, p))
    if len(ranked) >= top:
        break
fns, names = [], []
for cost, p in ranked:
    cm.conv_candidates = lambda *a, p=p, cost=cost, **k: [(cost, p)]
    try:
        kk = conv2d_kernel(spec, "fp32", w, b, target=t, winograd=False)
    finally:
        cm.conv_candidates = orig
    args = testing.kernel_args(kk, x)
    f = testing.compile_prim_func(kk.prim_func, t).mod["main"]
    f(*args)
    fns.append((f, args))
    tl = p.tile
    names.append(f"cost {cost/1e3:8.1f}k tiles {'x'.join(map(str, tl.tiles))} ocb {tl.ocb} "
                 f"order {'.'.join(tl.order)} par {'.'.join(tl.par)} kchunk {tl.kchunk} "
                 f"mt {tl.min_tasks} inline {p.inline_border} flat {p.flat}")
big = np.zeros(64 << 20 >> 3)  # written before each cold call
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
print(f"# {sys.argv[1]} default: {k0.info['schedule']}; hot / cold ms, GFLOP/s hot")
for nm, th, tc in zip(names, hot, cold):
    h_ms, c_ms = float(np.median(th)) * 1e3, float(np.median(tc)) * 1e3
    print(f"{h_ms:7.3f} {c_ms:7.3f} ms {2 * spec.macs() / h_ms / 1e6:5.0f}  {nm}", flush=True)
