"""Depthwise conv register tiles: the planner's pick against the other candidates.

For every MobileNetV2 depthwise layer (and EfficientNet-B0's 5 x 5 / stride-2 ones) at 224 x
224 and batch, lists the planner's candidate plans (``conv_candidates``), keeps the cheapest
modelled plan of each register tile (``tn x toh x tow`` pixels x output-channel block), builds
the ``--top`` cheapest tiles plus the planner's pick, checks each against the first, times them
interleaved in rounds and prints medians (ms per call), the modelled cost and the pick's time
over the fastest tile's. Use ``--clock cpu`` with ``TVM_NUM_THREADS=1`` on a shared machine.

Usage::

    TVM_NUM_THREADS=1 python scripts/bench_dw_tiles.py --clock cpu [--batches 1 8]
        [--only SUBSTRING] [--top 6] [--scheme int8] [--target JSON]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

os.environ.setdefault("TVM_NUM_THREADS", "1")

import tvm  # noqa: E402

from aiq_tvm import quant  # noqa: E402
from aiq_tvm.bench import CLOCKS, Timer  # noqa: E402
from aiq_tvm.quant import ActQParams  # noqa: E402
from aiq_tvm.targets import resolve_target  # noqa: E402
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel  # noqa: E402
from aiq_tvm.targets.x86 import conv2d as conv_mod  # noqa: E402

# MobileNetV2's depthwise 3x3 layers at 224 x 224: (name, H, C, stride, K).
SHAPES = [
    ("dw 32 @112", 112, 32, 1, 3), ("dw/2 96 @112", 112, 96, 2, 3), ("dw 144 @56", 56, 144, 1, 3),
    ("dw/2 144 @56", 56, 144, 2, 3), ("dw 192 @28", 28, 192, 1, 3),
    ("dw/2 192 @28", 28, 192, 2, 3), ("dw 384 @14", 14, 384, 1, 3), ("dw 576 @14", 14, 576, 1, 3),
    ("dw/2 576 @14", 14, 576, 2, 3), ("dw 960 @7", 7, 960, 1, 3),
    # EfficientNet-B0's 5 x 5 and stride-2 depthwise layers ("eff" selects them with --only)
    ("eff dw5/2 144 @56", 56, 144, 2, 5), ("eff dw5 240 @28", 28, 240, 1, 5),
    ("eff dw3/2 240 @28", 28, 240, 2, 3), ("eff dw5 480 @14", 14, 480, 1, 5),
    ("eff dw5 672 @14", 14, 672, 1, 5), ("eff dw5/2 672 @14", 14, 672, 2, 5),
    ("eff dw5 1152 @7", 7, 1152, 1, 5),
]


def tile_name(plan) -> str:
    t = plan.tile
    return "x".join(map(str, t.tiles)) + f"/{t.ocb}"


def tile_plans(spec: ConvSpec, scheme, w, qp, target) -> tuple[list, object]:
    """(cost, fmt, plan) of the cheapest plan of each tile, cheapest first, and the pick."""
    chosen = {}
    orig = conv_mod._plan_conv

    def spy(spec_, fmts, cpu):
        chosen["pick"] = orig(spec_, fmts, cpu)
        # every tile, including those the planner rules out before costing them
        fits = getattr(conv_mod, "_dw_window_fits", None)
        conv_mod._dw_window_fits = lambda *a: True
        try:
            chosen["cands"] = [(c, f, p) for f in fmts for c, p in conv_mod.conv_candidates(
                spec_, f, cpu)]
        finally:
            if fits is not None:
                conv_mod._dw_window_fits = fits
        return chosen["pick"]

    conv_mod._plan_conv = spy
    try:
        conv2d_kernel(spec, scheme, w, None, act_qparams=qp, target=target, schedule=False)
    finally:
        conv_mod._plan_conv = orig
    best = {}
    for c, f, p in sorted(chosen["cands"], key=lambda t: t[0]):
        best.setdefault(tile_name(p), (c, f, p))
    return list(best.values()), chosen["pick"]


def build_forced(spec, scheme, w, qp, target, fmt, plan):
    """Kernel built with ``plan`` instead of the planner's pick."""
    orig = conv_mod._plan_conv
    conv_mod._plan_conv = lambda *a: (fmt, plan)
    try:
        return conv2d_kernel(spec, scheme, w, None, act_qparams=qp, target=target,
                             winograd=False)
    finally:
        conv_mod._plan_conv = orig


