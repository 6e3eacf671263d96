"""Session 31: fp32 3x3 plans of one layer timed hot (repeated calls) and cold (a buffer of
EVICT_MB written before each call, as in a network where the other layers' weights pass
through the caches): the planner's default, the direct kernel, and Winograd plans of each
(tile edge, tile rows per task, output channels per task) the planner enumerates. Arguments
``N,H,C,O`` (square maps, padding 1).

    RATES="3.7" NPLANS=8 TVM_NUM_THREADS=2 flock /work/bench.lock python docs/runs/s31/wino_cold.py 1,14,512,512
"""
import os, sys, time
sys.path.insert(0, "/work/main/docs/runs/s27")
from dw_border import compiled
import numpy as np, tvm
from aiq_tvm.targets import host_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.targets.x86 import winograd as wino
from aiq_tvm.targets.x86.isa import cpu_model
from aiq_tvm.targets.x86.schedules import divisors
from aiq_tvm.targets.x86.common import round_up

EVICT_MB = float(os.environ.get("EVICT_MB", "256"))
# RATES="3.7 5": also the default plan with wino.WEIGHT_STREAM_BYTES_PER_CYCLE at these rates.
RATES = os.environ.get("RATES", "").split()
NPLANS = int(os.environ.get("NPLANS", "8"))
t = tvm.target.Target(host_target())
cpu = cpu_model(t)
orig = wino.winograd_plan
BASE_RATE = wino.WEIGHT_STREAM_BYTES_PER_CYCLE


def all_plans(spec):
    out = []
    for m in wino.TILE_SIZES:
        n_h, n_w = -(-spec.OH // m), -(-spec.OW // m)
        for tl, ocv in wino._register_blocks(n_w, cpu):
            kp = round_up(spec.O, cpu.lanes * ocv)
            for rows in divisors(n_h):
                for kg in (d * cpu.lanes * ocv for d in divisors(kp // (cpu.lanes * ocv))):
                    buf = (m + 2) ** 2 * rows * n_w * (spec.C * 4 + kg * 4)
                    if buf > wino.MAX_TASK_BUFFER_BYTES and rows > 1:
                        continue
                    parts = wino.winograd_parts(spec, m, tl, ocv, rows, kg, cpu)
                    out.append(wino.WinoPlan(m, tl, ocv, cpu.lanes, rows, kg,
                                             wino._bounded_wino(*parts), *parts))
    return sorted(out, key=lambda p: p.cost)


def timed(fns, rounds=7, calls=5):
    evict = np.zeros(int(EVICT_MB * (1 << 20)) // 8)
    hot, cold = [[] for _ in fns], [[] for _ in fns]
    for _ in range(rounds):
        for i, (f, args) in enumerate(fns):
            t0 = time.perf_counter()
            for _ in range(calls):
                f(*args)
            hot[i].append((time.perf_counter() - t0) / calls)
            for _ in range(calls):
                evict += 1.0
                t0 = time.perf_counter()
                f(*args)
                cold[i].append(time.perf_counter() - t0)
    return [(float(np.median(h)) * 1e3, float(np.median(c)) * 1e3) for h, c in zip(hot, cold)]


for arg in sys.argv[1:]:
    n, h, c, o = map(int, arg.split(","))
    spec = ConvSpec(n, h, h, c, o, 3, 3, padding=1)
    rng = np.random.default_rng(0)
    wt = (rng.standard_normal(spec.weight_shape) * 0.05).astype("float32")
    b = rng.standard_normal(o).astype("float32")
    x = rng.standard_normal(spec.in_shape).astype("float32")
    plans = all_plans(spec)
    pick, seen = [], set()
    for p in plans:  # the best plan per (m, rows, kgroup share)
        key = (p.m, p.rows, p.kgroup == round_up(spec.O, p.ocb))
        if key not in seen:
            seen.add(key)
            pick.append(p)
    variants = [("default", None)] + [(f"rate{r}", float(r)) for r in RATES] + [
        ("direct", False)] + [(p.describe(), p) for p in pick[:NPLANS]]
    fns, names, ref = [], [], None
    for name, p in variants:
        if isinstance(p, wino.WinoPlan):
            wino.winograd_plan = lambda *a, p=p, **k: p
        if isinstance(p, float):  # the default plan at another weight-stream rate
            wino.WEIGHT_STREAM_BYTES_PER_CYCLE = p
        k = conv2d_kernel(spec, "fp32", wt, b, act="relu", target=t,
                          winograd=False if p is False else (True if p is not None else None))
        wino.winograd_plan = orig
        wino.WEIGHT_STREAM_BYTES_PER_CYCLE = BASE_RATE
        f, args, out = compiled(k, x, t)
        ref = out if ref is None else ref
        err = float(np.abs(out - ref).max() / np.abs(ref).max())
        fns.append((f, args))
        cyc = k.info.get("modelled_cycles", 0)
        names.append(f"{name:<8} {k.info.get('schedule')} model={cyc:.3g} err={err:.1e}")
    for nm, (hot, cold) in zip(names, timed(fns)):
        print(arg, nm, f"hot {hot:.3f} ms cold {cold:.3f} ms", flush=True)
