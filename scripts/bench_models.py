"""Whole-model latency: aiq_tvm builds vs PyTorch eager vs ONNX Runtime, side by side.

For each model and batch size every variant is timed in interleaved rounds (each round runs
every variant for ``--round-ms``), so machine noise hits all of them alike; the table reports
medians over rounds and ratios computed from them.  PyTorch and ONNX Runtime each run in their
own worker process, timed on request inside the same rounds: in one process their thread pools
(OpenMP, ORT's spinning workers) and TVM's stole each other's cores and slowed whichever ran
next by up to 2x.  Before each timed block the script also sleeps ``--gap-ms``.

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


def _worker(conn, kind: str, name: str, path: str, threads: int) -> None:
    """A framework in its own process: build once, then time on request."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    if kind == "pytorch":
        from aiq_tvm import models

        model = models.get_model(name, pretrained=True)
        fn = None
    else:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    timer = None
    while True:
        msg = conn.recv()
        if msg[0] == "stop":
            return
        if msg[0] == "input":
            x = np.asarray(msg[1])
            if kind == "pytorch":
                xt = torch.from_numpy(x)

                def fn(xt=xt):
                    with torch.no_grad():
                        model(xt)
            else:
                def fn(x=x):
                    sess.run(None, {"x": x})
            timer = Timer(fn)
            conn.send(True)
        else:
            conn.send(timer(msg[1]))


class Remote:
    """Handle on a worker process; ``remote(ms)`` times like :class:`Timer`."""

    def __init__(self, kind: str, name: str, path: str, threads: int):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, kind, name, path, threads),
                                daemon=True)
        self.proc.start()

    def set_input(self, x) -> None:
        self.conn.send(("input", x))
        self.conn.recv()

    def __call__(self, ms: float) -> float:
        self.conn.send(("time", ms))
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send(("stop",))
        self.proc.join(timeout=30)


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
    import torch
    import tvm

    import aiq_tvm
    from aiq_tvm import datasets, models

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
        remotes = {k: Remote(k, name, str(onnx_path), threads)
                   for k in ("pytorch", "onnxruntime")}
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
            timers = {}
            for key, r in remotes.items():
                r.set_input(x)
                timers[key] = r
            for key, b in builds.items():
                vm = b.vm(bs)
                arg = tvm.runtime.tensor(x)
                f = vm["main"]
                timers[f"tvm-{key}"] = Timer(lambda f=f, arg=arg: f(arg))
            samples = {k: [] for k in timers}
            for _ in range(args.rounds):
                for k, t in timers.items():
                    time.sleep(args.gap_ms / 1e3)
                    samples[k].append(t(args.round_ms))
            med = {k: float(np.median(v)) * 1e3 for k, v in samples.items()}
            rows.append((name, bs, med))
            line = "  ".join(f"{k} {v:.3f}" for k, v in med.items())
            print(f"[{name} batch {bs}] ms: {line}", flush=True)
        for r in remotes.values():
            r.close()

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
