"""Kernel profiling of a build: time every TIR kernel call, attribute the times to layers.

:func:`profile` runs ``main`` once under a VM instrument that records each kernel call and its
arguments, then times every recorded call on its own.  :func:`measured_report` puts each
layer's kernel time beside its roofline time; :func:`uniform_layer_times` feeds the
``measured`` search objective.  Timing needs a target this machine executes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import tvm

from .report import Report, make_report
from .runtime import require_host_runnable
from .schemes import PRECISIONS
from .weights import bind

__all__ = ["profile", "KernelTimes", "attribute_kernel_times", "measured_report",
           "uniform_layer_times"]

# Layer kernels are named "<layer>_<precision>", input quantizers "<layer>_quantize".
_LAYER_KERNEL = re.compile(rf"^.+_({'|'.join(PRECISIONS)})$")
# The 1x1 kernels of a float layer split into its taps (targets/x86/sparse_taps.py) run
# before the layer's own kernel, which takes their sum.
_TAP_PIECE = re.compile(r"^.+_fp32_tap\d+$")


def profile(result, batch_size: int | None = None, repeat: int = 7, remote=None
            ) -> list[tuple[str, float]]:
    """Median time in microseconds of every TIR kernel call of one inference of ``result``
    (a :class:`~aiq_tvm.api.BuildResult`), here or on an RPC device (``remote``: a
    ``tvm.rpc.RPCSession`` or ``"host:port"``).

    Returns ``[(symbol, us), ...]`` in call order (layers with identical shapes share one
    kernel symbol, so the order, not the name, tells calls apart).  Here, each call is timed
    with the arguments an inference passed it; on a remote device, with arguments of the same
    shapes (:meth:`aiq_tvm.deploy.RemoteModule.time_kernels`).
    """
    bs = result.batch_size if batch_size is None else int(batch_size)
    if remote is not None:
        exe = result.executable(bs)
        return result.on_remote(remote, bs).time_kernels(exe.aiq_kernel_calls, repeat)
    require_host_runnable(result.target, "profile the build's kernels")
    exe = result.executable(bs)
    vm = bind(exe)  # main's weights bound: the kernels see them as an inference passes them
    calls: list = []

    def instrument(func, name, before_run, ret_value, *args):
        if before_run and not str(name).startswith("vm.") and args and all(
                hasattr(a, "numpy") for a in args):
            calls.append((str(name), [tvm.runtime.tensor(a.numpy()) for a in args]))
        return 0

    vm.set_instrument(instrument)
    vm["main"](tvm.runtime.tensor(result.example_input(bs)))
    lib = exe.mod.imports[0] if exe.mod.imports else exe.mod  # the compiled kernels
    out = []
    for name, args in calls:
        ev = lib.time_evaluator(name, tvm.cpu(), number=10, repeat=repeat)
        out.append((name, float(np.median(ev(*args).results)) * 1e6))
    return out


@dataclass
class KernelTimes:
    """Kernel times attributed to layers (see :func:`attribute_kernel_times`)."""

    per_layer: dict[str, float] = field(default_factory=dict)
    other_us: float = 0.0
    unmatched_layers: list[str] = field(default_factory=list)
    unmatched_kernels: list[str] = field(default_factory=list)
    # layer -> the layer whose kernel computed it too (its time counted there)
    fused_into: dict[str, str] = field(default_factory=dict)

    def notes(self) -> list[str]:
        out = []
        if self.fused_into:
            pairs = ", ".join(f"{a} in {b}" for a, b in self.fused_into.items())
            out.append(f"{len(self.fused_into)} layer(s) ran inside the next layer's kernel, "
                       f"their time counted there: {pairs}")
        if self.unmatched_layers:
            out.append(f"{len(self.unmatched_layers)} layer(s) had no layer kernel call to "
                       f"time: {self.unmatched_layers}")
        if self.unmatched_kernels:
            out.append(f"{len(self.unmatched_kernels)} layer kernel call(s) beyond the "
                       f"model's {len(self.per_layer) + len(self.unmatched_layers)} layers, "
                       f"counted as other kernels: {self.unmatched_kernels}")
        return out


def attribute_kernel_times(calls: Sequence[tuple[str, float]], layers: Sequence[str],
                           repeats: int = 1, fused: Mapping[str, int] | None = None
                           ) -> KernelTimes:
    """Give each layer, in program order, the next layer-kernel call's time; ``repeats``: the
    layers run that many times in turn (a micro-batched ``main``), each layer's calls summed.

    A standalone input quantize kernel counts with the layer kernel that follows it, and so
    do the per-tap kernels of a split layer (``<layer>_fp32_tap<kh><kw>``). A kernel in
    ``fused`` (symbol -> layers it computes, the executable's ``aiq_fused_layers``) takes
    that many layers: its time goes to the last, the others are listed in ``fused_into``.
    Everything else (layout copies, pooling, fused glue, TVM's kernels for layers without an
    AIQ kernel) is ``other_us``.  When the counts differ the surplus is named, not dropped.
    """
    out = KernelTimes()
    todo = list(layers) * repeats
    fused = fused or {}
    pending = 0.0
    for sym, us in calls:
        if sym.endswith("_quantize") or _TAP_PIECE.match(sym):
            pending += us
        elif _LAYER_KERNEL.match(sym) and todo:
            for _ in range(min(fused.get(sym, 1), len(todo)) - 1):
                inner = todo.pop(0)
                out.fused_into[inner] = todo[0]
            name = todo.pop(0)
            out.per_layer[name] = out.per_layer.get(name, 0.0) + us + pending
            pending = 0.0
        elif _LAYER_KERNEL.match(sym):
            out.unmatched_kernels.append(sym)
            out.other_us += us + pending
            pending = 0.0
        else:
            out.other_us += us
    out.other_us += pending
    out.unmatched_layers = list(dict.fromkeys(todo))
    return out


def measured_report(result, repeat: int = 7, remote=None) -> Report:
    """``result``'s report with each layer's measured kernel time beside its roofline time
    (timed here, or on the RPC device ``remote``)."""
    choice = result.micro_batch_choice(result.batch_size)
    times = attribute_kernel_times(profile(result, result.batch_size, repeat, remote),
                                   result.cost.searchable, choice.batch // choice.micro,
                                   getattr(result.executable(result.batch_size),
                                           "aiq_fused_layers", None))
    assignment = result.plan.resolve(result.cost.names)
    rep = make_report(result.cost, assignment, result.preset, str(result.target),
                      measured_us=times.per_layer, run_target=str(result.run_target))
    rep.unscheduled = result.unscheduled_glue()
    if result.report is not None:
        rep.accuracy_fp32, rep.accuracy = result.report.accuracy_fp32, result.report.accuracy
    where = "" if remote is None else f" on the RPC device {_where(remote)}"
    rep.notes.append(
        f"measured{where} at batch {result.batch_size}: layer kernels "
        f"{sum(times.per_layer.values()):.1f} us, other kernels (layout, pooling, glue) "
        f"{times.other_us:.1f} us")
    rep.notes.extend(times.notes())
    return rep


def uniform_layer_times(result_for: Callable[[str], object], layers: Sequence[str],
                        precisions: Sequence[str], batch_size: int, remote=None
                        ) -> tuple[dict[str, dict[str, float]], float]:
    """Measured kernel time (us) of every layer at every precision, each timed in a uniform
    build of that precision (``result_for(precision)``), and the rest of an FP32 inference
    (glue kernels, unsupported layers, VM dispatch) in us; here or on the RPC device
    ``remote``."""
    table: dict[str, dict[str, float]] = {n: {} for n in layers}
    overhead = 0.0
    for prec in dict.fromkeys(["fp32", *precisions]):
        res = result_for(prec)
        for r in measured_report(res, repeat=5, remote=remote).rows:
            if r.name in table and r.measured_us is not None:
                table[r.name][prec] = r.measured_us
        missing = [n for n in table if prec not in table[n]]
        if missing:
            raise RuntimeError(f"the uniform {prec} build ran no layer kernel for {missing}; "
                               "cannot score plans by measured time")
        if prec == "fp32":
            total_us = res.benchmark(batch_size, repeat=15, remote=remote)["median_ms"] * 1e3
            overhead = max(total_us - sum(table[n]["fp32"] for n in table), 0.0)
    return table, overhead


def _where(remote) -> str:
    return remote if isinstance(remote, str) else type(remote).__name__
