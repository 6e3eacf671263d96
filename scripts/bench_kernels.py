"""Kernel-level benchmarks of the x86 kernel library, as subcommands over one shape table.

``table``
    For every shape of :data:`SHAPES` and batch size, builds the kernel in each precision,
    checks it against the numpy reference, then times all of them interleaved round-robin in
    short rounds, so background load hits every candidate alike. ``torch.nn.functional``
    conv2d/linear (FP32, NCHW, eager, 2 threads; also 1 thread) is timed first, before any TVM
    kernel has run (see ``bench_torch`` for why). Prints median milliseconds per call, the
    fp32/torch ratio (of medians), the int8 speedup over our fp32 kernel and int4/int8
    (medians of per-round ratios). ``--models`` then runs the whole-model comparison of
    ``scripts/bench_models.py`` (``--plan`` adds AIQ plans), and ``--out`` writes everything
    printed, with the command and the machine, to a Markdown file.
``requant``
    What the requantizing epilogue (``out_qparams``, uint8 output) saves against the unfused
    form (float kernel, then the standalone quantize kernel of the next layer's input), on the
    shapes tagged ``requant``.
``tune DB``
    Tune the shapes tagged ``tune`` (fp32 and int8) into the meta-schedule JSON database
    ``DB`` (``--trials`` candidates each; workloads already in ``DB`` are not re-tuned), then
    time the default and the selected schedule interleaved.

Kernels are built for ``--target`` (default: this machine).

Usage::

    TVM_NUM_THREADS=2 python scripts/bench_kernels.py table [--batches 1 64] [--rounds 25]
        [--only SUBSTRING] [--stat median|min|both] [--models resnet20 mobilenet_v2
        [--plan MODEL=PLAN.json:CAL.json]] [--out docs/performance.md]
    TVM_NUM_THREADS=2 python scripts/bench_kernels.py requant [--batches 1 64]
    TVM_NUM_THREADS=2 python scripts/bench_kernels.py tune DB [--trials 64] [--batches 64]
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

from aiq_tvm import testing  # noqa: E402
from aiq_tvm.bench import round_orders  # noqa: E402
from aiq_tvm.quant import ActQParams  # noqa: E402
from aiq_tvm.schemes import PRECISIONS  # noqa: E402
from aiq_tvm.targets import resolve_target  # noqa: E402
from aiq_tvm.targets.x86 import (  # noqa: E402
    ConvSpec,
    DenseSpec,
    conv2d_kernel,
    dense_kernel,
    quantize_kernel,
)

IDLE_S = 0.03
TABLE, REQUANT, TUNE = "table", "requant", "tune"


@dataclass(frozen=True)
class Shape:
    """One benchmark shape: conv (C->O at HxW, kernel k, stride s, depthwise) or dense (C->O),
    and the subcommands that time it."""

    model: str
    c: int
    o: int
    hw: int = 1
    k: int = 1
    s: int = 1
    dw: bool = False
    dense: bool = False
    modes: tuple = (TABLE,)

    def label(self) -> str:
        if self.dense:
            return f"{self.model} dense {self.c}->{self.o}"
        kind = " dw" if self.dw else ""
        return f"{self.model} {self.c}->{self.o} {self.hw}x{self.hw} k{self.k} s{self.s}{kind}"

    def spec(self, n: int):
        if self.dense:
            return DenseSpec(n, self.c, self.o)
        return ConvSpec(n, self.hw, self.hw, self.c, self.o, self.k, self.k, stride=self.s,
                        padding=self.k // 2, groups=self.c if self.dw else 1)


# ResNet-20 and MobileNetV2 layer shapes (one table for every subcommand).
SHAPES = [
    Shape("r20", 3, 16, 32, 3),
    Shape("r20", 16, 16, 32, 3, modes=(TABLE, REQUANT, TUNE)),
    Shape("r20", 16, 32, 32, 3, 2),
    Shape("r20", 16, 32, 32, 1, 2, modes=(TABLE, REQUANT)),
    Shape("r20", 32, 32, 16, 3, modes=(TABLE, TUNE)),
    Shape("r20", 64, 64, 8, 3, modes=(TABLE, REQUANT, TUNE)),
    Shape("r20", 64, 10, dense=True),
    Shape("mbv2", 32, 32, 16, 3, dw=True, modes=(TABLE, REQUANT)),
    Shape("mbv2", 144, 144, 8, 3, 2, dw=True, modes=(TABLE, REQUANT)),
    Shape("mbv2", 96, 24, 8, 1, modes=(TABLE, REQUANT)),
    Shape("mbv2", 24, 144, 8, 1, modes=(TABLE, REQUANT)),
    Shape("mbv2", 576, 96, 2, 1),
    Shape("mbv2", 960, 320, 1, 1),
    Shape("mbv2", 320, 1280, 1, 1),
    Shape("mbv2", 1280, 10, dense=True),
]


def shapes_for(mode: str, only: str = "") -> list[Shape]:
    return [s for s in SHAPES if mode in s.modes and (not only or only in s.label())]


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


def _hot_sample(run, number: int) -> float:
    """One timed sample, right after an untimed warm-up of the same call.

    A thread pool that went to sleep during the idle pause between rounds (torch's OpenMP
    workers sleep, TVM's spin for a while) would otherwise pay its wake-up inside the timed
    call; the warm-up times every candidate hot alike.
    """
    run(max(1, number // 4))
    return run(number)


def _calls_per_sample(run) -> int:
    # ~2 ms per sample: short rounds keep the candidates of one round under the same load.
    return int(np.clip(2e-3 / max(run(3), 1e-7), 1, 2000))


def interleave(timers: dict, rounds: int) -> dict[str, np.ndarray]:
    """Seconds per call of every timer, one ~2 ms sample per round; each round's order comes
    from a Williams design, so no candidate always runs first after the idle pause or right
    after the same other one (``aiq_tvm.bench.round_orders``)."""
    numbers = {k: _calls_per_sample(run) for k, run in timers.items()}
    samples = {k: [] for k in timers}
    for order in round_orders(timers, rounds):
        for k in order:
            samples[k].append(_hot_sample(timers[k], numbers[k]))
        time.sleep(IDLE_S)
    return {k: np.asarray(v) for k, v in samples.items()}


def compiled_timer(func, args, target):
    """Compile a PrimFunc, run it once on ``args``; return ``run(number) -> s per call``."""
    ex = testing.compile_prim_func(func, target)
    ex.mod["main"](*args)
    return testing.kernel_timer(ex, args)


def _build(spec, precision: str, w, b, **kwargs):
    builder = dense_kernel if isinstance(spec, DenseSpec) else conv2d_kernel
    return builder(spec, precision, w, b, **kwargs)


def checked_timer(kernel, precision: str, spec, data, target):
    """Compile, check the output against the numpy reference, return a timing closure."""
    x, w, b, _, qp = data
    xin = testing.kernel_input(precision, x, qp)
    args = testing.kernel_args(kernel, xin)
    run = compiled_timer(kernel.prim_func, args, target)
    ref = testing.reference(spec, precision, xin, w, b, act_qparams=qp, target=target).y
    err = testing.relative_error(args[-1].numpy(), ref)
    if err > 1e-4:
        raise AssertionError(f"{kernel.info['schedule']}: relative error {err:.2e}")
    return run


# ---------------------------------------------------------------------------------------------
# PyTorch reference, in its own process
# ---------------------------------------------------------------------------------------------


def _torch_call(shape: Shape, x_f32, w, b):
    bt = torch.from_numpy(b)
    if shape.dense:
        xt, wt = torch.from_numpy(x_f32), torch.from_numpy(w)
        return lambda: torch.nn.functional.linear(xt, wt, bt)
    xt = torch.from_numpy(np.ascontiguousarray(x_f32.transpose(0, 3, 1, 2)))
    wt = torch.from_numpy(w)
    groups = shape.c if shape.dw else 1
    return lambda: torch.nn.functional.conv2d(
        xt, wt, bt, stride=shape.s, padding=shape.k // 2, groups=groups
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
    each other's time slices (tens of ms stalls); a child process measured on demand keeps both
    sides undisturbed and comparable.
    """

    def __init__(self, threads: int = 2):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_torch_worker, args=(child, threads), daemon=True)
        self.proc.start()

    def setup(self, shape: Shape, x_f32, w, b):
        self.conn.send(("setup", shape, x_f32, w, b))
        self.conn.recv()

        def run(num):
            self.conn.send(("run", num))
            return self.conn.recv()

        return run

    def close(self):
        self.conn.send(("stop",))
        self.proc.join(timeout=10)


