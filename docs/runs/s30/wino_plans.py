"""Session 30: the fp32 Winograd plans of a 3x3 stride-1 conv, enumerated as the planner does,
ranked by the model, the best per (tile edge, channel vectors) and a few more timed against
the planner's default, same outputs. Arguments ``N,H,C,O`` (square maps, padding 1).
Output: wino_plans.txt::

    TVM_NUM_THREADS=2 flock /work/bench.lock python docs/runs/s30/wino_plans.py 1,28,2048,512
"""
import os, sys
sys.path.insert(0, "/work/main/docs/runs/s27")
from dw_border import time_interleaved, compiled
import numpy as np, tvm
from aiq_tvm.targets import host_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.targets.x86 import winograd as wino
from aiq_tvm.targets.x86.isa import cpu_model
from aiq_tvm.targets.x86.schedules import divisors
from aiq_tvm.targets.x86.common import round_up
t = tvm.target.Target(host_target())
cpu = cpu_model(t)
orig = wino.winograd_plan
def all_plans(spec):
    out = []
    for m in wino.TILE_SIZES:
        n_h, n_w = -(-spec.OH // m), -(-spec.OW // m)
        for tl, ocv in wino._register_blocks(n_w, cpu):
            ocb = cpu.lanes * ocv; kp = round_up(spec.O, ocb)
            for rows in divisors(n_h):
                for kg in (d * ocb for d in divisors(kp // ocb)):
                    buf = (m + 2) ** 2 * rows * n_w * (spec.C * 4 + kg * 4)
                    if buf > wino.MAX_TASK_BUFFER_BYTES and rows > 1: continue
                    parts = wino.winograd_parts(spec, m, tl, ocv, rows, kg, cpu)
                    out.append(wino.WinoPlan(m, tl, ocv, cpu.lanes, rows, kg, wino._bounded_wino(*parts), *parts))
    return sorted(out, key=lambda p: p.cost)
for arg in sys.argv[1:]:
    n, h, c, o = map(int, arg.split(","))
    spec = ConvSpec(n, h, h, c, o, 3, 3, padding=1)
    rng = np.random.default_rng(0)
    wt = (rng.standard_normal(spec.weight_shape) * 0.05).astype("float32")
    b = rng.standard_normal(o).astype("float32"); x = rng.standard_normal(spec.in_shape).astype("float32")
    plans = all_plans(spec)
    pick, seen = [], set()
    for p in plans:
        key = (p.m, p.ocv)
        if key not in seen: seen.add(key); pick.append(p)
    for p in plans:  # also the 2nd-best per m with other rows/kgroup
        if len(pick) >= 10: break
        if p not in pick and (p.m, p.tiles, p.ocv, p.rows) not in {(q.m, q.tiles, q.q if False else q.ocv, q.rows) for q in pick}:
            pick.append(p)
    fns, names = [], []
    for p in [None] + pick:
        if p is not None:
            wino.winograd_plan = lambda *a, p=p, **k: p
        k = conv2d_kernel(spec, "fp32", wt, b, act="relu", target=t, winograd=None if p is None else True)
        wino.winograd_plan = orig
        f, args, out = compiled(k, x, t)
        fns.append((f, args)); names.append(f"{'default ' if p is None else ''}{k.info.get('schedule')} model={k.info.get('modelled_cycles', 0):.3g}")
    ts = time_interleaved(fns, rounds=11, calls=10)
    for nm, tt in zip(names, ts):
        print(arg, nm, f"{tt:.3f} ms", flush=True)
