"""Session 31: how well the Winograd cost model's constants and structure pick kernels on
measured data (``wino_dataset.py``'s JSON lines): the session 30 model (each task's slice of U
streamed within the task, ``REREAD`` 0) against pricing U's further passes (``REREAD`` 1: where
a task's slice exceeds CACHED_WEIGHT_BYTES; 2: where a core's share of U does, the model since
session 31, checked equal to ``winograd.winograd_parts`` here). For each combination of constants: the kernel the model
picks per layer (the direct one or a Winograd plan of the data set), and what that pick costs
against the fastest measured kernel of the layer (cold times, as inside a network).

    python docs/runs/s31/wino_fit.py docs/runs/s31/wino_dataset.jsonl > docs/runs/s31/wino_fit.txt
"""
import itertools, json, sys
from collections import defaultdict
import numpy as np, tvm
from aiq_tvm.schemes import get_precision
from aiq_tvm.targets import host_target
from aiq_tvm.targets.x86 import ConvSpec
from aiq_tvm.targets.x86 import winograd as wino
from aiq_tvm.targets.x86.conv2d import conv_candidates, _layer_formats, _plan_conv
from aiq_tvm.targets.x86.isa import cpu_model

cpu = cpu_model(tvm.target.Target(host_target()))
CONSTS = ("WEIGHT_STREAM_BYTES_PER_CYCLE", "TRANSFORM_CYCLES", "MEMORY_BYTES_PER_CYCLE",
          "CACHED_WEIGHT_BYTES")
BASE = {k: getattr(wino, k) for k in CONSTS}


def with_consts(vals, fn):
    for k, v in vals.items():
        if k in BASE:
            setattr(wino, k, v)
    try:
        return fn()
    finally:
        for k, v in BASE.items():
            setattr(wino, k, v)


