"""Whole-model latency: aiq_tvm builds vs PyTorch eager vs ONNX Runtime FP32 and INT8.

For each model and batch size every variant is timed in interleaved rounds (each round runs
every variant for ``--round-ms``, in a balanced order: ``aiq_tvm.bench.round_orders``), so
machine noise hits all of them alike; the table reports medians over rounds and ratios
computed from them.  PyTorch, ONNX Runtime FP32 and ONNX Runtime INT8 each run in their own
worker process, timed on request inside the same rounds: in one process their thread pools
(OpenMP, ORT's spinning workers) and TVM's stole each other's cores and slowed whichever ran
next by up to 2x.  Before each timed block the script
also sleeps ``--gap-ms``.

Models: ours (``resnet20``, ``mobilenet_v2``: Fashion-MNIST weights, 32 x 32 inputs) and any
torchvision classification model as ``tv/<name>`` at ``--image-size`` (``weights=None``,
seeded, batch-norm statistics set on real Fashion-MNIST images resized to the input size,
see :mod:`aiq_tvm.models.torchvision_zoo`), any timm model as ``timm/<name>`` (the same way,
``pip install timm``), and any torchvision segmentation model as ``tvseg/<name>`` (its ``"out"``
map, 21 classes; the cosine is over each image's map).

Variants: PyTorch eager FP32; ONNX Runtime FP32 (CPU provider); ONNX Runtime INT8
(``quantize_static`` after ``quant_pre_process``: QDQ, per-channel, uint8 activations, int8
weights, MinMax calibration on the same calibration images our builds use); aiq_tvm builds
with a uniform precision (``fp32``, ``int8``, ``int4``, ``w8``, ``w4``) and, with ``--plan``,
an AIQ plan JSON, each running the whole batch in one call (``micro_batch=None``); with
``--micro-batch auto|measure|N`` also each precision's build in micro-batches
(``tvm-<precision>-mb``, :mod:`aiq_tvm.microbatch`).  Every variant's logits on the timed
batch are compared with PyTorch's (cosine similarity, printed in a second table), so a fast
but wrong build shows.

Long runs: ``--lock FILE`` holds an exclusive ``flock`` on FILE only while a model is timed
(builds and quantization run unlocked); ``--json FILE`` saves one run's figures, and
``--render A.json B.json ... --out PAGE.md`` writes one page from several runs, each row with
the command that measured it.

    TVM_NUM_THREADS=2 python scripts/bench_models.py --models resnet20 mobilenet_v2 \
        --batches 1 64 --out docs/performance_models.md
    TVM_NUM_THREADS=2 python scripts/bench_models.py --models tv/resnet18 --batches 1 8 \
        --precisions fp32 int8 int4 --lock /work/wt/bench.lock --json r18.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from aiq_tvm.bench import CLOCKS, DEFAULT_ROUNDS, Timer, balanced_rounds, round_orders
from aiq_tvm.threads import unpin_tvm_threads

TV_PREFIX = "tv/"
SEG_PREFIX = "tvseg/"  # torchvision segmentation models (their "out" map)
TIMM_PREFIX = "timm/"  # timm models (pip install timm)
REFERENCE = "pytorch"
# (numerator, denominator, label): speed-up of the denominator over the numerator.
RATIOS = (
    ("pytorch", "tvm-fp32", "fp32 vs pytorch"),
    ("onnxruntime", "tvm-fp32", "fp32 vs ORT fp32"),
    ("onnxruntime-int8", "tvm-int8", "int8 vs ORT int8"),
    ("tvm-fp32", "tvm-int8", "int8 vs fp32"),
    ("onnxruntime", "tvm-fp32-mb", "fp32-mb vs ORT fp32"),
    ("onnxruntime-int8", "tvm-int8-mb", "int8-mb vs ORT int8"),
    ("tvm-fp32", "tvm-fp32-mb", "fp32-mb vs fp32"),
    ("tvm-int8", "tvm-int8-mb", "int8-mb vs int8"),
    ("tvm-int8", "tvm-int4", "int4 vs int8"),
    ("tvm-int8", "tvm-aiq-plan", "plan vs int8"),
    ("tvm-int8", "tvm-aiq-plan-floor", "floor plan vs int8"),
)


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


# ----------------------------------------------------------------------------- models
def load_model(name: str, image_size: int):
    """(torch model in eval mode, calibration images) of a model name (see the docstring)."""
    from aiq_tvm import datasets, models

    if name.startswith((TV_PREFIX, SEG_PREFIX, TIMM_PREFIX)):
        from aiq_tvm.models import torchvision_zoo as zoo

        if name.startswith(SEG_PREFIX):
            model = zoo.segmentation_model(name[len(SEG_PREFIX):], size=image_size)
        elif name.startswith(TIMM_PREFIX):
            model = zoo.timm_model(name[len(TIMM_PREFIX):], size=image_size)
        else:
            model = zoo.torchvision_model(name[len(TV_PREFIX):], size=image_size)
        return model, zoo.calibration_images(32, image_size)
    if name not in models.MODEL_NAMES:
        raise SystemExit(f"unknown model {name!r}: ours are {', '.join(models.MODEL_NAMES)}; "
                         f"torchvision models are written {TV_PREFIX}<name> (e.g. tv/resnet50), "
                         f"segmentation models {SEG_PREFIX}<name> (e.g. "
                         f"{SEG_PREFIX}lraspp_mobilenet_v3_large), timm models "
                         f"{TIMM_PREFIX}<name> (e.g. {TIMM_PREFIX}resnet50d)")
    return models.get_model(name, pretrained=True), datasets.calibration_set(256)[0]


def quantize_onnx_int8(fp32_path: str, out_path: str, calib: np.ndarray, batch: int = 8) -> None:
    """ONNX Runtime static INT8: QDQ, per-channel, u8 activations / s8 weights, after
    ``quant_pre_process`` (ORT's recommended shape inference and graph cleanup)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(np.ascontiguousarray(calib[i:i + batch])
                                for i in range(0, len(calib), batch))

        def get_next(self):
            x = next(self.batches, None)
            return None if x is None else {"x": x}

    pre = str(Path(out_path).with_suffix(".pre.onnx"))
    quant_pre_process(fp32_path, pre)
    quantize_static(pre, out_path, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


# ----------------------------------------------------------------------------- workers
def _worker(conn, kind: str, path: str, threads: int, calib, clock: str = "wall") -> None:
    """A framework in its own process: load (and quantize) once, then time on request."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    if kind == "pytorch":
        model = torch.load(path, weights_only=False).eval()
    else:
        import onnxruntime as ort

        if kind == "onnxruntime-int8":
            q_path = str(Path(path).with_suffix(".int8.onnx"))
            quantize_onnx_int8(path, q_path, calib)
            path = q_path
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        if threads == 1:  # the session's own thread only (the CPU clock counts every thread)
            so.inter_op_num_threads = 1
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    conn.send(True)
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
                        return model(xt).numpy()
            else:
                def fn(x=x):
                    return sess.run(None, {"x": x})[0]
            timer = Timer(fn, clock)
            conn.send(np.asarray(fn()))
        else:
            conn.send(timer(msg[1]))


class Remote:
    """Handle on a worker process; ``remote(ms)`` times like :class:`Timer`."""

    def __init__(self, kind: str, path: str, threads: int, calib=None, clock: str = "wall"):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, kind, path, threads, calib, clock),
                                daemon=True)
        self.proc.start()

    def ready(self) -> None:
        """Wait until the worker has loaded (and quantized) its model."""
        self.conn.recv()

    def set_input(self, x) -> np.ndarray:
        """Time ``x`` from now on; returns the logits for it."""
        self.conn.send(("input", x))
        return self.conn.recv()

    def __call__(self, ms: float) -> float:
        self.conn.send(("time", ms))
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send(("stop",))
        self.proc.join(timeout=30)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest per-sample cosine similarity of two logit batches."""
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30
    return float(np.min(num / den))


class QuietCheck:
    """``--max-foreign-cpu F``: a timed block during which processes other than this one and
    its workers used more than F of the machine's CPU time is run again (up to ``tries``)."""

    def __init__(self, limit: float | None, pids: list[int], tries: int = 20):
        self.limit, self.pids, self.tries = limit, [os.getpid(), *pids], tries
        self.retries = self.dirty = 0

    @staticmethod
    def _busy() -> int:
        v = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(v) - v[3] - v[4]  # all but idle and iowait, in clock ticks

    def _ours(self) -> int:
        total = 0
        for pid in self.pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime, every thread
        return total

    def sample(self, timer, ms: float) -> float:
        if self.limit is None:
            return timer(ms)
        for _ in range(self.tries):
            b0, o0, t0 = self._busy(), self._ours(), time.perf_counter()
            value = timer(ms)
            foreign = (self._busy() - b0) - (self._ours() - o0)
            ticks = (time.perf_counter() - t0) * os.sysconf("SC_CLK_TCK") * os.cpu_count()
            if foreign <= self.limit * ticks:
                return value
            self.retries += 1
            time.sleep(1.0)  # let the other job's burst pass
        self.dirty += 1
        return value

    def describe(self) -> str:
        return (f"{self.retries} timed block(s) re-run because other processes used more "
                f"than {self.limit:g} of the CPU; {self.dirty} kept after {self.tries} tries")


@contextlib.contextmanager
def _locked(path: str | None):
    """Exclusive flock on ``path`` (no-op without one)."""
    if not path:
        yield
        return
    with open(path, "a") as fh:
        t0 = time.perf_counter()
        fcntl.flock(fh, fcntl.LOCK_EX)
        print(f"  lock {path} acquired after {time.perf_counter() - t0:.1f}s", flush=True)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------- one model
# Variants whose layers compute in int8 (their roofline is the int8 peak) or in float32.
_INT8_COMPUTE = ("tvm-int8", "tvm-int4", "onnxruntime-int8")
_FP32_COMPUTE = ("tvm-fp32", "tvm-w8", "tvm-w4", "onnxruntime", "pytorch", "tvm-fp32-mb")
_INT8_COMPUTE += ("tvm-int8-mb", "tvm-int4-mb")


def roofline_info(build) -> dict:
    """Conv/dense FLOPs per image of a build's model (one multiply-add = 2) and the peaks of
    the roofline preset its target got (scaled to TVM_NUM_THREADS cores), so a table can show
    how close each framework runs to this machine's ceiling."""
    p = build.preset
    return {"flops_per_image": build.cost.total_flops() / build.batch_size, "preset": p.name,
            "peak_fp32": p.peak_gflops_fp32, "peak_int8": p.peak_gops_int8}


def _peak_of(variant: str, info: dict) -> float | None:
    if variant in _INT8_COMPUTE:
        return info["peak_int8"]
    return info["peak_fp32"] if variant in _FP32_COMPUTE else None


def _build_all(name, mod, params, xc, args, plans) -> tuple[dict, dict]:
    import aiq_tvm

    builds, build_s, cal = {}, {}, None
    for prec in args.precisions:
        t0 = time.perf_counter()
        builds[prec] = aiq_tvm.build(mod, params=params, plan=prec, calib_data=xc,
                                     calibration=cal or "percentile",
                                     eval_batch_size=min(len(xc), 16), micro_batch=None)
        cal = builds[prec].calibration or cal
        build_s[prec] = time.perf_counter() - t0
        print(f"[{name}] built {prec} in {build_s[prec]:.1f}s", flush=True)
    if name in plans:
        plan, pcal = plans[name]
        builds["aiq-plan"] = aiq_tvm.build(mod, params=params, plan=plan, calib_data=xc,
                                           calibration=pcal or cal or "percentile",
                                           eval_batch_size=min(len(xc), 16), micro_batch=None)
        if args.speed_floor:
            builds["aiq-plan-floor"] = _floor_builds(name, mod, params, xc, args, plan,
                                                     pcal or cal or "percentile",
                                                     builds["aiq-plan"])  # fmt: skip
    if args.micro_batch is not None:
        for prec in args.precisions:
            print(f"[{name}] {prec} with --micro-batch {args.micro_batch}:", flush=True)
            builds[f"{prec}-mb"] = _micro_batched(builds[prec], args.micro_batch, args.batches)
    return builds, build_s


def _micro_batched(build, setting, batches):
    """The same build run in micro-batches (``BuildConfig.micro_batch=setting``): variant
    ``tvm-<precision>-mb``; a batch the setting leaves whole reuses the build's executable."""
    import dataclasses

    mb = dataclasses.replace(build, micro_batch=setting, micro_batches={}, _exes={},
                             _run_exes={}, _embedded_exes={}, unscheduled={})
    for bs in batches:
        choice = mb.micro_batch_choice(bs)
        print(f"  {choice.describe()}", flush=True)
        if not choice.split:
            mb.set_executable(bs, build.executable(bs), build.unscheduled.get(bs, []))
    return mb


def _micro_info(builds: dict, bs: int) -> dict:
    """The micro-batch each ``-mb`` variant ran at batch ``bs`` and why (for the run's JSON)."""
    info = {k: b.micro_batch_choice(bs).describe() for k, b in builds.items()
            if k.endswith("-mb")}
    return {"micro_batch": info} if info else {}


def _plan_ai_gain(res, plan) -> float:
    """AI of ``plan`` as given over the FP32 AI, in ``res``'s cost model (its batch)."""
    return res.cost.ai(res.cost.full_assignment(plan.resolve(res.cost.names))) / \
        res.cost.fp32_ai()


def _floor_info(builds: dict, bs: int) -> dict:
    """The floor variant's moved layers and plan AI at batch ``bs`` (for the run's JSON)."""
    if "aiq-plan-floor" not in builds:
        return {}
    res = builds["aiq-plan-floor"][bs]
    plan = builds["aiq-plan"].plan
    return {"speed_floor": {"moved": res.report.floor, "ai_gain": res.report.ai_gain,
                            "ai_gain_plan": _plan_ai_gain(res, plan)}}


def _floor_builds(name, mod, params, xc, args, plan, cal, unfloored) -> dict:
    """{batch: build} of ``plan`` with ``--speed-floor``: the floor is decided at the build's
    batch size, so one build per timed batch (the plan's own build where nothing moves)."""
    import aiq_tvm

    out = {}
    for bs in args.batches:
        res = aiq_tvm.build(mod, params=params, plan=plan, calib_data=xc, calibration=cal,
                            eval_batch_size=min(len(xc), 16), micro_batch=None, batch_size=bs,
                            speed_floor=args.speed_floor,
                            speed_floor_timing=args.speed_floor_timing)  # fmt: skip
        moved = [m for m in res.report.floor if m["action"] == "moved"]
        kept = [m for m in res.report.floor if m["action"] == "kept"]
        what = "moved" if not kept else \
            f"kept as given (the floored plan ran slower as a whole), {len(kept)} would move"
        print(f"[{name}] speed floor {args.speed_floor} at batch {bs}: {len(moved)} layer(s) "
              f"{what}: " + ", ".join(f"{m['layer']} ({m['precision']} "
                                      f"{m['cycles'] / m['floor_cycles']:.3f}x)"
                                      for m in moved + kept)
              + f"; plan AI x{_plan_ai_gain(res, plan):.3f} -> x{res.report.ai_gain:.3f} "
              "of fp32 at this batch", flush=True)
        out[bs] = res if moved else unfloored
    return out


def bench_model(name: str, args, plans: dict, threads: int) -> list[dict]:
    """Build every variant of one model, then time them (under ``args.lock``)."""
    import torch
    import tvm

    import aiq_tvm

    model, xc = load_model(name, args.image_size)
    t0 = time.perf_counter()
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(xc[:2]))
    print(f"[{name}] imported in {time.perf_counter() - t0:.1f}s", flush=True)
    tmp = Path(tempfile.mkdtemp())
    torch.save(model, tmp / "model.pt")
    onnx_path = tmp / "model.onnx"
    torch.onnx.export(model, (torch.from_numpy(xc[:1]),), str(onnx_path), dynamo=False,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}})
    kinds = ["pytorch", "onnxruntime"] + (["onnxruntime-int8"] if args.ort_int8 else [])
    remotes = {k: Remote(k, str(tmp / "model.pt") if k == "pytorch" else str(onnx_path),
                         threads, xc, args.clock) for k in kinds}
    builds, build_s = _build_all(name, mod, params, xc, args, plans)
    for r in remotes.values():
        r.ready()
    rows = []
    for bs in args.batches:
        x = np.ascontiguousarray(np.resize(xc, (bs, *xc.shape[1:])), np.float32)
        timers, logits = {}, {}
        for key, r in remotes.items():
            logits[key] = r.set_input(x)
            timers[key] = r
        for key, b in builds.items():
            b = b[bs] if isinstance(b, dict) else b  # the floor variant: one build per batch
            f = b.vm(bs)["main"]  # compiled here, outside the lock
            arg = tvm.runtime.tensor(x)
            logits[f"tvm-{key}"] = f(arg).numpy()
            timers[f"tvm-{key}"] = Timer(lambda f=f, arg=arg: f(arg), args.clock)
        samples = {k: [] for k in timers}
        quiet = QuietCheck(args.max_foreign_cpu, [r.proc.pid for r in remotes.values()])
        with _locked(args.lock):
            # No variant may always follow the same one (ORT's pool threads spin on after its
            # run, caches hold the previous model): a balanced order per round.
            rounds = args.rounds or balanced_rounds(len(timers), DEFAULT_ROUNDS)
            orders = round_orders(timers, rounds)
            for order in orders:
                for k in order:
                    time.sleep(args.gap_ms / 1e3)
                    samples[k].append(quiet.sample(timers[k], args.round_ms))
        if quiet.retries:
            print(f"[{name} batch {bs}] {quiet.describe()}", flush=True)
        med = {k: float(np.median(v)) * 1e3 for k, v in samples.items()}
        cos = {k: cosine(v, logits[REFERENCE]) for k, v in logits.items() if k != REFERENCE}
        rows.append({"model": name, "batch": bs, "ms": med, "cos": cos,
                     # each round's time, in round order: the tables' ratios pair the rounds
                     "rounds_ms": {k: [t * 1e3 for t in v] for k, v in samples.items()},
                     "rounds": rounds, "round_orders": orders,
                     "build_s": {f"tvm-{k}": v for k, v in build_s.items()},
                     "roofline": roofline_info(next(iter(builds.values()))),
                     **({"quiet": quiet.describe()} if args.max_foreign_cpu else {}),
                     **_micro_info(builds, bs),
                     **_floor_info(builds, bs)})
        print(f"[{name} batch {bs}] ms: " + "  ".join(f"{k} {v:.3f}" for k, v in med.items()),
              flush=True)
    for r in remotes.values():
        r.close()
    return rows


