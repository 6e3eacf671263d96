"""Whole-model latency: aiq_tvm builds vs PyTorch eager vs ONNX Runtime, side by side.

For each model and batch size every variant is timed in interleaved rounds (each round runs
every variant for ``--round-ms``), so machine noise hits all of them alike; the table reports
medians over rounds and ratios computed from them.  Before each timed block the script sleeps
``--gap-ms``: thread pools (PyTorch's OpenMP, ONNX Runtime's, TVM's) keep spinning for a while
after their last call, and without the gap they would steal the cores of the next variant.

Variants: PyTorch eager FP32, ONNX Runtime FP32 (CPU provider), and aiq_tvm builds with a
uniform precision (``fp32``, ``int8``, ``int4``, ``w8``, ``w4``) and, with ``--plan``, an AIQ
plan JSON (e.g. the one ``make demo`` wrote to results/).

    TVM_NUM_THREADS=2 python scripts/bench_models.py --models resnet20 mobilenet_v2 \
        --batches 1 64 --out docs/performance_models.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


class Timer:
    """Runs a callable repeatedly for about ``ms`` milliseconds; returns seconds per call."""

    def __init__(self, fn):
        self.fn = fn
        fn()
        t0 = time.perf_counter()
        fn()
        self.once = max(time.perf_counter() - t0, 1e-6)

    def __call__(self, ms: float) -> float:
        n = max(1, int(ms / 1e3 / self.once))
        t0 = time.perf_counter()
        for _ in range(n):
            self.fn()
        return (time.perf_counter() - t0) / n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["resnet20", "mobilenet_v2"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "int8", "int4", "w8", "w4"])
    ap.add_argument("--plan", action="append", default=[],
                    help="MODEL=PLAN.json[:CALIBRATION.json] to add an AIQ plan variant")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--round-ms", type=float, default=150.0)
    ap.add_argument("--gap-ms", type=float, default=100.0)
    ap.add_argument("--out", default=None, help="Markdown file for the results")
    args = ap.parse_args(argv)

    threads = int(os.environ.setdefault("TVM_NUM_THREADS", "2"))
    import onnxruntime as ort
    import torch
    import tvm

    import aiq_tvm
    from aiq_tvm import datasets, models

    torch.set_num_threads(threads)
    plans = {}
    for spec in args.plan:
        name, _, files = spec.partition("=")
        plan_file, _, cal_file = files.partition(":")
        plans[name] = (aiq_tvm.Plan.load(plan_file),
                       aiq_tvm.Calibration.load(cal_file) if cal_file else None)
    xc, _ = datasets.calibration_set(256)
    rows = []
    for name in args.models:
        model = models.get_model(name, pretrained=True)
        mod, params = aiq_tvm.from_torch(model, torch.from_numpy(xc[:2]))
        onnx_path = Path(tempfile.mkdtemp()) / f"{name}.onnx"
        torch.onnx.export(model, (torch.from_numpy(xc[:1]),), str(onnx_path), dynamo=False,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}})
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        builds = {}
        cal = None
        for prec in args.precisions:
            t0 = time.perf_counter()
            builds[prec] = aiq_tvm.build(mod, params=params, plan=prec, calib_data=xc,
                                         calibration=cal or "percentile")
            cal = builds[prec].calibration or cal
            print(f"[{name}] built {prec} in {time.perf_counter() - t0:.1f}s", flush=True)
        if name in plans:
            plan, pcal = plans[name]
            builds["aiq-plan"] = aiq_tvm.build(mod, params=params, plan=plan, calib_data=xc,
                                               calibration=pcal or cal or "percentile")
        for bs in args.batches:
            x = np.ascontiguousarray(np.resize(xc, (bs, *xc.shape[1:])), np.float32)
            xt = torch.from_numpy(x)
            fns = {}

            def torch_fn(xt=xt, model=model):
                with torch.no_grad():
                    model(xt)

            fns["pytorch"] = torch_fn
            fns["onnxruntime"] = lambda x=x, sess=sess: sess.run(None, {"x": x})
            for key, b in builds.items():
                vm = b.vm(bs)
                arg = tvm.runtime.tensor(x)
                f = vm["main"]
                fns[f"tvm-{key}"] = lambda f=f, arg=arg: f(arg)
            timers = {k: Timer(f) for k, f in fns.items()}
            samples = {k: [] for k in fns}
            for _ in range(args.rounds):
                for k, t in timers.items():
                    time.sleep(args.gap_ms / 1e3)
                    samples[k].append(t(args.round_ms))
            med = {k: float(np.median(v)) * 1e3 for k, v in samples.items()}
            rows.append((name, bs, med))
            line = "  ".join(f"{k} {v:.3f}" for k, v in med.items())
            print(f"[{name} batch {bs}] ms: {line}", flush=True)

    keys = []
    for _, _, med in rows:
        keys += [k for k in med if k not in keys]
    head = ["model", "batch"] + [f"{k} ms" for k in keys] + [
        "fp32 vs pytorch", "fp32 vs onnxruntime", "int8 vs fp32", "int4 vs fp32",
        "int4 vs int8"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, bs, med in rows:
        def ratio(a, b, med=med):
            return f"{med[a] / med[b]:.2f}x" if a in med and b in med else ""
        vals = [name, str(bs)] + [f"{med[k]:.3f}" if k in med else "" for k in keys] + [
            ratio("pytorch", "tvm-fp32"), ratio("onnxruntime", "tvm-fp32"),
            ratio("tvm-fp32", "tvm-int8"), ratio("tvm-fp32", "tvm-int4"),
            ratio("tvm-int8", "tvm-int4")]
        lines.append("| " + " | ".join(vals) + " |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        words = [Path(sys.argv[0]).as_posix()] + (argv if argv is not None else sys.argv[1:])
        cmd = f"TVM_NUM_THREADS={threads} python {' '.join(words)}"
        text = (f"# Whole-model latency\n\nCommand: `{cmd}`\n\nMachine: {_cpu()}, "
                f"{threads} threads, {datetime.date.today().isoformat()}. Medians of "
                f"{args.rounds} interleaved rounds of {args.round_ms:.0f} ms per variant "
                f"({args.gap_ms:.0f} ms idle before each); "
                "ratios are speedups (time of the first / time of the second).\n\n"
                f"{table}\n")
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
