"""Potential of choosing each fp32 conv's plan in situ: build the model with every direct
conv on its planner rank-r plan (r = 0..R-1), time each call in situ, then build the per-layer
best-rank combination and A/B it against the default in one process."""
import os, sys, time, numpy as np, torch
from dataclasses import replace
from math import prod
sys.path.insert(0, "/work/main/scripts")
os.environ.setdefault("TVM_BIND_THREADS", "0")
import aiq_tvm, tvm
import aiq_tvm.targets.x86.conv2d as cv
from aiq_tvm.bench import Timer
from profile_layers import _model_and_calibration
from profile_insitu import insitu_times

def call_keys(vm, x):
    keys = []
    def inst(func, name, before_run, ret_value, *args):
        if before_run and not str(name).startswith("vm."):
            shp = [tuple(int(d) for d in a.shape) if hasattr(a, "shape") else None for a in args]
            w = next((s for s in shp[1:] if s is not None and len(s) == 5), None)
            keys.append((shp[0], shp[-1], w[1:3] if w else None))
        return 0
    vm.set_instrument(inst); vm["main"](x); vm.set_instrument(lambda *a: 0)
    return keys

def spec_key(spec):
    return (tuple(spec.in_shape), (spec.N, spec.OH, spec.OW, spec.O), (spec.KH, spec.KW))
name, plan, bs, R = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
model, calib = _model_and_calibration(name, 224, 32)
calib = np.asarray(calib)
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
RANK = {}          # spec -> rank to use (missing: GLOBAL)
GLOBAL = [0]
SEEN = []          # specs in planning order
orig = cv._plan_conv
def ranked(spec, fmts, cpu):
    cands = [(c, i, fmt, p) for i, fmt in enumerate(fmts) for c, p in cv.conv_candidates(spec, fmt, cpu)]
    rate = cv._thread_memory_rate(cpu)
    key = lambda t: (round(t[0] + cv._first_read_cycles(spec, t[2], t[3], cpu, rate), 1), t[1],
                     t[3].tile.ocb * prod(t[3].tile.tiles),
                     -t[3].tile.tiles[1] if cv._prefers_rows(spec, t[3].tile.mode) else 0)
    out, seen = [], set()
    for t in sorted(cands, key=key):
        p = t[3]
        k = (t[2].name, p.tile.tiles, p.tile.ocb, p.tile.order, p.tile.par, p.tile.kchunk, p.flat, p.need_pad, p.inline_border)
        if k in seen: continue
        seen.add(k); out.append(t)
    return out
def patched(spec, fmts, cpu):
    r = RANK.get(spec, GLOBAL[0])
    if spec not in SEEN: SEEN.append(spec)
    if r == 0: return orig(spec, fmts, cpu)
    out = ranked(spec, fmts, cpu)
    cost, _, fmt, p = out[min(r, len(out) - 1)]
    return fmt, replace(p, cycles=cost)
cv._plan_conv = patched
def build():
    res = aiq_tvm.build(mod, params=params, plan=plan, calib_data=calib, micro_batch=None, batch_size=bs)
    vm = res.vm(bs); x = tvm.runtime.tensor(res.example_input(bs))
    return res, vm, x
variants = []
for r in range(R):
    GLOBAL[0] = r
    res, vm, x = build()
    names, us, plain, inst, sizes = insitu_times(vm, x, int(os.environ.get("RUNS", 7)))
    sched = [k.get("schedule") for k in []]
    keys = call_keys(vm, x)
    variants.append((names, us, keys))
    print(f"rank {r}: plain {plain:.3f} ms, in-situ sum {sum(us)/1e3:.3f} ms", flush=True)
names0 = variants[0][0]
assert all(v[0] == names0 for v in variants), "call lists differ"
best = [int(np.argmin([v[1][i] for v in variants])) for i in range(len(names0))]
print("sum of per-call minima", sum(min(v[1][i] for v in variants) for i in range(len(names0))) / 1e3)
for i, n in enumerate(names0):
    row = " ".join(f"{v[1][i]:8.1f}" for v in variants)
    print(f"{i:3d} {n:40s} {row}  best {best[i]}")

# per-spec best rank by the summed in-situ time of its calls
specs = {spec_key(sp): sp for sp in SEEN}
choice = {}
for k, sp in specs.items():
    idx = [i for i, kk in enumerate(variants[0][2]) if kk == k]
    if not idx: continue
    tot = [sum(v[1][i] for i in idx) for v in variants]
    choice[sp] = int(np.argmin(tot))
    if choice[sp]: print("spec", k, "calls", len(idx), "rank sums", [f"{t:.0f}" for t in tot], "->", choice[sp])
GLOBAL[0] = 0
a = build()
RANK.update(choice)
b = build()
ya, yb = a[1]["main"](a[2]).numpy(), b[1]["main"](b[2]).numpy()
print("max |a-b|", float(np.abs(ya - yb).max()), "scale", float(np.abs(ya).max()))
fa, fb = a[1]["main"], b[1]["main"]
ta, tb = Timer(lambda: fa(a[2])), Timer(lambda: fb(b[2]))
ra, rb, ratio = [], [], []
for r in range(int(os.environ.get("ROUNDS", 15))):
    pair = (ta, tb) if r % 2 == 0 else (tb, ta)
    v = [p(150) for p in pair]
    va, vb = (v[0], v[1]) if r % 2 == 0 else (v[1], v[0])
    ra.append(va); rb.append(vb); ratio.append(vb / va)
print(f"{name} {plan} b{bs}: default {np.median(ra)*1e3:.3f} ms, in-situ choice {np.median(rb)*1e3:.3f} ms, ratio median {np.median(ratio):.3f} (p10 {np.percentile(ratio,10):.3f}, p90 {np.percentile(ratio,90):.3f})")