def bench_torch(shape: Shape, rounds: int, data, torch_timers: dict[str, TorchTimer]
                ) -> dict[str, np.ndarray]:
    """Seconds per call of torch conv2d/linear, ``rounds`` hot samples per timer.

    Runs before any TVM kernel has run in this process: TVM's pool workers spin after each
    parallel region, and a torch 2-thread OpenMP barrier sharing the 2 cores with them stalls
    for whole scheduler slices (the 96->24 1x1 conv at batch 64 took 0.13 ms in torch alone,
    a 31 ms median when interleaved with our kernels).
    """
    x, w, b, _, _ = data
    timers = {key: tt.setup(shape, x, w, b) for key, tt in torch_timers.items()}
    numbers = {key: _calls_per_sample(run) for key, run in timers.items()}
    samples = {key: [] for key in timers}
    for _ in range(rounds):
        for key, run in timers.items():
            samples[key].append(_hot_sample(run, numbers[key]))
    return {key: np.asarray(v) for key, v in samples.items()}


# ---------------------------------------------------------------------------------------------
# table: every precision vs torch
# ---------------------------------------------------------------------------------------------


def bench_precisions(shape: Shape, n: int, rounds: int, data, target) -> dict[str, np.ndarray]:
    """Seconds per call of every precision's kernel, one sample per round-robin round."""
    spec = shape.spec(n)
    _, w, b, _, qp = data
    timers = {p: checked_timer(_build(spec, p, w, b, act_qparams=qp, target=target), p, spec,
                               data, target) for p in PRECISIONS}
    return interleave(timers, rounds)


