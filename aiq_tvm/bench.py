"""``aiq-tvm bench``: TVM builds (FP32, uniform int8, a plan) beside PyTorch and ONNX Runtime.

Every variant is timed in interleaved rounds (each round runs every variant for ``round_ms``
after ``gap_ms`` idle, in the order :func:`round_orders` gives it), so machine noise hits all
of them alike; the table reports medians over rounds.  PyTorch and ONNX Runtime each run in
their own spawned process, timed on request inside the same rounds (in one process their
thread pools and TVM's steal each other's cores).  ONNX Runtime INT8 is ``quantize_static``
after ``quant_pre_process``: QDQ, per-channel, uint8 activations and int8 weights, calibrated
on the same images as TVM.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing as mp
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from .checks import check_choice

__all__ = ["run", "table", "Timer", "FRAMEWORKS", "round_orders", "balanced_rounds"]

FRAMEWORKS = ("torch", "onnxruntime")


# Clocks a timing can run on: the wall clock, or the process's CPU time, which does not count
# the time other jobs hold the core (meaningful for one thread only: it sums all threads).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


class Timer:
    """Runs a callable repeatedly for about ``ms`` milliseconds (wall clock) and returns
    seconds per call on ``clock`` (a :data:`CLOCKS` key or function)."""

    def __init__(self, fn, clock="wall"):
        self.fn = fn
        self.clock = clock if callable(clock) else CLOCKS[check_choice("clock", clock, CLOCKS)]
        fn()
        t0 = time.perf_counter()
        fn()
        self.once = max(time.perf_counter() - t0, 1e-6)

    def __call__(self, ms: float) -> float:
        n = max(1, int(ms / 1e3 / self.once))
        t0 = self.clock()
        for _ in range(n):
            self.fn()
        return (self.clock() - t0) / n


# Rounds a benchmark times at least when not told (rounded up to whole balanced designs).
DEFAULT_ROUNDS = 15


def _williams_rows(n: int) -> list[list[int]]:
    """Rows of a Williams design for ``n`` variants: every variant once per row and once per
    position, and every ordered pair (a right before b) adjacent equally often over the rows
    (``n`` rows for even ``n``; odd ``n`` needs the reversed rows too, ``2 n``)."""
    first, lo, hi = [0], 1, n - 1
    while len(first) < n:  # 0, 1, n-1, 2, n-2, ...
        first.append(lo)
        lo += 1
        if len(first) < n:
            first.append(hi)
            hi -= 1
    rows = [[(v + i) % n for v in first] for i in range(n)]
    return rows if n % 2 == 0 else rows + [row[::-1] for row in rows]


def balanced_rounds(n: int, at_least: int) -> int:
    """The fewest rounds, at least ``at_least``, that hold whole Williams designs for ``n``
    variants (:func:`round_orders` is then exactly balanced)."""
    size = len(_williams_rows(n)) if n > 1 else 1
    return -(-max(at_least, 1) // size) * size


def round_orders(keys, rounds: int) -> list[list]:
    """The order in which each round times ``keys``.

    A variant's time depends on the one timed right before it (its thread pool may still be
    spinning, its model fills the caches, the core may still run at the previous code's
    frequency), so no variant may always follow the same one, as it does when every round
    rotates one fixed order (a rotation keeps the cyclic order: in A B C D, B follows A in
    every round but one). The rounds cycle through a Williams design: each variant comes first,
    second, ... equally often and follows each other variant equally often over every whole
    design (:func:`balanced_rounds`)."""
    keys = list(keys)
    if len(keys) < 2:
        return [keys[:] for _ in range(rounds)]
    rows = _williams_rows(len(keys))
    return [[keys[i] for i in rows[r % len(rows)]] for r in range(rounds)]


# ----------------------------------------------------------------------------- workers
def _torch_fn(spec: dict, threads: int):
    import torch

    from .sources import torch_module

    torch.set_num_threads(threads)
    model = torch_module(spec["model"], spec.get("weights"))

    def make(x):
        xt = torch.from_numpy(x)

        def fn():
            with torch.no_grad():
                model(xt)
        return fn
    return make


def _ort_fn(spec: dict, threads: int):
    import onnxruntime as ort

    path = spec["onnx"]
    if spec.get("int8"):
        path = _quantize(path, np.load(spec["calib"]))
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def make(x):
        return lambda: sess.run(None, {name: x})
    return make


def _quantize(path: str, calib: np.ndarray) -> str:
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{name: calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.it, None)

    pre = str(Path(path).with_suffix(".pre.onnx"))
    out = str(Path(path).with_suffix(".int8.onnx"))
    quant_pre_process(path, pre)
    quantize_static(pre, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


def _worker(conn, kind: str, spec: dict, threads: int) -> None:
    """A framework in its own process: set up once, then time on request."""
    try:
        make = _torch_fn(spec, threads) if kind == "torch" else _ort_fn(spec, threads)
        conn.send(("ok", None))
    except Exception as err:  # noqa: BLE001 - reported to the parent as one line
        conn.send(("error", f"{type(err).__name__}: {str(err).strip().splitlines()[0]}"))
        return
    timer = None
    while True:
        msg = conn.recv()
        if msg[0] == "stop":
            return
        if msg[0] == "input":
            timer = Timer(make(np.asarray(msg[1])))
            conn.send(True)
        else:
            conn.send(timer(msg[1]))


class Remote:
    """A worker process; ``remote(ms)`` times like :class:`Timer`."""

    def __init__(self, kind: str, spec: dict, threads: int):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, kind, spec, threads), daemon=True)
        self.proc.start()
        status, self.error = self.conn.recv()
        if status != "ok":
            self.close()

    def set_input(self, x) -> None:
        self.conn.send(("input", x))
        self.conn.recv()

    def __call__(self, ms: float) -> float:
        self.conn.send(("time", ms))
        return self.conn.recv()

    def close(self) -> None:
        if self.proc.is_alive():
            try:
                self.conn.send(("stop",))
            except (BrokenPipeError, OSError):
                pass
            self.proc.join(timeout=30)
        if self.proc.is_alive():
            self.proc.terminate()


# ----------------------------------------------------------------------------- ONNX file
def _onnx_file(model, workdir: str) -> tuple[str | None, str | None]:
    """(path of an ONNX file of the model, or None and why not)."""
    if model.kind == "onnx":
        return model.spec, None
    import torch

    from .sources import torch_module

    path = os.path.join(workdir, "model.onnx")
    x = torch.zeros((1, *model.input_shape))
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            if model.kind == "pt2":  # an fx program: only the torch.export-based exporter
                from .frontend import _with_dynamic_batch

                program = _with_dynamic_batch(torch.export.load(model.spec))
                torch.onnx.export(program, dynamo=True).save(path)
            else:
                torch.onnx.export(torch_module(model.spec, model.weights), (x,), path,
                                  dynamo=False, input_names=["x"],
                                  dynamic_axes={"x": {0: "n"}})
    except Exception as err:  # noqa: BLE001 - exporter errors of many kinds
        return None, f"ONNX export failed ({type(err).__name__}: {str(err).splitlines()[0]})"
    return path, None


# ----------------------------------------------------------------------------- run
def _tvm_builds(model, data, args, progress, calib_x):
    from . import phases
    from .calibrate import DEFAULT_CALIBRATION, Calibration
    from .config import BuildConfig
    from .microbatch import check_divides
    from .plan import Plan

    plans = {"fp32": Plan.uniform("fp32"), "int8": Plan.uniform("int8")}
    if args.plan:
        plans["plan"] = Plan.load(args.plan)
    cal = Calibration.load(args.calibration) if args.calibration else DEFAULT_CALIBRATION
    # The floor is decided at a batch size, so a floored plan is built for each one.
    floor = getattr(args, "speed_floor", None) if args.plan else None
    batch_of = {f"plan-floor-b{bs}": bs for bs in (args.batch if floor else ())}
    plans.update(dict.fromkeys(batch_of, plans.get("plan")))
    builds = {}
    ctx = None
    micro = getattr(args, "micro_batch", None)
    if isinstance(micro, int):  # every batch timed runs in calls of this size
        for bs in args.batch:
            check_divides(micro, bs)
    for key, plan in progress.bar(list(plans.items()), desc="compiling TVM builds"):
        timing = getattr(args, "speed_floor_timing", "model")
        extra = ({"batch_size": batch_of[key], "speed_floor": floor, "speed_floor_timing": timing,
                  "remote": args.rpc if timing == "measured" else None} if key in batch_of
                 else {"batch_size": args.batch[0]} if isinstance(micro, int) else {})  # fmt: skip
        cfg = BuildConfig(target=args.target, plan=plan, calibration=cal, seed=args.seed,
                          micro_batch=micro, **extra)  # fmt: skip
        ctx = phases.resolve(model.mod, model.params, calib_x, None, cfg)
        calib = phases.calibrate(ctx)
        if calib is not None and not isinstance(cal, Calibration):
            cal = calib  # the same ranges for every build
        builds[key] = phases.finalize(ctx, plan, calib)
    return builds


def run(model, data, args, progress) -> list[dict]:
    """Time every variant at every batch size; one dict per (batch, variant)."""
    threads = int(os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1)))
    rng = np.random.default_rng(args.seed)
    if data is not None:
        calib_x, calib_note = data.calib, f"calibration: {len(data.calib)} images of {data.spec}"
    elif args.calibration:
        calib_x, calib_note = None, f"calibration: {args.calibration}"
    else:
        calib_x = rng.standard_normal((64, *model.input_shape)).astype(np.float32)
        calib_note = ("calibration: 64 standard-normal inputs (timing only; pass --data or "
                      "--calibration for real activation ranges)")
    print(calib_note)
    builds = _tvm_builds(model, data, args, progress, calib_x)
    if args.rpc:
        return _remote_rows(builds, args, progress, model.input_shape, rng)
    workdir = tempfile.mkdtemp(prefix="aiq-bench-")
    remotes, notes = {}, []
    if "torch" in args.compare:
        if model.kind == "onnx":
            notes.append("torch: not run (the model is an ONNX file)")
        else:
            remotes["torch"] = Remote("torch", {"model": model.spec, "weights": model.weights},
                                      threads)
    if "onnxruntime" in args.compare:
        path, why = _onnx_file(model, workdir)
        if path is None:
            notes.append(f"onnxruntime: not run ({why})")
        else:
            sample = calib_x if calib_x is not None else rng.standard_normal(
                (64, *model.input_shape)).astype(np.float32)
            np.save(os.path.join(workdir, "calib.npy"), sample[:64])
            spec = {"onnx": path, "calib": os.path.join(workdir, "calib.npy")}
            remotes["onnxruntime-fp32"] = Remote("onnxruntime", spec, threads)
            remotes["onnxruntime-int8"] = Remote("onnxruntime", {**spec, "int8": True},
                                                 threads)
    for key in list(remotes):
        if remotes[key].error:
            notes.append(f"{key}: failed to start ({remotes[key].error})")
            del remotes[key]
    rows = []
    try:
        for bs in args.batch:
            rows += _time_batch(bs, builds, remotes, args, progress, model.input_shape, rng)
    finally:
        for r in remotes.values():
            r.close()
    for n in notes:
        print(n)
    return rows


def _remote_rows(builds, args, progress, shape, rng) -> list[dict]:
    """TVM builds timed on an RPC device (``BuildResult.benchmark(remote=...)``): medians of
    ``rounds`` time_evaluator repeats.  PyTorch and ONNX Runtime run only here, so they are
    not compared."""
    if args.compare:
        print(f"--rpc: {', '.join(args.compare)} not run (they time this machine, the TVM "
              f"builds run on {args.rpc})")
    rows = []
    for bs in args.batch:
        x = rng.standard_normal((bs, *shape)).astype(np.float32)
        for key, b in progress.bar(list(builds.items()), desc=f"remote benchmarks (batch {bs})"):
            if key.startswith("plan-floor-b") and key != f"plan-floor-b{bs}":
                continue  # floored for another batch size
            repeat = args.rounds or DEFAULT_ROUNDS
            t = b.benchmark(bs, repeat=repeat, x=x, remote=args.rpc)
            rows.append({"batch": bs, "variant": f"tvm-{key}", "median_ms": t["median_ms"],
                         "p10_ms": t["p10_ms"], "p90_ms": t["p90_ms"], "rounds": repeat,
                         "device": args.rpc})
    return rows


def _time_batch(bs, builds, remotes, args, progress, shape, rng) -> list[dict]:
    import tvm

    x = rng.standard_normal((bs, *shape)).astype(np.float32)
    timers = {}
    for key, b in builds.items():
        if key.startswith("plan-floor-b") and key != f"plan-floor-b{bs}":
            continue  # floored for another batch size
        f = b.vm(bs)["main"]
        arg = tvm.runtime.tensor(x)
        timers[f"tvm-{key}"] = Timer(lambda f=f, arg=arg: f(arg))
    for key, r in remotes.items():
        r.set_input(x)
        timers[key] = r
    samples = {k: [] for k in timers}
    orders = round_orders(timers, args.rounds or balanced_rounds(len(timers), DEFAULT_ROUNDS))
    for r in progress.bar(range(len(orders)), desc=f"benchmark rounds (batch {bs})"):
        for k in orders[r]:
            time.sleep(args.gap_ms / 1e3)
            samples[k].append(timers[k](args.round_ms))
    return [{"batch": bs, "variant": k, "median_ms": float(np.median(v)) * 1e3,
             "p10_ms": float(np.percentile(v, 10)) * 1e3,
             "p90_ms": float(np.percentile(v, 90)) * 1e3, "rounds": len(v)}
            for k, v in samples.items()]


def table(rows: list[dict]) -> str:
    """Markdown table: one line per batch size, a column per variant, speed-ups vs FP32."""
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    head = ["batch", *(f"{v} ms" for v in variants)]
    ref = "tvm-fp32"
    head += [f"{v} vs {ref}" for v in variants if v != ref]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for bs in dict.fromkeys(r["batch"] for r in rows):
        med = {r["variant"]: r["median_ms"] for r in rows if r["batch"] == bs}
        cells = [str(bs), *(f"{med[v]:.3f}" if v in med else "" for v in variants)]
        cells += [f"{med[ref] / med[v]:.2f}x" if v in med and ref in med else ""
                  for v in variants if v != ref]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