def parts(spec, m, tiles, ocv, rows, kgroup, vals):
    """winograd.winograd_parts with its constants from ``vals`` and two structural options:
    ``SUM_STREAM`` adds a task's U stream to its compute instead of overlapping them;
    ``REREAD`` prices U once from memory plus each further tile-row pass at the stream rate
    (instead of every pass at the stream rate inside the tasks)."""
    from aiq_tvm.targets.x86.schedules import balance, step_cycles
    ar = wino.FP32_ARITH
    lanes, tp, threads = cpu.lanes, cpu.throughput, cpu.threads
    bt, _, at = wino.matrices(m)
    a = m + 2
    n_h, n_w = -(-spec.OH // m), -(-spec.OW // m)
    kp = -(-spec.O // (lanes * ocv)) * lanes * ocv
    step = step_cycles(tiles, ocv, ar.step_fmt, ar.mode, tp)
    tiles_task = rows * n_w
    gemm = a * a * (tiles_task // tiles) * (kgroup // (lanes * ocv)) * spec.C * step
    cv_in, cv_out = -(-spec.C * 4 // (4 * lanes)), kgroup // lanes
    tc = vals["TRANSFORM_CYCLES"]
    t_in = wino._nonzeros(bt) ** 2 * cv_in * tiles_task * tc
    t_out = wino._nonzeros(at) ** 2 * cv_out * tiles_task * tc
    pad = (rows * m + 2) * (n_w * m + 2) * (1 + -(-spec.C * 4 // 64)) * tp.pad_pixel_cycles
    epi = rows * m * spec.OW * cv_out * tp.epi_cycles
    u_slice = a * a * spec.C * kgroup * 4
    u_all = a * a * spec.C * kp * 4
    rate = vals["WEIGHT_STREAM_BYTES_PER_CYCLE"]
    # REREAD 2: U stays cached across passes only if a core's part of it fits (its slices of
    # every channel group it runs pass through it between two reads of one).
    share = u_all / min(threads, kp // kgroup) if vals.get("REREAD") == 2 else u_slice
    cached = share <= vals["CACHED_WEIGHT_BYTES"]
    stream = 0 if cached or vals.get("REREAD") else u_slice / rate
    work = gemm + t_in + t_out + pad + epi
    per_task = work + stream if vals.get("SUM_STREAM") else max(work, stream)
    tasks = spec.N * (n_h // rows) * (kp // kgroup)
    compute = tasks * per_task / threads / balance(tasks, threads)
    mem = u_all / vals["MEMORY_BYTES_PER_CYCLE"]
    if vals.get("REREAD") and not cached:
        passes = spec.N * (n_h // rows)
        return max(compute, mem + (passes - 1) * u_all / (rate * threads)) + 1e-3 * compute
    return max(compute, mem) + 1e-3 * compute


def check_library(spec, rows):
    """parts() with REREAD and the module's constants is the library's model."""
    vals = dict(BASE, SUM_STREAM=0, REREAD=2)
    for r in rows:
        if r["kind"] == "wino":
            m, t, ocv, rr, kg = r["plan"]
            lib = wino._bounded_wino(*wino.winograd_parts(spec, m, t, ocv, rr, kg, cpu))
            assert abs(parts(spec, m, t, ocv, rr, kg, vals) - lib) <= 1e-6 * lib, (spec, r)


def costs(spec, rows, vals):
    def run():
        out = []
        fmt, _ = _plan_conv(spec, _layer_formats(spec, get_precision("fp32"), None, cpu), cpu)
        direct = min(c for c, _ in conv_candidates(spec, fmt, cpu))
        direct = max(direct, wino.weight_read_cycles(spec.C * spec.O * 36))
        for r in rows:
            if r["kind"] == "direct":
                out.append(direct)
            else:
                m, t, ocv, rr, kg = r["plan"]
                out.append(parts(spec, m, t, ocv, rr, kg, vals) * wino.SELECT_MARGIN)
        return out
    return with_consts(vals, run)


def main(path, grid):
    layers = defaultdict(list)
    for line in open(path):
        r = json.loads(line)
        layers[tuple(r["layer"])].append(r)
    for (n, h, c, o), rows in layers.items():
        check_library(ConvSpec(n, h, h, c, o, 3, 3, padding=1), rows)
    results = []
    keys = list(grid)
    for combo in itertools.product(*grid.values()):
        vals = dict(zip(keys, combo))
        lost, logs, picks = 0.0, 0.0, []
        for (n, h, c, o), rows in layers.items():
            spec = ConvSpec(n, h, h, c, o, 3, 3, padding=1)
            cs = costs(spec, rows, vals)
            i = int(np.argmin(cs))
            best = min(r["cold_ms"] for r in rows)
            lost += rows[i]["cold_ms"] - best
            logs += np.log(rows[i]["cold_ms"] / best)
            picks.append((f"{n},{h},{c},{o}", rows[i]["schedule"], rows[i]["cold_ms"], best))
        results.append((lost, logs, vals, picks))
    results.sort(key=lambda r: r[0])
    for lost, logs, vals, picks in results[:15]:
        worst = max(t / b for _, _, t, b in picks)
        print(f"lost {lost:7.3f} ms  geo {np.exp(logs / len(layers)):.4f}  worst x{worst:.2f}  "
              f"{vals}")
    def model(reread):
        want = dict(BASE, SUM_STREAM=0, REREAD=reread)
        hits = [r for r in results if all(r[2][k] == want[k] for k in r[2])]
        return hits[0] if hits else None

    for title, res in (("best of the grid", results[0]), ("session 30 model", model(0)),
                       ("REREAD 1 (per-task slices cached)", model(1)),
                       ("session 31 model (winograd.winograd_parts)", model(2))):
        if res is None:
            continue
        print(f"\n{title}: {res[2]} lost {res[0]:.3f} ms")
        for layer, sched, t, best in res[3]:
            print(f"  {layer:<16} {sched:<44} {t:8.3f} ms  best {best:8.3f}  x{t / best:.2f}")


if __name__ == "__main__":
    grid = {
        "WEIGHT_STREAM_BYTES_PER_CYCLE": [10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0],
        "TRANSFORM_CYCLES": [0.5, 0.75, 1.0],
        "MEMORY_BYTES_PER_CYCLE": [2.8, 2.4, 2.0, 1.7],
        "CACHED_WEIGHT_BYTES": [256 * 1024, 64 * 1024],
        "SUM_STREAM": [0, 1],
        "REREAD": [0, 1, 2],
    }
    main(sys.argv[1], grid)