def _ratios(res: dict, stat: str) -> dict[str, float]:
    """fp32 vs torch (ratio of medians or minima: torch ran in another phase) and int8/int4
    speed-ups (median of per-round ratios, or ratio of minima)."""
    agg = np.median if stat == "median" else np.min
    torch_best = min(agg(res["torch"]), agg(res["torch1t"]))
    out = {"fp32/torch": agg(res["fp32"]) / agg(res["torch"]),
           "fp32/best": agg(res["fp32"]) / torch_best}
    if stat == "median":
        out.update({"int8 x": np.median(res["fp32"] / res["int8"]),
                    "int4/int8": np.median(res["int4"] / res["int8"])})
    else:
        out.update({"int8 x": res["fp32"].min() / res["int8"].min(),
                    "int4/int8": res["int4"].min() / res["int8"].min()})
    return {k: float(v) for k, v in out.items()}


def _table_row(shape: Shape, n: int, res: dict, cols: list[str], stat: str) -> str:
    agg = np.median if stat == "median" else np.min
    ms = " ".join(f"{agg(res[c]) * 1e3:8.4f}" for c in cols)
    rat = _ratios(res, stat)
    return (f"{shape.label():34s} {n:3d} {ms} {rat['fp32/torch']:10.2f} "
            f"{rat['fp32/best']:9.2f} {rat['int8 x']:7.2f} {rat['int4/int8']:9.2f}")


def _time_torch_first(cases: dict, rounds: int) -> dict:
    # "torch" is the requested reference (2 threads); "torch1t" (1 thread) is printed too: on
    # a shared 2-core VM torch's 2-thread OpenMP regions sometimes lose to one thread.
    torch_timers = {"torch": TorchTimer(2), "torch1t": TorchTimer(1)}
    out = {case: bench_torch(case[0], rounds, data, torch_timers)
           for case, data in cases.items()}
    for tt in torch_timers.values():
        tt.close()
    return out


def cmd_table(args, target) -> None:
    rng = np.random.default_rng(0)
    cases = {(shape, n): testing.layer_data(shape.spec(n), rng)
             for n in args.batches for shape in shapes_for(TABLE, args.only)}
    torch_res = _time_torch_first(cases, args.rounds)
    cols = [*PRECISIONS, "torch", "torch1t"]
    head = f"{'shape':34s} {'N':>3s} " + " ".join(f"{c:>8s}" for c in cols)
    head += f" {'fp32/torch':>10s} {'fp32/best':>9s} {'int8 x':>7s} {'int4/int8':>9s}"
    stats = ["median", "min"] if args.stat == "both" else [args.stat]
    rows = {st: [] for st in stats}
    print(f"TVM_NUM_THREADS={os.environ['TVM_NUM_THREADS']}, torch threads 2, ms per call; "
          "torch timed first, before any TVM kernel ran (see bench_torch)")
    for (shape, n), data in cases.items():
        res = {**bench_precisions(shape, n, args.rounds, data, target), **torch_res[shape, n]}
        for st in stats:
            rows[st].append(_table_row(shape, n, res, cols, st))
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


