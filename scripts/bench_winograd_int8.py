"""Per-layer timing of the int8 Winograd F(2x2, 3x3) kernel vs the direct int8 kernel (and
the FP32 kernel the library picks) for one target, with the cost model's ratio.

Each layer is a 3x3 stride-1 pad-1 conv with a uint8 residual, ReLU and a requantized uint8
output (a ResNet block's second conv). Times are the best of 5 means of 20 calls on the
target's build (run it with ``TVM_NUM_THREADS=1`` under ``flock /work/bench.lock``):

    TVM_NUM_THREADS=1 python scripts/bench_winograd_int8.py \
        --target '{"kind":"llvm","mcpu":"haswell","num-cores":1}' --batches 1 16
"""

from __future__ import annotations

import argparse
import json

import numpy as np

# (H = W, C = K): ResNet-20's 3x3 layers and its 3-channel stem (C = 3, K = 16).
DEFAULT_SHAPES = ["32x3x16", "32x16x16", "16x32x32", "8x64x64"]


def _time_ms(kernel, x, res, target) -> float:
    from aiq_tvm import testing

    ex = testing.compile_prim_func(kernel.prim_func, target)
    run = testing.kernel_timer(ex, testing.kernel_args(kernel, x, res))
    run(3)
    return min(run(20) for _ in range(5)) * 1e3


def model_ratio(spec, w, b, qp, target) -> float:
    """Direct cost / Winograd cost of the planner (> 1: Winograd modelled faster)."""
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
    return direct / wino.winograd_plan(spec, cpu, (2,), wino8.arith(cpu)).cost


def bench_layer(spec, target) -> dict:
    from aiq_tvm import quant, testing
    from aiq_tvm.targets.x86 import conv2d_kernel

    rng = np.random.default_rng(0)
    x, w, b, res, qp = testing.layer_data(spec, rng, residual=True, offset=0.5)
    rq = quant.ActQParams.from_range(float(res.min()), float(res.max()))
    xq, resq = quant.quantize_act(x, qp), quant.quantize_act(res, rq)
    kw = dict(act="relu", act_qparams=qp, residual=True, residual_qparams=rq, out_qparams=qp,
              target=target)  # fmt: skip
    direct = conv2d_kernel(spec, "int8", w, b, winograd=False, **kw)
    wino = conv2d_kernel(spec, "int8", w, b, winograd=True, **kw)
    picked = conv2d_kernel(spec, "int8", w, b, **kw).info.get("algorithm", "direct")
    fp32 = conv2d_kernel(spec, "fp32", w, b, act="relu", residual=True, target=target)
    return {
        "direct": _time_ms(direct, xq, resq, target),
        "wino": _time_ms(wino, xq, resq, target),
        "fp32": _time_ms(fp32, x, res, target),
        "fp32_alg": fp32.info.get("algorithm", "direct"),
        "model": model_ratio(spec, w, b, qp, target),
        "picked": picked,
    }


def main(argv=None) -> int:
    from aiq_tvm.targets.x86 import ConvSpec

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", required=True, help="target JSON dict")
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    ap.add_argument("--shapes", nargs="+", default=DEFAULT_SHAPES, help="HxCxK, H = W")
    args = ap.parse_args(argv)
    target = json.loads(args.target)
    print(f"target {args.target}")
    print("| batch | H=W | C | K | direct int8 ms | Winograd int8 ms | speed-up | model ratio | "
          "picked | fp32 ms (algorithm) | Winograd int8 vs fp32 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in args.batches:
        for shape in args.shapes:
            hw, c, k = (int(v) for v in shape.split("x"))
            r = bench_layer(ConvSpec(n, hw, hw, c, k, 3, 3, padding=1), target)
            print(f"| {n} | {hw} | {c} | {k} | {r['direct']:.4f} | {r['wino']:.4f} | "
                  f"{r['direct'] / r['wino']:.2f}x | {r['model']:.2f} | {r['picked']} | "
                  f"{r['fp32']:.4f} ({r['fp32_alg']}) | {r['fp32'] / r['wino']:.2f}x |",
                  flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
