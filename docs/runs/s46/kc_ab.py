"""Pointwise fp32 conv: default plan vs L1-sized reduction chunks (TilePlan.kchunk) with
task = (image, channel block) etc.; each variant built and timed alone, interleaved."""
import sys, os, time, itertools, numpy as np
from dataclasses import replace
import aiq_tvm.targets.x86.conv2d as cv
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.testing import compile_prim_func, kernel_args
from aiq_tvm.targets import host_target
n, h, c, o, k, s = (int(v) for v in sys.argv[1:7])
T = host_target()
spec = ConvSpec(n, h, h, c, o, k, k, stride=(s, s), padding=k // 2)
rng = np.random.default_rng(0)
w = (rng.standard_normal((o, c, k, k)) * 0.05).astype("float32"); b = rng.standard_normal(o).astype("float32")
x = (rng.standard_normal(spec.in_shape) + 0.2).astype("float32")
orig = cv.conv_candidates
captured = []
def cap(*a, **kw):
    out = orig(*a, **kw); captured.extend(out); return out
cv.conv_candidates = cap
default = conv2d_kernel(spec, "fp32", w, b, act="relu", target=T, winograd=False)
cv.conv_candidates = orig
best = min(captured, key=lambda t: t[0])[1]
bases = {}
for cost, p in sorted(captured, key=lambda t: t[0]):
    key = (p.tile.tiles, p.tile.ocb)
    if key not in bases and p.tile.kchunk == 0: bases[key] = p
want = [((1, 2, 2), 64), ((1, 1, 7), 32), ((1, 2, 3), 64), ((1, 1, 7), 48), ((1,2,2),48)]
variants = [("default", best)]
chunks = [int(v) for v in os.environ.get("KC", "32,64,128").split(",")]
orders = [(("s0", "o", "s1", "s2"), ("s0", "o")), (("o", "s0", "s1", "s2"), ("o", "s0")), (("s0","s1","o","s2"),("s0","s1"))]
for key in want:
    if key not in bases: print("no base", key); continue
    p = bases[key]
    for (order, par), kc in itertools.product(orders, chunks):
        t = replace(p.tile, order=order, par=par, kchunk=kc, min_tasks=0)
        variants.append((f"{t.describe('pw')} {order} {par}", replace(p, tile=t)))
fs = []
for name, p in variants:
    cv.conv_candidates = lambda *a, _p=p, **kw: [(1.0, _p)]
    try:
        kern = conv2d_kernel(spec, "fp32", w, b, act="relu", target=T, winograd=False)
        f = compile_prim_func(kern.prim_func, T).mod["main"]
    except Exception as e:
        print("fail", name, str(e)[:200]); continue
    finally:
        cv.conv_candidates = orig
    fs.append((name, kern.info.get("schedule"), f, kernel_args(kern, x)))
ref = None
for name, sched, f, a in fs:
    f(*a)
    out = a[-1].numpy()
    if ref is None: ref = out
    err = np.abs(out - ref).max()
    if err > 1e-3: print("MISMATCH", name, err)
junk = np.zeros(600 << 20, np.uint8) if os.environ.get("COLD") == "1" else None
t = {i: [] for i in range(len(fs))}
for _ in range(int(os.environ.get("ROUNDS", 15))):
    for i, (_, _, f, a) in enumerate(fs):
        if junk is not None: junk += 1
        else: f(*a)
        t0 = time.perf_counter(); f(*a); t[i].append(time.perf_counter() - t0)
flops = 2 * n * spec.OH * spec.OW * o * c * k * k
for i, (name, sched, _, _) in enumerate(fs):
    m = np.median(t[i])
    print(f"{m*1e3:8.3f} ms {flops/m/1e9:6.0f} GF/s  {sched:44s} {name}")
