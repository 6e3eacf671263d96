"""Session 31: cold and hot times of fp32 3x3 stride-1 kernels, for refitting the Winograd
cost model. For each layer ``N,H,C[,O]`` (square maps, padding 1): the direct kernel and up to
``PLANS`` Winograd plans of the planner's search space (the best under the current constants,
the best under a few other stream rates, the best per tile edge / task shape, a seeded random
rest; the session 30 model's best three first), each timed in interleaved rounds: ``calls`` calls back to back (hot), and ``calls``
calls each after writing ``EVICT_MB`` MB (cold: the other layers' data has passed through the
caches, as inside a network). Writes one JSON line per kernel.

    TVM_NUM_THREADS=2 flock /work/bench.lock python docs/runs/s31/wino_dataset.py \
        --out /work/runs/s31/wino_dataset.jsonl 1,14,512 1,28,256 ...
"""
import argparse, json, os, random, sys, time
sys.path.insert(0, "/work/main/docs/runs/s27")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dw_border import compiled
import numpy as np, tvm
from aiq_tvm.targets import host_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.targets.x86 import winograd as wino
from aiq_tvm.targets.x86.conv2d import conv_candidates, _layer_formats, _plan_conv
from aiq_tvm.targets.x86.isa import cpu_model
from aiq_tvm.targets.x86.schedules import divisors
from aiq_tvm.targets.x86.common import round_up

t = tvm.target.Target(host_target())
cpu = cpu_model(t)
orig = wino.winograd_plan
BASE = wino.WEIGHT_STREAM_BYTES_PER_CYCLE


def space(spec):
    out = []
    for m in wino.TILE_SIZES:
        n_h, n_w = -(-spec.OH // m), -(-spec.OW // m)
        for tl, ocv in wino._register_blocks(n_w, cpu):
            ocb = cpu.lanes * ocv
            kp = round_up(spec.O, ocb)
            for rows in divisors(n_h):
                for kg in (d * ocb for d in divisors(kp // ocb)):
                    buf = (m + 2) ** 2 * rows * n_w * (spec.C * 4 + kg * 4)
                    if buf > wino.MAX_TASK_BUFFER_BYTES and rows > 1:
                        continue
                    out.append((m, tl, ocv, rows, kg))
    return out


def cost(spec, p, rate):
    wino.WEIGHT_STREAM_BYTES_PER_CYCLE = rate
    try:
        return wino._bounded_wino(*wino.winograd_parts(spec, p[0], p[1], p[2], p[3], p[4], cpu))
    finally:
        wino.WEIGHT_STREAM_BYTES_PER_CYCLE = BASE


def pick(spec, n):
    from wino_fit import BASE as FIT_BASE, parts

    sp = space(spec)
    chosen = []
    def add(p):
        if p not in chosen and len(chosen) < n:
            chosen.append(p)
    session30 = dict(FIT_BASE, SUM_STREAM=0, REREAD=0)  # the model before session 31
    for p in sorted(sp, key=lambda p: parts(spec, *p, session30))[:3]:
        add(p)
    for rate in (BASE, 3.0, 5.0, 2.0):
        for p in sorted(sp, key=lambda p: cost(spec, p, rate))[:4 if rate == BASE else 2]:
            add(p)
    best = {}
    for p in sorted(sp, key=lambda p: cost(spec, p, BASE)):
        best.setdefault((p[0], p[3] == -(-spec.OH // p[0]), p[4] == round_up(spec.O, cpu.lanes * p[2])), p)
    for p in best.values():
        add(p)
    rng = random.Random(0)
    rest = [p for p in sp if p not in chosen]
    rng.shuffle(rest)
    for p in rest:
        add(p)
    return chosen


def timed(fns, rounds, calls, evict_mb):
    evict = np.zeros(int(evict_mb * (1 << 20)) // 8)
    hot, cold = [[] for _ in fns], [[] for _ in fns]
    for _ in range(rounds):
        for i, (f, args) in enumerate(fns):
            f(*args)
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("layers", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--plans", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=3)
    ap.add_argument("--evict-mb", type=float, default=96)
    a = ap.parse_args()
    for arg in a.layers:
        n, h, c, *o = map(int, arg.split(","))
        o = o[0] if o else c
        spec = ConvSpec(n, h, h, c, o, 3, 3, padding=1)
        rng = np.random.default_rng(0)
        wt = (rng.standard_normal(spec.weight_shape) * 0.05).astype("float32")
        b = rng.standard_normal(o).astype("float32")
        x = rng.standard_normal(spec.in_shape).astype("float32")
        from aiq_tvm.schemes import get_precision
        fmts = _layer_formats(spec, get_precision("fp32"), None, cpu)
        fmt, plan = _plan_conv(spec, fmts, cpu)
        direct_model = min(cc for cc, _ in conv_candidates(spec, fmt, cpu))
        w_bytes = spec.C * spec.O * 9 * 4
        variants = [("direct", None)] + [("wino", p) for p in pick(spec, a.plans)]
        fns, rows = [], []
        t0 = time.time()
        for kind, p in variants:
            if p is not None:
                wp = wino.WinoPlan(p[0], p[1], p[2], cpu.lanes, p[3], p[4], cost(spec, p, BASE))
                wino.winograd_plan = lambda *aa, wp=wp, **k: wp
            k = conv2d_kernel(spec, "fp32", wt, b, act="relu", target=t,
                              winograd=p is not None)
            wino.winograd_plan = orig
            f, args, _ = compiled(k, x, t)
            fns.append((f, args))
            rows.append(dict(layer=[n, h, c, o], kind=kind, plan=list(p) if p else None,
                             schedule=k.info.get("schedule"),
                             model_base=cost(spec, p, BASE) if p else direct_model,
                             w_bytes=w_bytes))
        times = timed(fns, a.rounds, a.calls, a.evict_mb)
        with open(a.out, "a") as fh:
            for r, (hot, cold) in zip(rows, times):
                r.update(hot_ms=hot, cold_ms=cold)
                fh.write(json.dumps(r) + "\n")
        best = min(times, key=lambda tc: tc[1])
        print(f"{arg}: {len(rows)} kernels in {time.time() - t0:.0f}s; direct cold "
              f"{times[0][1]:.3f} ms, best cold {best[1]:.3f} ms, session 30 model's pick "
              f"{rows[1]['schedule']} cold {times[1][1]:.3f} ms", flush=True)


main()
