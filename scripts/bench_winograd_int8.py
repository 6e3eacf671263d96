"""Per-layer timing of the int8 Winograd F(2x2, 3x3) and F(4x4, 3x3) kernels vs the direct
int8 kernel (and the FP32 kernel the library picks) for one target, with the cost model's
ratios.

Each layer is a 3x3 stride-1 pad-1 conv with a uint8 residual, ReLU and a requantized uint8
output (a ResNet block's second conv). Times are the best of 5 rounds (each kernel once per
round, in turn) of the mean of 20 calls on the target's build, on the wall clock or with
``--clock cpu`` this process's CPU time (one thread only; a preempted kernel does not count
as slow on a shared host). Run it with ``TVM_NUM_THREADS=1`` under ``flock /work/bench.lock``:

    TVM_NUM_THREADS=1 python scripts/bench_winograd_int8.py \
        --target '{"kind":"llvm","mcpu":"haswell","num-cores":1}' --batches 1 16 --clock cpu
"""

from __future__ import annotations

import argparse
import json

import numpy as np

# (H = W, C = K): ResNet-20's 3x3 layers and its 3-channel stem (C = 3, K = 16).
DEFAULT_SHAPES = ["32x3x16", "32x16x16", "16x32x32", "8x64x64"]


def _timer(kernel, x, res, target, clock: str):
    """``() -> ms`` per call, a mean of 20 calls on ``clock``."""
    from aiq_tvm import testing
    from aiq_tvm.bench import Timer

    ex = testing.compile_prim_func(kernel.prim_func, target)
    args = testing.kernel_args(kernel, x, res)
    if clock == "wall":
        run = testing.kernel_timer(ex, args)
        run(3)
        return lambda: run(20) * 1e3
    timer = Timer(lambda: ex.mod["main"](*args), clock)
    return lambda: timer(20 * timer.once * 1e3) * 1e3


def _best_ms(timers: dict) -> dict:
    """Best of 5 rounds per timer, the timers in turn within a round."""
    rounds = [{k: t() for k, t in timers.items()} for _ in range(5)]
    return {k: min(r[k] for r in rounds) for k in timers}


def model_ratio(spec, w, b, qp, target, m: int = 2) -> float:
    """Direct cost / Winograd F(m, 3) cost of the planner (> 1: Winograd modelled faster)."""
    from aiq_tvm.targets.x86 import conv2d as conv_mod
    from aiq_tvm.targets.x86 import cpu_model
    from aiq_tvm.targets.x86 import winograd as wino
    from aiq_tvm.targets.x86 import winograd_int8 as wino8

    cpu = cpu_model(target)
    args = conv_mod.layer_args("int8", w, spec.weight_shape, b, act="relu", act_qparams=qp,
                               out_qparams=qp, debug_acc=False, target=target,
                               numerics_target=None)  # fmt: skip
    fmts = cpu.weight_formats(args.scheme, args.qmax, 9 * spec.C, False)
    fmt, _ = conv_mod._plan_conv(spec, fmts, cpu)
    direct = min(c for c, _ in conv_mod.conv_candidates(spec, fmt, cpu))
    return direct / wino.winograd_plan(spec, cpu, (m,), wino8.arith(cpu)).cost


def bench_layer(spec, target, clock: str = "wall") -> dict:
    from aiq_tvm import quant, testing
    from aiq_tvm.targets.x86 import conv2d_kernel

    rng = np.random.default_rng(0)
    x, w, b, res, qp = testing.layer_data(spec, rng, residual=True, offset=0.5)
    rq = quant.ActQParams.from_range(float(res.min()), float(res.max()))
    xq, resq = quant.quantize_act(x, qp), quant.quantize_act(res, rq)
    kw = dict(act="relu", act_qparams=qp, residual=True, residual_qparams=rq, out_qparams=qp,
              target=target)  # fmt: skip
    kernels = {m: conv2d_kernel(spec, "int8", w, b, winograd=m, **kw) for m in (False, 2, 4)}
    picked = conv2d_kernel(spec, "int8", w, b, **kw).info.get("algorithm", "direct")
    fp32 = conv2d_kernel(spec, "fp32", w, b, act="relu", residual=True, target=target)
    timers = {m: _timer(k, xq, resq, target, clock) for m, k in kernels.items()}
    timers["fp32"] = _timer(fp32, x, res, target, clock)
    times = _best_ms(timers)
    return {
        "direct": times[False],
        "wino": times[2],
        "wino4": times[4],
        "wino4_alg": kernels[4].info["algorithm"],  # F(2, 3) where F(4, 3) could overflow
        "fp32": times["fp32"],
        "fp32_alg": fp32.info.get("algorithm", "direct"),
        "model": model_ratio(spec, w, b, qp, target),
        "model4": model_ratio(spec, w, b, qp, target, 4),
        "picked": picked,
    }


def main(argv=None) -> int:
    from aiq_tvm.targets.x86 import ConvSpec

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", required=True, help="target JSON dict")
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    ap.add_argument("--shapes", nargs="+", default=DEFAULT_SHAPES, help="HxCxK, H = W")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    args = ap.parse_args(argv)
    target = json.loads(args.target)
    print(f"target {args.target}, clock {args.clock}")
    print("| batch | H=W | C | K | direct int8 ms | F(2,3) int8 ms | F(4,3) int8 ms | speed-up "
          "F2 / F4 | model ratio F2 / F4 | picked | fp32 ms (algorithm) | picked int8 vs fp32 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in args.batches:
        for shape in args.shapes:
            hw, c, k = (int(v) for v in shape.split("x"))
            r = bench_layer(ConvSpec(n, hw, hw, c, k, 3, 3, padding=1), target, args.clock)
            f4 = "" if r["wino4_alg"] == "winograd_f4" else " (F(2,3): overflow bound)"
            picked = {"direct": r["direct"], "winograd_f2": r["wino"],
                      "winograd_f4": r["wino4"]}[r["picked"]]  # fmt: skip
            print(f"| {n} | {hw} | {c} | {k} | {r['direct']:.4f} | {r['wino']:.4f} | "
                  f"{r['wino4']:.4f}{f4} | {r['direct'] / r['wino']:.2f}x / "
                  f"{r['direct'] / r['wino4']:.2f}x | {r['model']:.2f} / {r['model4']:.2f} | "
                  f"{r['picked']} | {r['fp32']:.4f} ({r['fp32_alg']}) | "
                  f"{r['fp32'] / picked:.2f}x |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