# ---------------------------------------------------------------------------------------------
# requant: fused uint8 output vs float kernel + quantize kernel
# ---------------------------------------------------------------------------------------------


def _requant_timers(shape: Shape, spec, precision: str, data, target) -> dict:
    """Float kernel, its fused-uint8 twin and the standalone quantize kernel; checks that the
    fused output equals float + quantize bit for bit."""
    x, w, b, _, qp = data
    kw = dict(act="relu", act_qparams=qp, target=target)
    xin = testing.kernel_input(precision, x, qp)
    k_float = conv2d_kernel(spec, precision, w, b, **kw)
    a_float = testing.kernel_args(k_float, xin)
    timers = {"float": compiled_timer(k_float.prim_func, a_float, target)}
    y = a_float[-1].numpy()
    out_qp = ActQParams.from_range(0.0, float(y.max()))
    k_fused = conv2d_kernel(spec, precision, w, b, out_qparams=out_qp, **kw)
    a_fused = testing.kernel_args(k_fused, xin)
    timers["fused"] = compiled_timer(k_fused.prim_func, a_fused, target)
    a_quant = [tvm.runtime.tensor(y), tvm.runtime.tensor(np.zeros(y.shape, np.uint8))]
    timers["quant"] = compiled_timer(quantize_kernel(y.shape, out_qp, target=target), a_quant,
                                     target)
    if not np.array_equal(a_fused[-1].numpy(), a_quant[-1].numpy()):
        raise AssertionError(f"{shape.label()} {precision}: fused != float + quantize")
    return timers


def cmd_requant(args, target) -> None:
    rng = np.random.default_rng(0)
    head = (
        f"{'shape':34s} {'N':>3s} {'scheme':6s} {'float':>8s} {'quant':>8s} {'f+q':>8s} "
        f"{'fused':>8s} {'fused/float':>13s} {'fused/(f+q)':>13s}"
    )
    print(f"TVM_NUM_THREADS={os.environ['TVM_NUM_THREADS']}, ms per call, median over "
          f"{args.rounds} interleaved rounds; ratios: median of per-round ratios | ratio of "
          "minima")
    print(head)
    print("-" * len(head))
    for n in args.batches:
        for shape in shapes_for(REQUANT, args.only):
            spec = shape.spec(n)
            data = testing.layer_data(spec, rng)
            for precision in ("int8", "fp32"):
                res = interleave(_requant_timers(shape, spec, precision, data, target),
                                 args.rounds)
                unfused = res["float"] + res["quant"]
                ms = {k: float(np.median(v)) * 1e3 for k, v in res.items()}
                lo = {k: float(v.min()) for k, v in res.items()}
                vs_float = (f"{np.median(res['fused'] / res['float']):6.3f}|"
                            f"{lo['fused'] / lo['float']:6.3f}")
                vs_unfused = (f"{np.median(res['fused'] / unfused):6.3f}|"
                              f"{lo['fused'] / (lo['float'] + lo['quant']):6.3f}")
                print(f"{shape.label():34s} {n:3d} {precision:6s} {ms['float']:8.4f} "
                      f"{ms['quant']:8.4f} {float(np.median(unfused)) * 1e3:8.4f} "
                      f"{ms['fused']:8.4f} {vs_float:>13s} {vs_unfused:>13s}", flush=True)


# ---------------------------------------------------------------------------------------------
# tune: meta-schedule tuned vs default schedule
# ---------------------------------------------------------------------------------------------


def _tune_row(shape: Shape, n: int, precision: str, data, args, target) -> str:
    spec = shape.spec(n)
    x, w, b, _, qp = data
    kw = dict(act="relu", act_qparams=qp, target=target)
    t0 = time.perf_counter()
    tuned = conv2d_kernel(spec, precision, w, b, database=args.database,
                          tune_trials=args.trials, **kw)
    wall = time.perf_counter() - t0
    default = conv2d_kernel(spec, precision, w, b, **kw)
    xin = testing.kernel_input(precision, x, qp)
    a_def, a_tun = testing.kernel_args(default, xin), testing.kernel_args(tuned, xin)
    res = interleave({"default": compiled_timer(default.prim_func, a_def, target),
                      "tuned": compiled_timer(tuned.prim_func, a_tun, target)}, args.rounds)
    if not np.array_equal(a_def[-1].numpy(), a_tun[-1].numpy()):
        raise AssertionError(f"{shape.label()} {precision}: tuned != default output")
    rep = tuned.info["tuning"]
    speedup = (f"{np.median(res['default'] / res['tuned']):6.3f}|"
               f"{res['default'].min() / res['tuned'].min():6.3f}")
    return (f"{shape.label():30s} {n:3d} {precision:5s} "
            f"{np.median(res['default']) * 1e3:8.4f} {np.median(res['tuned']) * 1e3:8.4f} "
            f"{speedup:>13s} {rep['source']:8s} {rep['trials']:6d} {wall:7.1f}  "
            f"{default.info['schedule']} -> {tuned.info['schedule']}")


