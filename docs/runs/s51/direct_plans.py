"""Every direct-kernel plan of one conv layer (the planner's candidates over its weight
formats), the model beside the measured time.

Builds the ``--top`` cheapest candidates in the planner's ranking key (modelled cycles plus
the first weight read) and times each kernel alone, one thread, process CPU time, best of 5
rounds of 20-call means (kernels in turn within a round), as ``scripts/bench_winograd_int8.py``
does. The layer: ReLU, no residual; int8 with a requantized uint8 output.

    TVM_NUM_THREADS=1 python docs/runs/s51/direct_plans.py \
        '{"kind":"llvm","mcpu":"skylake-avx512","num-cores":1}' 16 32 3 16 3 1 int8 --top 12
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
    for name in ("n", "hw", "c", "k", "ksize", "stride"):
        ap.add_argument(name, type=int)
    ap.add_argument("precision", choices=["int8", "fp32"])
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()

    from bench_winograd_int8 import _best_ms, _timer

    from aiq_tvm import quant, testing
    from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
    from aiq_tvm.targets.x86 import conv2d as conv_mod

    target_json = json.loads(args.target)
    spec = ConvSpec(args.n, args.hw, args.hw, args.c, args.k, args.ksize, args.ksize,
                    stride=args.stride, padding=args.ksize // 2)
    rng = np.random.default_rng(0)
    x, w, b, _res, qp = testing.layer_data(spec, rng, residual=False, offset=0.5)
    if args.precision == "int8":
        kw = dict(act="relu", act_qparams=qp, out_qparams=qp, target=target_json)
        xin = quant.quantize_act(x, qp)
    else:
        kw = dict(act="relu", target=target_json)
        xin = x
    cands = []
    real_plan = conv_mod._plan_conv

    def capture(spec_, fmts, cpu_):
        rate = conv_mod._thread_memory_rate(cpu_)
        for fmt in fmts:
            for c, p in conv_mod.conv_candidates(spec_, fmt, cpu_):
                key = c + conv_mod._first_read_cycles(spec_, fmt, p, cpu_, rate)
                cands.append((key, fmt, p))
        return real_plan(spec_, fmts, cpu_)

    with mock.patch.object(conv_mod, "_plan_conv", capture):
        picked = conv2d_kernel(spec, args.precision, w, b, winograd=False, **kw)
    seen, timers, rows = set(), {}, []
    for key, fmt, p in sorted(cands, key=lambda t: t[0]):
        with mock.patch.object(conv_mod, "_plan_conv",
                               lambda *a, _f=fmt, _p=p, _k=key: (_f, _p)):
            kern = conv2d_kernel(spec, args.precision, w, b, winograd=False, **kw)
        name = f"{fmt.name} {kern.info['schedule']}"
        if name in seen:
            continue
        seen.add(name)
        rows.append((name, key))
        timers[name] = _timer(kern, xin, None, target_json, "cpu")
        if len(rows) == args.top:
            break
    times = _best_ms(timers)
    best_key, best_ms = min(k for _, k in rows), min(times.values())
    print(f"{args.precision} {spec}, picked {picked.info['weight_format']} "
          f"{picked.info['schedule']}")
    print("| plan | model key | ms | key / best key | ms / best ms |")
    print("|---|---|---|---|---|")
    for name, key in rows:
        print(f"| {name} | {key:.0f} | {times[name]:.4f} | {key / best_key:.2f} | "
              f"{times[name] / best_ms:.2f} |")


if __name__ == "__main__":
    main()
