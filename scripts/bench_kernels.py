"""Kernel-level benchmark of the x86 kernel library against PyTorch FP32 (eager, NCHW).

For every ResNet-20 / MobileNetV2 layer shape below and every batch size, builds the kernel in
each scheme (fp32, int8, int4, w8, w4), checks its output against the numpy reference, then
times all of them interleaved round-robin in short rounds, so background load hits every
candidate alike. ``torch.nn.functional`` conv2d/linear (FP32, NCHW, eager, 2 threads; also 1
thread) is timed first, before any TVM kernel has run (see ``bench_torch`` for why). Prints
median milliseconds per call, the fp32/torch ratio (of medians), the int8 speedup over our fp32
kernel and int4/int8 (medians of per-round ratios).

Two more modes:

* ``--requant``: what the requantizing epilogue (``out_qparams``, uint8 output) saves against the
  unfused form (float kernel, then the standalone quantize kernel of the next layer's input),
  on memory-bound and compute-bound shapes.
* ``--tune DB``: tune the ResNet-20 3x3 conv shapes (fp32 and int8) into the meta-schedule JSON
  database ``DB`` (``--trials`` candidates each; workloads already in ``DB`` are not re-tuned),
  then time the default and the selected schedule interleaved.

With ``--models`` the whole-model comparison of ``scripts/bench_models.py`` (our builds vs
PyTorch eager vs ONNX Runtime, optionally AIQ plans via ``--plan``) runs after the kernel table,
and ``--out`` writes everything printed, with the command and the machine, to a Markdown file.

Usage::

    TVM_NUM_THREADS=2 python scripts/bench_kernels.py [--batches 1 64] [--rounds 25]
        [--only SUBSTRING] [--stat median|min|both] [--models resnet20 mobilenet_v2
        [--plan MODEL=PLAN.json:CAL.json]] [--out docs/performance.md]
    TVM_NUM_THREADS=2 python scripts/bench_kernels.py --requant [--batches 1 64]
    TVM_NUM_THREADS=2 python scripts/bench_kernels.py --tune DB [--trials 64] [--batches 64]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aiq_tvm.threads import unpin_tvm_threads

os.environ.setdefault("TVM_NUM_THREADS", "2")
unpin_tvm_threads()  # before TVM starts its pool (docs/threading.md)

import torch  # noqa: E402
import tvm  # noqa: E402

from aiq_tvm.quant import ActQParams, quantize_act, ref_conv2d, ref_dense  # noqa: E402
from aiq_tvm.targets.x86 import (  # noqa: E402
    ConvSpec,
    DenseSpec,
    conv2d_kernel,
    dense_kernel,
    quantize_kernel,
)

TARGET = {"kind": "llvm", "mcpu": "znver4", "num-cores": 2}
SCHEMES = ("fp32", "int8", "int4", "w8", "w4")
IDLE_S = 0.03


def _hot_sample(run, number: int) -> float:
    """One timed sample, right after an untimed warm-up of the same call.

    A thread pool that went to sleep during the idle pause between rounds (torch's OpenMP
    workers sleep, TVM's spin for a while) would otherwise pay its wake-up inside the timed
    call; the warm-up times every candidate hot alike.
    """
    run(max(1, number // 4))
    return run(number)


@dataclass(frozen=True)
class Layer:
    """One benchmark shape: conv (C->O at HxW, kernel k, stride s, groups) or dense (C->O)."""

    name: str
    c: int
    o: int
    hw: int = 1
    k: int = 1
    s: int = 1
    dw: bool = False
    dense: bool = False

    def label(self) -> str:
        if self.dense:
            return f"{self.name} dense {self.c}->{self.o}"
        kind = " dw" if self.dw else ""
        return f"{self.name} {self.c}->{self.o} {self.hw}x{self.hw} k{self.k} s{self.s}{kind}"


LAYERS = [
    Layer("r20", 3, 16, 32, 3),
    Layer("r20", 16, 16, 32, 3),
    Layer("r20", 16, 32, 32, 3, 2),
    Layer("r20", 16, 32, 32, 1, 2),
    Layer("r20", 32, 32, 16, 3),
    Layer("r20", 64, 64, 8, 3),
    Layer("r20", 64, 10, dense=True),
    Layer("mbv2", 32, 32, 16, 3, dw=True),
    Layer("mbv2", 144, 144, 8, 3, 2, dw=True),
    Layer("mbv2", 96, 24, 8, 1),
    Layer("mbv2", 24, 144, 8, 1),
    Layer("mbv2", 576, 96, 2, 1),
    Layer("mbv2", 960, 320, 1, 1),
    Layer("mbv2", 320, 1280, 1, 1),
    Layer("mbv2", 1280, 10, dense=True),
]


def _build(layer: Layer, n: int, scheme: str, w, b, qp):
    if layer.dense:
        return dense_kernel(
            DenseSpec(n, layer.c, layer.o), scheme, w, b, act_qparams=qp, target=TARGET
        )
    return conv2d_kernel(_conv_spec(layer, n), scheme, w, b, act_qparams=qp, target=TARGET)


def _reference(layer: Layer, scheme: str, x_f32, w, b, qp) -> np.ndarray:
    x = quantize_act(x_f32, qp) if scheme in ("int8", "int4") else x_f32
    if layer.dense:
        return ref_dense(x, w, b, scheme, act_qparams=qp).y
    pad = layer.k // 2
    return ref_conv2d(
        x, w, b, scheme, stride=(layer.s, layer.s), padding=(pad,) * 4,
        groups=layer.c if layer.dw else 1, act_qparams=qp,
    ).y  # fmt: skip


def _tvm_timer(kernel, x_f32, qp, ref: np.ndarray):
    """Compile, check the output against the numpy reference, return a timing closure."""
    ex = tvm.compile(tvm.IRModule({"main": kernel.prim_func}), tvm.target.Target(TARGET))
    x = quantize_act(x_f32, qp) if kernel.in_dtype == "uint8" else x_f32
    args = [tvm.runtime.tensor(x)] + [tvm.runtime.tensor(c) for c in kernel.consts]
    args.append(tvm.runtime.tensor(np.zeros(kernel.out_shape, kernel.out_dtype)))
    ex.mod["main"](*args)
    err = np.abs(args[-1].numpy() - ref).max() / max(np.abs(ref).max(), 1e-30)
    if err > 1e-4:
        raise AssertionError(f"{kernel.info['schedule']}: relative error {err:.2e}")

    def run(num):
        f = ex.mod.time_evaluator("main", tvm.cpu(), number=num, repeat=1)
        return float(f(*args).mean)

    return run


def _torch_call(layer: Layer, x_f32, w, b):
    bt = torch.from_numpy(b)
    if layer.dense:
        xt, wt = torch.from_numpy(x_f32), torch.from_numpy(w)
        return lambda: torch.nn.functional.linear(xt, wt, bt)
    xt = torch.from_numpy(np.ascontiguousarray(x_f32.transpose(0, 3, 1, 2)))
    wt = torch.from_numpy(w)
    groups = layer.c if layer.dw else 1
    return lambda: torch.nn.functional.conv2d(
        xt, wt, bt, stride=layer.s, padding=layer.k // 2, groups=groups
    )


def _torch_worker(conn, threads: int) -> None:
    """Child process timing torch (its OpenMP pool must not share a process with TVM's pool)."""
    torch.set_num_threads(threads)
    call = None
    while True:
        msg = conn.recv()
        if msg[0] == "setup":
            call = _torch_call(*msg[1:])
            with torch.no_grad():
                call()
            conn.send(True)
        elif msg[0] == "run":
            with torch.no_grad():
                t0 = time.perf_counter()
                for _ in range(msg[1]):
                    call()
                conn.send((time.perf_counter() - t0) / msg[1])
        else:
            return


class TorchTimer:
    """Times ``torch.nn.functional`` conv2d/linear in a separate process (same 2 cores).

    Running torch in the benchmark process made its OpenMP workers and TVM's thread pool steal
    each other's time slices (tens of ms stalls); a child process measured on demand, in the same
    round-robin as the TVM kernels, keeps both sides undisturbed and comparable.
    """

    def __init__(self, threads: int = 2):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_torch_worker, args=(child, threads), daemon=True)
        self.proc.start()

    def setup(self, layer: Layer, x_f32, w, b):
        self.conn.send(("setup", layer, x_f32, w, b))
        self.conn.recv()

        def run(num):
            self.conn.send(("run", num))
            return self.conn.recv()

        return run

    def close(self):
        self.conn.send(("stop",))
        self.proc.join(timeout=10)


def layer_inputs(layer: Layer, n: int, rng):
    """Random input (NHWC), weight, bias and input quantization parameters of one layer."""
    if layer.dense:
        x = rng.standard_normal((n, layer.c)).astype(np.float32)
        w = (rng.standard_normal((layer.o, layer.c)) / np.sqrt(layer.c)).astype(np.float32)
    else:
        x = rng.standard_normal((n, layer.hw, layer.hw, layer.c)).astype(np.float32)
        cin = 1 if layer.dw else layer.c
        w = rng.standard_normal((layer.o, cin, layer.k, layer.k)).astype(np.float32)
        w /= np.sqrt(cin * layer.k * layer.k)
    b = rng.standard_normal(layer.o).astype(np.float32)
    qp = ActQParams.from_range(float(x.min()), float(x.max()))
    return x, w, b, qp


def _calls_per_sample(run) -> int:
    # ~2 ms per sample: short rounds keep the candidates of one round under the same load.
    return int(np.clip(2e-3 / max(run(3), 1e-7), 1, 2000))


def bench_torch(
    layer: Layer, rounds: int, inputs, torch_timers: dict[str, TorchTimer]
) -> dict[str, np.ndarray]:
    """Seconds per call of torch conv2d/linear, ``rounds`` hot samples per timer.

    Runs before any TVM kernel has run in this process: TVM's pool workers spin after each
    parallel region, and a torch 2-thread OpenMP barrier sharing the 2 cores with them stalls
    for whole scheduler slices (the 96->24 1x1 conv at batch 64 took 0.13 ms in torch alone,
    a 31 ms median when interleaved with our kernels).
    """
    x, w, b, _ = inputs
    timers = {key: tt.setup(layer, x, w, b) for key, tt in torch_timers.items()}
    numbers = {key: _calls_per_sample(run) for key, run in timers.items()}
    samples = {key: [] for key in timers}
    for _ in range(rounds):
        for key, run in timers.items():
            samples[key].append(_hot_sample(run, numbers[key]))
    return {key: np.asarray(v) for key, v in samples.items()}


def bench_layer(layer: Layer, n: int, rounds: int, inputs) -> dict[str, np.ndarray]:
    """Seconds per call of every scheme's kernel, one sample per round-robin round."""
    x, w, b, qp = inputs
    timers = {
        s: _tvm_timer(_build(layer, n, s, w, b, qp), x, qp, _reference(layer, s, x, w, b, qp))
        for s in SCHEMES
    }
    numbers = {key: _calls_per_sample(run) for key, run in timers.items()}
    samples = {key: [] for key in timers}
    keys = list(SCHEMES)
    for r in range(rounds):
        # Rotate the order so no scheme always runs first after the idle pause.
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            samples[key].append(_hot_sample(timers[key], numbers[key]))
        time.sleep(IDLE_S)
    return {key: np.asarray(v) for key, v in samples.items()}


# ---------------------------------------------------------------------------------------------
# Shared helpers of the --requant and --tune modes
# ---------------------------------------------------------------------------------------------


def _conv_spec(layer: Layer, n: int) -> ConvSpec:
    pad = layer.k // 2
    return ConvSpec(
        n, layer.hw, layer.hw, layer.c, layer.o, layer.k, layer.k,
        stride=layer.s, padding=pad, groups=layer.c if layer.dw else 1,
    )  # fmt: skip


def _layer_data(layer: Layer, n: int, rng):
    return (_conv_spec(layer, n), *layer_inputs(layer, n, rng))


def _compiled_call(func, args):
    """Compile a PrimFunc; return a ``run(number) -> seconds per call`` closure."""
    ex = tvm.compile(tvm.IRModule({"main": func}), tvm.target.Target(TARGET))
    ex.mod["main"](*args)

    def run(num):
        f = ex.mod.time_evaluator("main", tvm.cpu(), number=num, repeat=1)
        return float(f(*args).mean)

    return run


def _kernel_args(kernel, x):
    args = [tvm.runtime.tensor(x)] + [tvm.runtime.tensor(c) for c in kernel.consts]
    return args + [tvm.runtime.tensor(np.zeros(kernel.out_shape, kernel.out_dtype))]


def _interleave(timers: dict, rounds: int) -> dict[str, np.ndarray]:
    """Seconds per call of every timer, one ~2 ms sample per round, order rotated per round."""
    numbers = {k: int(np.clip(2e-3 / max(run(3), 1e-7), 1, 2000)) for k, run in timers.items()}
    keys = list(timers)
    samples = {k: [] for k in keys}
    for r in range(rounds):
        for k in keys[r % len(keys) :] + keys[: r % len(keys)]:
            samples[k].append(_hot_sample(timers[k], numbers[k]))
        time.sleep(IDLE_S)
    return {k: np.asarray(v) for k, v in samples.items()}


REQUANT_LAYERS = [
    Layer("mbv2", 32, 32, 16, 3, dw=True),
    Layer("mbv2", 144, 144, 8, 3, 2, dw=True),
    Layer("mbv2", 96, 24, 8, 1),
    Layer("mbv2", 24, 144, 8, 1),
    Layer("r20", 16, 32, 32, 1, 2),
    Layer("r20", 16, 16, 32, 3),
    Layer("r20", 64, 64, 8, 3),
]


def bench_requant(batches, rounds: int, only: str = "") -> None:
    """Unfused (float kernel + quantize kernel) vs fused uint8 output, per scheme."""
    rng = np.random.default_rng(0)
    head = (
        f"{'shape':34s} {'N':>3s} {'scheme':6s} {'float':>8s} {'quant':>8s} {'f+q':>8s} "
        f"{'fused':>8s} {'fused/float':>13s} {'fused/(f+q)':>13s}"
    )
    print(f"TVM_NUM_THREADS={os.environ['TVM_NUM_THREADS']}, ms per call, median over {rounds} "
          "interleaved rounds; ratios: median of per-round ratios | ratio of minima")  # fmt: skip
    print(head)
    print("-" * len(head))
    for n in batches:
        for layer in REQUANT_LAYERS:
            if only and only not in layer.label():
                continue
            spec, x, w, b, qp = _layer_data(layer, n, rng)
            for scheme in ("int8", "fp32"):
                kw = dict(act="relu", act_qparams=qp, target=TARGET)
                k_float = conv2d_kernel(spec, scheme, w, b, **kw)
                xin = quantize_act(x, qp) if k_float.in_dtype == "uint8" else x
                a_float = _kernel_args(k_float, xin)
                timers = {"float": _compiled_call(k_float.prim_func, a_float)}
                y = a_float[-1].numpy()
                out_qp = ActQParams.from_range(0.0, float(y.max()))
                k_fused = conv2d_kernel(spec, scheme, w, b, out_qparams=out_qp, **kw)
                a_fused = _kernel_args(k_fused, xin)
                timers["fused"] = _compiled_call(k_fused.prim_func, a_fused)
                qf = quantize_kernel(y.shape, out_qp, target=TARGET)
                a_quant = [tvm.runtime.tensor(y), tvm.runtime.tensor(np.zeros(y.shape, np.uint8))]
                timers["quant"] = _compiled_call(qf, a_quant)
                if not np.array_equal(a_fused[-1].numpy(), a_quant[-1].numpy()):
                    raise AssertionError(f"{layer.label()} {scheme}: fused != float + quantize")
                res = _interleave(timers, rounds)
                unfused = res["float"] + res["quant"]
                ms = {k: float(np.median(v)) * 1e3 for k, v in res.items()}
                lo = {k: float(v.min()) for k, v in res.items()}
                vs_float = (
                    f"{np.median(res['fused'] / res['float']):6.3f}|"
                    f"{lo['fused'] / lo['float']:6.3f}"
                )
                vs_unfused = (
                    f"{np.median(res['fused'] / unfused):6.3f}|"
                    f"{lo['fused'] / (lo['float'] + lo['quant']):6.3f}"
                )
                print(
                    f"{layer.label():34s} {n:3d} {scheme:6s} {ms['float']:8.4f} "
                    f"{ms['quant']:8.4f} {float(np.median(unfused)) * 1e3:8.4f} "
                    f"{ms['fused']:8.4f} {vs_float:>13s} {vs_unfused:>13s}",
                    flush=True,
                )


TUNE_LAYERS = [Layer("r20", 16, 16, 32, 3), Layer("r20", 32, 32, 16, 3), Layer("r20", 64, 64, 8, 3)]


def bench_tune(database: str, trials: int, batches, rounds: int, only: str = "") -> None:
    """Tune the ResNet-20 3x3 conv shapes, then time default vs selected schedule."""
    rng = np.random.default_rng(0)
    rows = []
    for n in batches:
        for layer in TUNE_LAYERS:
            if only and only not in layer.label():
                continue
            spec, x, w, b, qp = _layer_data(layer, n, rng)
            for scheme in ("fp32", "int8"):
                kw = dict(act="relu", act_qparams=qp, target=TARGET)
                t0 = time.perf_counter()
                tuned = conv2d_kernel(spec, scheme, w, b, database=database,
                                      tune_trials=trials, **kw)  # fmt: skip
                wall = time.perf_counter() - t0
                default = conv2d_kernel(spec, scheme, w, b, **kw)
                xin = quantize_act(x, qp) if default.in_dtype == "uint8" else x
                a_def, a_tun = _kernel_args(default, xin), _kernel_args(tuned, xin)
                timers = {
                    "default": _compiled_call(default.prim_func, a_def),
                    "tuned": _compiled_call(tuned.prim_func, a_tun),
                }
                if not np.array_equal(a_def[-1].numpy(), a_tun[-1].numpy()):
                    raise AssertionError(f"{layer.label()} {scheme}: tuned != default output")
                res = _interleave(timers, rounds)
                rep = tuned.info["tuning"]
                speedup = (
                    f"{np.median(res['default'] / res['tuned']):6.3f}|"
                    f"{res['default'].min() / res['tuned'].min():6.3f}"
                )
                row = (
                    f"{layer.label():30s} {n:3d} {scheme:5s} "
                    f"{np.median(res['default']) * 1e3:8.4f} {np.median(res['tuned']) * 1e3:8.4f} "
                    f"{speedup:>13s} "
                    f"{rep['source']:8s} {rep['trials']:6d} {wall:7.1f}  "
                    f"{default.info['schedule']} -> {tuned.info['schedule']}"
                )
                rows.append(row)
                print(row, flush=True)
    head = (
        f"{'shape':30s} {'N':>3s} {'sch':5s} {'default':>8s} {'tuned':>8s} {'speedup':>13s} "
        f"{'source':8s} {'trials':>6s} {'wall s':>7s}  schedule (default -> selected)"
    )
    print(f"\nms per call, median over {rounds} interleaved rounds (speedup: median of per-round "
          "ratios | ratio of minima)")  # fmt: skip
    print(head)
    print("-" * len(head))
    print("\n".join(rows))


class _Tee(io.TextIOBase):
    """Write to the terminal and keep a copy (for --out)."""

    def __init__(self, stream):
        self.stream, self.buf = stream, io.StringIO()

    def write(self, s):
        self.stream.write(s)
        self.buf.write(s)
        return len(s)

    def flush(self):
        self.stream.flush()


def _machine() -> str:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main() -> None:
    argv = sys.argv[1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--rounds", type=int, default=25, help="round-robin measurement rounds")
    ap.add_argument("--only", default="", help="substring filter on the layer label")
    ap.add_argument(
        "--stat",
        choices=["median", "min", "both"],
        default="median",
        help="statistic over rounds ('both': median table, then minimum table); ratios are the "
        "median of per-round ratios (or the ratio of minima)",
    )
    ap.add_argument("--requant", action="store_true", help="uint8-output epilogue savings")
    ap.add_argument("--tune", metavar="DB", default="", help="tune into this JSON database dir")
    ap.add_argument("--trials", type=int, default=64, help="tuning trials per workload")
    ap.add_argument("--models", nargs="*", default=[], help="also run the whole-model table")
    ap.add_argument("--plan", action="append", default=[], help="passed to bench_models.py")
    ap.add_argument("--out", default="", help="write the printed tables to this Markdown file")
    args = ap.parse_args()
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        _run(args)
    models_md = ""
    if args.models:
        import tempfile

        import bench_models

        out = Path(tempfile.mkdtemp()) / "models.md"
        extra = [a for p in args.plan for a in ("--plan", p)]
        bench_models.main(["--models", *args.models, "--batches", *map(str, args.batches),
                           *extra, "--out", str(out)])
        # Its title and command line are replaced by this report's.
        models_md = "\n".join(line for line in out.read_text().splitlines()[1:]
                              if not line.startswith("Command:"))
    if args.out:
        cmd = f"TVM_NUM_THREADS={os.environ['TVM_NUM_THREADS']} python scripts/bench_kernels.py " \
            + " ".join(argv)
        text = (f"# Performance\n\nCommand: `{cmd}`\n\nMachine: {_machine()}, "
                f"{os.environ['TVM_NUM_THREADS']} threads, {datetime.date.today().isoformat()}."
                "\n\n## Kernels\n\nThe kernel table as the command printed it.\n\n```\n"
                f"{tee.buf.getvalue().rstrip()}\n```\n")
        if models_md:
            text += ("\n## Whole models (scripts/bench_models.py, run by the command above)\n"
                     f"{models_md}\n")
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")


def _run(args) -> None:
    if args.requant:
        bench_requant(args.batches, args.rounds, args.only)
        return
    if args.tune:
        bench_tune(args.tune, args.trials, args.batches, args.rounds, args.only)
        return
    rng = np.random.default_rng(0)
    inputs = {
        (layer, n): layer_inputs(layer, n, rng)
        for n in args.batches
        for layer in LAYERS
        if not args.only or args.only in layer.label()
    }
    # "torch" is the requested reference (2 threads); "torch1t" (1 thread) is printed too: on
    # a shared 2-core VM torch's 2-thread OpenMP regions sometimes lose to one thread.
    torch_timers = {"torch": TorchTimer(2), "torch1t": TorchTimer(1)}
    torch_res = {
        case: bench_torch(case[0], args.rounds, inputs[case], torch_timers) for case in inputs
    }
    for tt in torch_timers.values():
        tt.close()
    cols = [*SCHEMES, "torch", "torch1t"]
    head = f"{'shape':34s} {'N':>3s} " + " ".join(f"{c:>8s}" for c in cols)
    head += f" {'fp32/torch':>10s} {'fp32/best':>9s} {'int8 x':>7s} {'int4/int8':>9s}"
    stats = ["median", "min"] if args.stat == "both" else [args.stat]
    rows = {st: [] for st in stats}
    print(f"TVM_NUM_THREADS={os.environ['TVM_NUM_THREADS']}, torch threads 2, ms per call; "
          "torch timed first, before any TVM kernel ran (see bench_torch)")
    for n in args.batches:
        for layer in LAYERS:
            if (layer, n) not in inputs:
                continue
            res = bench_layer(layer, n, args.rounds, inputs[layer, n])
            res.update(torch_res[layer, n])
            # torch was timed in another phase: its ratios are ratios of medians (or minima).
            best = min(np.median(res["torch"]), np.median(res["torch1t"]))
            ratios = {
                "fp32/torch": np.median(res["fp32"]) / np.median(res["torch"]),
                "fp32/best": np.median(res["fp32"]) / best,
                "int8 x": res["fp32"] / res["int8"],
                "int4/int8": res["int4"] / res["int8"],
            }
            for st in stats:
                agg = np.median if st == "median" else np.min
                ms = " ".join(f"{agg(res[c]) * 1e3:8.4f}" for c in cols)
                if st == "median":
                    rat = {k: float(np.median(v)) for k, v in ratios.items()}
                else:
                    rat = {
                        "fp32/torch": res["fp32"].min() / res["torch"].min(),
                        "fp32/best": res["fp32"].min()
                        / min(res["torch"].min(), res["torch1t"].min()),
                        "int8 x": res["fp32"].min() / res["int8"].min(),
                        "int4/int8": res["int4"].min() / res["int8"].min(),
                    }
                rows[st].append(
                    f"{layer.label():34s} {n:3d} {ms} {rat['fp32/torch']:10.2f} "
                    f"{rat['fp32/best']:9.2f} {rat['int8 x']:7.2f} {rat['int4/int8']:9.2f}"
                )
            if len(stats) == 1:
                if len(rows[stats[0]]) == 1:
                    print(head)
                    print("-" * len(head))
                print(rows[stats[0]][-1], flush=True)
    if len(stats) > 1:
        for st in stats:
            print(f"\n[{st} over {args.rounds} round-robin rounds]")
            print(head)
            print("-" * len(head))
            print("\n".join(rows[st]))


if __name__ == "__main__":
    main()
