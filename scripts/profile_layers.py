"""Where the time of one inference goes: every kernel call of a build, timed on its own.

Builds a shipped model (``resnet20``, ``mobilenet_v2``: trained weights, calibration images)
or a torchvision model (``aiq_tvm.models.torchvision_zoo``: ``weights=None``, seeded, BN
statistics set on Fashion-MNIST images resized to ``--size``) for ``--target`` (a target this
machine runs) at each ``--plans`` precision,
times every TIR kernel call of one inference with :func:`aiq_tvm.profiling.profile` (median of
``--repeat`` timings, each call with the arguments the inference passed it) and prints, per
plan, the layer kernels with their shapes and GFLOP/s (FLOPs from the cost model) and the
other kernels (layout copies, pooling, fused glue, layers without an AIQ kernel) grouped by
symbol; with two or more plans, a table of every layer's kernel time per plan beside the
first plan's. Timing: run it under the benchmark lock.

    TVM_NUM_THREADS=2 flock /work/wt/bench.lock python scripts/profile_layers.py \
        --model resnet18 --plans fp32 int8 --batch 1
    TVM_NUM_THREADS=1 flock /work/bench.lock python scripts/profile_layers.py --model resnet20 \
        --target '{"kind":"llvm","mcpu":"haswell"}' --plans fp32 int8 --batch 16
"""

from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict

import numpy as np


def _layer_rows(calls, res) -> tuple[list, dict]:
    """Layer rows ``(layer, op, us, GFLOP/s, shape)`` (a layer's input quantize kernel counts
    with it) and the other kernels' us by symbol."""
    from aiq_tvm.profiling import _LAYER_KERNEL, attribute_kernel_times

    times = attribute_kernel_times(calls, res.cost.searchable,
                                   fused=res.executable(res.batch_size).aiq_fused_layers)
    rows = []
    for name, us in times.per_layer.items():
        lc = res.cost[name]
        shape = f"{'x'.join(map(str, lc.in_shape))} -> {'x'.join(map(str, lc.out_shape))}"
        rows.append((name, lc.op, us, lc.flops / us / 1e3 if us > 0 else float("nan"), shape))
    other: dict[str, float] = defaultdict(float)
    for sym, us in calls:
        if not (sym.endswith("_quantize") or _LAYER_KERNEL.match(sym)):
            other[sym] += us
    return rows, {"layers_us": sum(times.per_layer.values()), "other": dict(other)}


