"""Every Winograd plan of one 3x3 layer, the planner's model beside the measured time.

Enumerates the (tile edge, register block, tile rows per task, channels per task) plans the
planner weighs (``winograd.winograd_plans``), builds the ``--top`` cheapest in the model
(int8: the int16 kernels' arithmetic; fp32: FMA) and times each kernel alone, one thread,
process CPU time, best of 5 rounds of 20-call means (the kernels in turn within a round), as
``scripts/bench_winograd_int8.py`` does. The layer: stride 1, pad 1, uint8 residual, ReLU.

    TVM_NUM_THREADS=1 python docs/runs/s51/wino_plans.py \
        '{"kind":"llvm","mcpu":"skylake-avx512","num-cores":1}' 16 16 32 32 int8 --top 12
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("target")
    ap.add_argument("n", type=int)
    ap.add_argument("hw", type=int)
    ap.add_argument("c", type=int)
    ap.add_argument("k", type=int)
    ap.add_argument("precision", choices=["int8", "fp32"])
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()

    from bench_winograd_int8 import _best_ms, _timer

    from aiq_tvm import quant, testing
    from aiq_tvm.targets import resolve_target
    from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel, cpu_model
    from aiq_tvm.targets.x86 import winograd as wino
    from aiq_tvm.targets.x86 import winograd_int8 as wino8

    target_json = json.loads(args.target)
    target = resolve_target(args.target)[0]
    cpu = cpu_model(target)
    spec = ConvSpec(args.n, args.hw, args.hw, args.c, args.k, 3, 3, padding=1)
    rng = np.random.default_rng(0)
    x, w, b, res, qp = testing.layer_data(spec, rng, residual=True, offset=0.5)
    rq = quant.ActQParams.from_range(float(res.min()), float(res.max()))
    if args.precision == "int8":
        sizes, arith = tuple(wino8.TILES), wino8.arith(cpu)
        kw = dict(act="relu", act_qparams=qp, residual=True, residual_qparams=rq,
                  out_qparams=qp, target=target_json)
        xin, rin = quant.quantize_act(x, qp), quant.quantize_act(res, rq)
    else:
        sizes, arith = wino.TILE_SIZES, None
        kw = dict(act="relu", residual=True, target=target_json)
        xin, rin = x, res
    plans = sorted(wino.winograd_plans(spec, cpu, sizes, arith),
                   key=lambda p: p.cost)[: args.top]
    picked = conv2d_kernel(spec, args.precision, w, b, **kw).info.get("schedule")
    timers, kernels = {}, {}
    for p in plans:
        with mock.patch.object(wino, "winograd_plan", lambda *a, _p=p, **k: _p):
            kern = conv2d_kernel(spec, args.precision, w, b, winograd=p.m, **kw)
        kernels[p.describe()] = (p, kern)
        timers[p.describe()] = _timer(kern, xin, rin, target_json, "cpu")
    direct = conv2d_kernel(spec, args.precision, w, b, winograd=False, **kw)
    timers["direct"] = _timer(direct, xin, rin, target_json, "cpu")
    times = _best_ms(timers)
    print(f"{args.precision} N={args.n} {args.hw}x{args.hw} {args.c}->{args.k}, "
          f"picked {picked}, direct {times['direct']:.4f} ms")
    print("| plan | built as | model cycles | ms | model / best model | ms / best ms |")
    print("|---|---|---|---|---|---|")
    best_cost = min(p.cost for p in plans)
    best_ms = min(v for k, v in times.items() if k != "direct")
    for name, (p, kern) in kernels.items():
        print(f"| {name} | {kern.info.get('schedule')} | {p.cost:.0f} | {times[name]:.4f} | "
              f"{p.cost / best_cost:.2f} | {times[name] / best_ms:.2f} |")


if __name__ == "__main__":
    main()