def cmd_tune(args, target) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for n in args.batches:
        for shape in shapes_for(TUNE, args.only):
            data = testing.layer_data(shape.spec(n), rng)
            for precision in ("fp32", "int8"):
                rows.append(_tune_row(shape, n, precision, data, args, target))
                print(rows[-1], flush=True)
    head = (f"{'shape':30s} {'N':>3s} {'sch':5s} {'default':>8s} {'tuned':>8s} "
            f"{'speedup':>13s} {'source':8s} {'trials':>6s} {'wall s':>7s}  "
            "schedule (default -> selected)")
    print(f"\nms per call, median over {args.rounds} interleaved rounds (speedup: median of "
          "per-round ratios | ratio of minima)")
    print(head)
    print("-" * len(head))
    print("\n".join(rows))


# ---------------------------------------------------------------------------------------------
# Command line, whole-model table and Markdown output
# ---------------------------------------------------------------------------------------------


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


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    common.add_argument("--rounds", type=int, default=25, help="round-robin measurement rounds")
    common.add_argument("--only", default="", help="substring filter on the shape label")
    common.add_argument("--target", default="llvm", help="kernel target (default: this machine)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    table = sub.add_parser(TABLE, parents=[common], help="every precision vs torch")
    table.add_argument(
        "--stat", choices=["median", "min", "both"], default="median",
        help="statistic over rounds ('both': median table, then minimum table); ratios are the "
        "median of per-round ratios (or the ratio of minima)")
    table.add_argument("--models", nargs="*", default=[], help="also run the whole-model table")
    table.add_argument("--plan", action="append", default=[], help="passed to bench_models.py")
    table.add_argument("--out", default="", help="write the printed tables to this Markdown file")
    sub.add_parser(REQUANT, parents=[common], help="uint8-output epilogue savings")
    tune = sub.add_parser(TUNE, parents=[common], help="tuned vs default schedules")
    tune.add_argument("database", help="meta-schedule JSON database directory")
    tune.add_argument("--trials", type=int, default=64, help="tuning trials per workload")
    return ap


def _models_markdown(args) -> str:
    """The whole-model table of bench_models.py, its title and command line dropped."""
    import tempfile

    import bench_models

    out = Path(tempfile.mkdtemp()) / "models.md"
    extra = [a for p in args.plan for a in ("--plan", p)]
    bench_models.main(["--models", *args.models, "--batches", *map(str, args.batches), *extra,
                       "--out", str(out)])
    return "\n".join(line for line in out.read_text().splitlines()[1:]
                     if not line.startswith("Command:"))


def _write_markdown(path: str, argv: list[str], printed: str, models_md: str) -> None:
    threads = os.environ["TVM_NUM_THREADS"]
    cmd = f"TVM_NUM_THREADS={threads} python scripts/bench_kernels.py " + " ".join(argv)
    text = (f"# Performance\n\nCommand: `{cmd}`\n\nMachine: {_machine()}, {threads} threads, "
            f"{datetime.date.today().isoformat()}.\n\n## Kernels\n\nThe kernel table as the "
            f"command printed it.\n\n```\n{printed.rstrip()}\n```\n")
    if models_md:
        text += ("\n## Whole models (scripts/bench_models.py, run by the command above)\n"
                 f"{models_md}\n")
    Path(path).write_text(text)
    print(f"wrote {path}")


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    target = resolve_target(args.target)[0]
    commands = {TABLE: cmd_table, REQUANT: cmd_requant, TUNE: cmd_tune}
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        commands[args.cmd](args, target)
    if args.cmd != TABLE:
        return
    models_md = _models_markdown(args) if args.models else ""
    if args.out:
        _write_markdown(args.out, argv, tee.buf.getvalue(), models_md)


if __name__ == "__main__":
    main()