def run_shape(spec, args, target, rng) -> None:
    x = rng.standard_normal(spec.in_shape).astype(np.float32) + 0.3
    w = (rng.standard_normal(spec.weight_shape) / 3).astype(np.float32)
    qp = ActQParams.from_range(float(x.min()), float(x.max()))
    xin = quant.quantize_act(x, qp) if args.scheme != "fp32" else x
    plans, (pfmt, ppick) = tile_plans(spec, args.scheme, w, qp, target)
    pick = tile_name(ppick)
    keep = plans[:args.top] + [t for t in plans[args.top:] if tile_name(t[2]) == pick]
    keep += [t for t in plans if tile_name(t[2]) in args.also and t not in keep]
    fns, ref = {}, None
    for cost, fmt, plan in keep:
        k = build_forced(spec, args.scheme, w, qp, target, fmt, plan)
        ex = tvm.compile(tvm.IRModule({"main": k.prim_func}), target)
        a = [tvm.runtime.tensor(v) for v in (xin, *k.consts)]
        a.append(tvm.runtime.tensor(np.zeros(k.out_shape, k.out_dtype)))
        f = ex.mod["main"]
        f(*a)
        y = a[-1].numpy()
        if ref is None:
            ref = y
        elif not np.allclose(y, ref, atol=1e-3):
            sys.exit(f"{spec}: tile {tile_name(plan)} differs from {tile_name(keep[0][2])}")
        fns[tile_name(plan)] = (cost, lambda f=f, a=a: f(*a))
    timers = {nm: Timer(fn, args.clock) for nm, (_, fn) in fns.items()}
    samples = {nm: [] for nm in timers}
    for _ in range(args.rounds):
        for nm, t in timers.items():
            samples[nm].append(t(args.round_ms))
    ms = {nm: float(np.median(v)) * 1e3 for nm, v in samples.items()}
    fastest = min(ms, key=ms.get)
    row = " ".join(f"{nm}{'*' if nm == pick else ''}={ms[nm]:.4f}({fns[nm][0] / 1e3:.0f}k)"
                   for nm in ms)
    print(f"| {args.label} | {spec.in_shape[0]} | {pick} | {ms[pick]:.4f} | {fastest} | "
          f"{ms[fastest]:.4f} | {ms[pick] / ms[fastest]:.2f}x | {row} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--only", default=None, help="shapes whose name contains this")
    ap.add_argument("--scheme", default="int8")
    ap.add_argument("--top", type=int, default=6, help="cheapest modelled tiles to time")
    ap.add_argument("--also", nargs="*", default=[], help="tiles to time too, e.g. 1x4x2/64")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--round-ms", type=float, default=60.0)
    ap.add_argument("--clock", choices=list(CLOCKS), default="wall")
    ap.add_argument("--target", default="llvm",
                    help="'llvm' (this machine), a preset, a target string or JSON")
    args = ap.parse_args()
    target = resolve_target(args.target)[0]
    print(f"target {target}  TVM_NUM_THREADS={os.environ['TVM_NUM_THREADS']}  clock "
          f"{args.clock}  scheme {args.scheme}  medians of {args.rounds} rounds\n")
    print("| layer | batch | pick | pick ms | fastest | fastest ms | pick/fastest | "
          "tile=ms(model kcycles) |")
    print("|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for label, h, c, s, k in SHAPES:
        if args.only and args.only not in label:
            continue
        args.label = label
        for n in args.batches:
            run_shape(ConvSpec(n, h, h, c, c, k, k, stride=s, padding=k // 2, groups=c), args,
                      target, rng)


if __name__ == "__main__":
    main()
