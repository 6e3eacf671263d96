"""The planner's top candidate plans of one fp32 conv, each built and timed alone (2 threads),
interleaved; after a 600 MB write when COLD=1."""
import sys, os, time, numpy as np
import aiq_tvm.targets.x86.conv2d as cv
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.testing import compile_prim_func, kernel_args
from aiq_tvm.targets import host_target
n, h, c, o, k, s = (int(v) for v in sys.argv[1:7])
top = int(sys.argv[7]) if len(sys.argv) > 7 else 10
T = host_target()
spec = ConvSpec(n, h, h, c, o, k, k, stride=(s, s), padding=k // 2)
rng = np.random.default_rng(0)
w = (rng.standard_normal((o, c, k, k)) * 0.05).astype("float32"); b = rng.standard_normal(o).astype("float32")
x = (rng.standard_normal(spec.in_shape) + 0.2).astype("float32")
orig = cv.conv_candidates
seen, ranked = set(), []
from aiq_tvm.targets.x86.isa import cpu_model
default = conv2d_kernel(spec, "fp32", w, b, act="relu", target=T, winograd=False)
cpu = None
captured = []
def cap(spec_, fmt, cpu_, *a, **kw):
    out = orig(spec_, fmt, cpu_, *a, **kw)
    captured.extend(out)
    return out
cv.conv_candidates = cap
conv2d_kernel(spec, "fp32", w, b, act="relu", target=T, winograd=False)
cv.conv_candidates = orig
for cost, p in sorted(captured, key=lambda t: t[0]):
    key = (p.tile.tiles, p.tile.ocb, p.tile.order, p.tile.par, p.flat, getattr(p.tile, "kchunk", None))
    if key in seen: continue
    seen.add(key); ranked.append((cost, p, key))
    if len(ranked) >= top: break
fs = []
for cost, p, key in ranked:
    cv.conv_candidates = lambda *a, _p=p, _c=cost, **kw: [(_c, _p)]
    try:
        kern = conv2d_kernel(spec, "fp32", w, b, act="relu", target=T, winograd=False)
    except Exception as e:
        print("fail", key, e); continue
    finally:
        cv.conv_candidates = orig
    fs.append((cost, key, kern.info.get("schedule"), compile_prim_func(kern.prim_func, T).mod["main"], kernel_args(kern, x)))
junk = np.zeros(600 << 20, np.uint8) if os.environ.get("COLD") == "1" else None
t = {i: [] for i in range(len(fs))}
for _ in range(15):
    for i, (_, _, _, f, a) in enumerate(fs):
        if junk is not None: junk += 1
        else: f(*a)
        t0 = time.perf_counter(); f(*a); t[i].append(time.perf_counter() - t0)
print("default:", default.info.get("schedule"))
for i, (cost, key, sched, _, _) in enumerate(fs):
    print(f"{np.median(t[i])*1e3:8.3f} ms  model {cost/1e6:8.3f}M  {sched:40s} par={key[3]} order={key[2]} kchunk={key[5]}")