def profile_plan(model, mod, params, calib, plan: str, batch: int, repeat: int, top: int,
                 target="llvm") -> tuple[str, dict]:
    """The plan's Markdown section and its kernel times (``per_layer`` us by layer name,
    ``other_us``)."""
    import aiq_tvm
    from aiq_tvm.profiling import attribute_kernel_times, profile

    res = aiq_tvm.build(mod, target, params=params, plan=plan, calib_data=calib,
                        batch_size=batch, eval_batch_size=min(len(calib), 16),
                        micro_batch=None)  # one kernel call per layer
    calls = profile(res, batch, repeat=repeat)
    times = attribute_kernel_times(calls, res.cost.searchable,
                                   fused=res.executable(batch).aiq_fused_layers)
    total = sum(us for _, us in calls)
    e2e = res.benchmark(batch, repeat=15)["median_ms"]
    rows, summary = _layer_rows(calls, res)
    rows.sort(key=lambda r: -r[2])
    lines = [f"### {model} {plan}, batch {batch}", "",
             f"Kernel calls: {len(calls)}, sum of their times {total / 1e3:.2f} ms "
             f"(whole inference, `BuildResult.benchmark`: {e2e:.2f} ms); layer kernels "
             f"{summary['layers_us'] / 1e3:.2f} ms ({100 * summary['layers_us'] / total:.0f} %), "
             f"other kernels {sum(summary['other'].values()) / 1e3:.2f} ms.", "",
             f"Slowest {min(top, len(rows))} layer kernels:", "",
             "| layer | op | in -> out | ms | % of kernels | GFLOP/s |",
             "|---|---|---|---|---|---|"]
    for name, op, us, gflops, shape in rows[:top]:
        lines.append(f"| {name} | {op} | {shape} | {us / 1e3:.3f} | {100 * us / total:.1f} | "
                     f"{gflops:.1f} |")
    lines += ["", "Other kernels:", "", "| kernel | ms | % of kernels |", "|---|---|---|"]
    for sym, us in sorted(summary["other"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {sym} | {us / 1e3:.3f} | {100 * us / total:.1f} |")
    return "\n".join(lines), {"per_layer": times.per_layer, "other_us": times.other_us}


def compare_plans(times: dict[str, dict]) -> str:
    """Per-layer kernel ms of every plan in program order, with the first plan's time over
    each other plan's (> 1: that plan's kernel is faster)."""
    plans = list(times)
    base = plans[0]
    head = ["layer"] + [f"{p} ms" for p in plans] + [f"{base} / {p}" for p in plans[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = [(name, [times[p]["per_layer"].get(name) for p in plans])
            for name in times[base]["per_layer"]]
    rows.append(("other kernels", [times[p]["other_us"] for p in plans]))
    rows.append(("sum", [sum(times[p]["per_layer"].values()) + times[p]["other_us"]
                         for p in plans]))  # fmt: skip
    for name, us in rows:
        cells = [f"{u / 1e3:.3f}" if u is not None else "-" for u in us]
        ratios = [f"{us[0] / u:.2f}x" if u and us[0] else "-" for u in us[1:]]
        lines.append("| " + " | ".join([name, *cells, *ratios]) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet18",
                    help="shipped model (resnet20, mobilenet_v2) or torchvision model name "
                         "(tv/NAME for torchvision's mobilenet_v2)")
    ap.add_argument("--target", default="llvm",
                    help="JSON target dict, 'llvm -mcpu=...' string, preset name or llvm")
    ap.add_argument("--plans", nargs="+", default=["fp32", "int8"], help="uniform precisions")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--calib", type=int, default=32, help="calibration images")
    ap.add_argument("--repeat", type=int, default=7, help="timings per kernel call (median)")
    ap.add_argument("--top", type=int, default=12, help="layer kernels listed")
    args = ap.parse_args(argv)
    os.environ.setdefault("TVM_NUM_THREADS", "2")
    # PyTorch's spinning OpenMP workers crawl on a shared host (see scripts/train.py); set
    # before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    import aiq_tvm

    model, calib = _model_and_calibration(args.model, args.size, args.calib)
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
    del model
    target = json.loads(args.target) if args.target.lstrip().startswith("{") else args.target
    times = {}
    for plan in args.plans:
        text, times[plan] = profile_plan(args.model, mod, params, np.asarray(calib), plan,
                                         args.batch, args.repeat, args.top, target)
        print(text, end="\n\n", flush=True)
    if len(times) > 1:
        print(f"### {args.model}, batch {args.batch}: layer kernels per plan\n\n"
              f"{compare_plans(times)}\n", flush=True)
    return 0


def _model_and_calibration(name: str, size: int, n_calib: int):
    """(torch model, calibration images): a shipped model with its trained weights, or a
    torchvision (``tv/NAME``, ``tvseg/NAME``) or timm (``timm/NAME``) model with seeded
    weights."""
    from aiq_tvm import datasets, models
    from aiq_tvm.models import torchvision_zoo as zoo

    if name in models.MODEL_NAMES:
        return models.get_model(name, pretrained=True), datasets.calibration_set(n_calib)[0]
    if name.startswith("tvseg/"):  # bench_models.py's spelling of a segmentation model
        model = zoo.segmentation_model(name.removeprefix("tvseg/"), size=size)
        return model, zoo.calibration_images(n_calib, size)
    if name.startswith("timm/"):  # bench_models.py's spelling of a timm model
        model = zoo.timm_model(name.removeprefix("timm/"), size=size)
        return model, zoo.calibration_images(n_calib, size)
    # ``tv/NAME`` (bench_models.py's spelling) picks torchvision's model where a shipped one
    # has the same name (mobilenet_v2)
    name = name.removeprefix("tv/")
    return zoo.torchvision_model(name, size=size), zoo.calibration_images(n_calib, size)


if __name__ == "__main__":
    raise SystemExit(main())