# ----------------------------------------------------------------------------- tables
def _keys(rows: list[dict], field: str) -> list[str]:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r[field] if k not in keys]
    return keys


def speedup(row: dict, a: str, b: str) -> float:
    """Time of ``a`` over time of ``b``: the median of the per-round ratios when the row keeps
    its rounds (each round times every variant once, one after the other, so a slow spell of
    the shared host slows both sides of a pair), else the ratio of the medians (older runs)."""
    rounds = row.get("rounds_ms", {})
    if a in rounds and b in rounds:
        return float(np.median(np.asarray(rounds[a]) / np.asarray(rounds[b])))
    return row["ms"][a] / row["ms"][b]


def render_tables(rows: list[dict]) -> str:
    """Markdown: latency table with speed-up ratios, then the cosine-vs-PyTorch table."""
    keys = _keys(rows, "ms")
    ratios = [r for r in RATIOS if any(r[0] in x["ms"] and r[1] in x["ms"] for x in rows)]
    head = ["model", "batch"] + [f"{k} ms" for k in keys] + [r[2] for r in ratios]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        med = row["ms"]
        vals = [row["model"], str(row["batch"])]
        vals += [f"{med[k]:.3f}" if k in med else "" for k in keys]
        vals += [f"{speedup(row, a, b):.2f}x" if a in med and b in med else ""
                 for a, b, _ in ratios]
        lines.append("| " + " | ".join(vals) + " |")
    ckeys = _keys(rows, "cos")
    lines += ["", f"Cosine similarity of the logits to {REFERENCE}'s on the timed batch "
              "(smallest over its images):", "",
              "| model | batch | " + " | ".join(ckeys) + " |", "|" + "---|" * (len(ckeys) + 2)]
    for row in rows:
        vals = [f"{row['cos'][k]:.4f}" if k in row["cos"] else "" for k in ckeys]
        lines.append(f"| {row['model']} | {row['batch']} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def render_throughput(rows: list[dict]) -> str:
    """Markdown: GOP/s of the conv/dense layers per variant, and the share of the preset's
    peak (int8 peak for int8/int4 compute, FP32 peak for float compute; mixed plans: none)."""
    rows = [r for r in rows if "roofline" in r]
    if not rows:
        return ""
    keys = _keys(rows, "ms")
    lines = ["| model | batch | GOP per image | preset | " + " | ".join(keys) + " |",
             "|" + "---|" * (len(keys) + 4)]
    for row in rows:
        info, vals = row["roofline"], []
        for k in keys:
            if k not in row["ms"]:
                vals.append("")
                continue
            gops = info["flops_per_image"] * row["batch"] / (row["ms"][k] * 1e6)
            peak = _peak_of(k, info)
            vals.append(f"{gops:.0f} ({100 * gops / peak:.0f} %)" if peak else f"{gops:.0f}")
        lines.append(f"| {row['model']} | {row['batch']} | {info['flops_per_image'] / 1e9:.2f} "
                     f"| {info['preset']} ({info['peak_fp32']:.0f} / {info['peak_int8']:.0f}) | "
                     + " | ".join(vals) + " |")
    return ("Throughput of the conv/dense layers (their FLOPs, one multiply-add = 2, over the "
            "whole model's time), GOP/s, and in brackets the share of the roofline preset's peak "
            "(FP32 GFLOP/s / INT8 GOP/s after the preset name, for the run's thread count): the "
            "int8 peak for int8 and int4 compute, the FP32 peak for float compute, none for "
            "mixed plans. FLOPs are those of direct convolution; Winograd kernels (ours, FP32 and "
            "int8) do fewer multiplies, so their share can exceed 100 %:\n\n"
            + "\n".join(lines))


def _build_table(runs: list[dict]) -> str:
    """Build seconds per variant and the run's peak RSS, one line per model."""
    per_model: dict[str, tuple[dict, float | None]] = {}
    for run in runs:
        for r in run["rows"]:
            per_model.setdefault(r["model"], (r.get("build_s", {}), run.get("peak_rss_mb")))
    keys = _keys([{"b": b} for b, _ in per_model.values()], "b")
    lines = ["| model | " + " | ".join(f"{k} build" for k in keys) + " | peak RSS of the run |",
             "|" + "---|" * (len(keys) + 2)]
    for model, (secs, rss) in per_model.items():
        vals = [f"{secs[k]:.0f} s" if k in secs else "" for k in keys]
        vals.append(f"{rss:.0f} MB" if rss else "")
        lines.append(f"| {model} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def _rounds_text(run: dict, rows: list[dict]) -> str:
    """The rounds per row: the run's ``--rounds``, else each row's balanced count."""
    counts = sorted({r.get("rounds", run["rounds"]) for r in rows} - {None})
    return "/".join(map(str, counts)) or "?"


def render_page(runs: list[dict], title: str = "Whole-model latency") -> str:
    """A Markdown page from one or more saved runs (each with its command)."""
    rows = [r for run in runs for r in run["rows"]]
    if len(runs) == 1:
        cmds = f"Command: `{runs[0]['command']}`"
    else:
        cmds = "Commands (one run each; ratios never mix runs):\n\n" + "\n".join(
            f"    {run['command']}" for run in runs)
    first = runs[0]
    clock = ("process CPU time (one thread; time other jobs hold the core is not counted)"
             if first.get("clock") == "cpu" else "wall clock")
    setup = (f"Machine: {first['machine']}, {first['threads']} threads, {first['date']}. "
             f"Medians of {_rounds_text(first, rows)} interleaved rounds of "
             f"{first['round_ms']:.0f} ms per "
             f"variant ({first['gap_ms']:.0f} ms idle before each), {clock}; each framework in "
             "its own process; ratios are speed-ups (time of the first / time of the second)"
             + ("; each is the median of its per-round ratios (a round times every variant once"
               + (", in the order of a Williams design: each variant first, second, ... and "
                  "right after each other variant equally often)."
                  if all("round_orders" in r for r in rows) else
                  ", starting one variant later than the round before).")
                if all("rounds_ms" in r for r in rows) else "."))
    thru = render_throughput(rows)
    return (f"# {title}\n\n{cmds}\n\n{setup}\n\n{render_tables(rows)}\n\n"
            + (f"{thru}\n\n" if thru else "") +
            "Build times (import excluded; the first 8-bit build includes calibration) and "
            "the peak resident memory of the benchmark process:\n\n"
            f"{_build_table(runs)}\n")


# ----------------------------------------------------------------------------- main
def _micro_batch(text: str):
    return text if text in ("auto", "measure") else int(text)


def _parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["resnet20", "mobilenet_v2"],
                    help="ours (resnet20, mobilenet_v2), tv/<torchvision classification name>, "
                         "tvseg/<torchvision segmentation name> or timm/<timm model name>")
    ap.add_argument("--image-size", type=int, default=224,
                    help="input size of tv/ and timm/ models")
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "int8", "int4", "w8", "w4"])
    ap.add_argument("--plan", action="append", default=[],
                    help="MODEL=PLAN.json[:CALIBRATION.json] to add an AIQ plan variant")
    ap.add_argument("--speed-floor", default=None, metavar="P",
                    help="also time each --plan built with BuildConfig.speed_floor=P "
                    "(variant aiq-plan-floor, built at each timed batch size)")
    ap.add_argument("--speed-floor-timing", choices=["model", "measured"], default="model",
                    help="what --speed-floor compares: modelled kernel times, or the layer "
                    "kernels timed here at each batch (BuildConfig.speed_floor_timing)")
    ap.add_argument("--micro-batch", default=None, type=_micro_batch,
                    metavar="{auto,measure,N}",
                    help="also time every --precisions build run in micro-batches "
                    "(BuildConfig.micro_batch; variants tvm-<precision>-mb)")
    ap.add_argument("--no-ort-int8", dest="ort_int8", action="store_false",
                    help="skip the ONNX Runtime INT8 variant")
    ap.add_argument("--rounds", type=int, default=None,
                    help="timing rounds per model and batch (default: at least 15, whole "
                    "Williams designs of the variants' order, see aiq_tvm.bench.round_orders)")
    ap.add_argument("--round-ms", type=float, default=150.0)
    ap.add_argument("--gap-ms", type=float, default=100.0)
    ap.add_argument("--lock", default=None, help="flock this file while timing a model")
    ap.add_argument("--max-foreign-cpu", type=float, default=None, metavar="F",
                    help="re-run a timed block when other processes (not this script or its "
                    "workers) used more than this fraction of the CPU during it (e.g. 0.05)")
    ap.add_argument("--clock", choices=list(CLOCKS), default="wall",
                    help="wall clock, or each process's CPU time (needs TVM_NUM_THREADS=1; "
                    "every framework then runs one thread)")
    ap.add_argument("--json", default=None, help="save this run's figures as JSON")
    ap.add_argument("--render", nargs="+", default=None, metavar="RUN.json",
                    help="only render saved runs into --out (no measuring)")
    ap.add_argument("--title", default="Whole-model latency")
    ap.add_argument("--out", default=None, help="Markdown file for the results")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv)
    if args.render:
        page = render_page([json.loads(Path(p).read_text()) for p in args.render], args.title)
        print(page)
        if args.out:
            Path(args.out).write_text(page)
            print(f"wrote {args.out}")
        return 0
    threads = int(os.environ.setdefault("TVM_NUM_THREADS", "2"))
    if args.clock == "cpu" and threads != 1:
        raise SystemExit("bench_models.py: --clock cpu sums every thread's time: run with "
                         f"TVM_NUM_THREADS=1 (got {threads})")
    unpin_tvm_threads()
    import aiq_tvm

    plans = {}
    for spec in args.plan:
        name, _, files = spec.partition("=")
        plan_file, _, cal_file = files.partition(":")
        plans[name] = (aiq_tvm.Plan.load(plan_file),
                       aiq_tvm.Calibration.load(cal_file) if cal_file else None)
    rows = []
    for name in args.models:
        rows += bench_model(name, args, plans, threads)
    words = [Path(sys.argv[0]).as_posix()] + (argv if argv is not None else sys.argv[1:])
    run = {"command": f"TVM_NUM_THREADS={threads} python {' '.join(words)}",
           "machine": _cpu(), "threads": threads, "date": datetime.date.today().isoformat(),
           "rounds": args.rounds, "round_ms": args.round_ms, "gap_ms": args.gap_ms,
           "clock": args.clock,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "rows": rows}
    print(render_tables(rows))
    print("\n" + render_throughput(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(run, indent=1))
        print(f"wrote {args.json}")
    if args.out:
        Path(args.out).write_text(render_page([run], args.title))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
