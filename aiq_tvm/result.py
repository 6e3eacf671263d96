"""``BuildResult``: a compiled AIQ model, how it was made, and how to run, time and export it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import tvm
from tvm import relax

from ._ir import batch_split_problem, input_shape
from .calibrate import Calibration
from .checks import check_positive_int
from .compiler import compile_plan
from .cost import CostModel
from .datachecks import check_finite as _check_finite
from .datachecks import check_labels, check_samples
from .microbatch import (
    AUTO,
    MEASURE,
    MicroBatchChoice,
    choose_micro_batch,
    layer_traffic,
    measure_candidates,
    measured_choice,
)
from .plan import Plan
from .report import Report
from .runtime import accuracy, require_host_runnable, run_batches, runs_here, time_main
from .search import SearchResult
from .targets import CpuPreset
from .weights import WeightedVM, bind

# Interleaved timing rounds of micro_batch="measure" (each a median of time_main).
MEASURE_ROUNDS = 5

__all__ = ["BuildResult"]


@dataclass
class BuildResult:
    """A compiled AIQ model and everything that led to it.

    ``target`` is the deploy target (what :meth:`executable` and :meth:`export_library` build
    for); ``run_target`` the one :meth:`run` and :meth:`evaluate` execute on: the deploy target
    when this machine runs its code, else the host target with the deploy target's numerics.
    Timing (:meth:`benchmark`, :mod:`aiq_tvm.profiling`) needs the deploy target itself.
    """

    plan: Plan
    report: Report | None
    cost: CostModel
    target: tvm.target.Target
    preset: CpuPreset
    calibration: Calibration | None
    search: SearchResult | None
    batch_size: int
    annotated: tvm.IRModule = field(repr=False)
    params: Mapping | None = field(repr=False, default=None)
    timings: dict = field(default_factory=dict)
    database: str | None = None
    tuning: dict = field(default_factory=dict)
    run_target: tvm.target.Target | None = None
    unscheduled: dict = field(default_factory=dict)  # batch -> [(glue function, error)]
    output: int | None = None  # which output holds the class scores (multi-output models)
    num_classes: int | None = None
    # BuildConfig.micro_batch (None, an int or "auto") and the choice made per batch size.
    micro_batch: int | str | None = None
    micro_batches: dict = field(default_factory=dict)
    # Depthwise layers fused into the pointwise kernels that read them (QuantizeAnnotated);
    # off for the builds whose layer kernels are timed one by one.
    fuse_depthwise: bool = True
    _exes: dict = field(default_factory=dict, repr=False)
    _run_exes: dict = field(default_factory=dict, repr=False)
    _embedded_exes: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.run_target is None:
            self.run_target = self.target

    @property
    def cross(self) -> bool:
        """True when accuracy runs execute on another target than the deploy target."""
        return self.run_target is not self.target

    def micro_batch_choice(self, batch_size: int | None = None) -> MicroBatchChoice:
        """The micro-batch ``main`` runs a batch of ``batch_size`` in, and why
        (``BuildConfig.micro_batch``; see :mod:`aiq_tvm.microbatch`)."""
        bs = self.batch_size if batch_size is None else int(batch_size)
        if bs not in self.micro_batches:
            problem = batch_split_problem(self.annotated)
            setting = self.micro_batch
            if setting == MEASURE and bs > 1 and not problem:
                if runs_here(self.target):
                    self.micro_batches[bs] = self._measure_micro_batch(bs)
                    return self.micro_batches[bs]
                setting = AUTO  # nothing to time here: the model instead, and the report says so
            traffic, llc, llc_name = None, 0, "LLC"
            if setting == AUTO and bs > 1 and not problem:
                from .targets.memory import weight_memory

                traffic = layer_traffic(self.cost, self.plan.resolve(self.cost.names),
                                        self.batch_size, self.preset)
                mem = weight_memory(self.target, self.preset)
                llc, llc_name = mem.llc_bytes, "usable LLC" if mem.llc_usable else "LLC"
            choice = choose_micro_batch(setting, bs, traffic, llc, problem, llc_name)
            if setting != self.micro_batch:
                choice = replace(choice, reason=f"measure: the deploy target does not run on "
                                 f"this machine, so auto's model instead; {choice.reason}")
            self.micro_batches[bs] = choice
        return self.micro_batches[bs]

    def _measure_micro_batch(self, bs: int, rounds: int = MEASURE_ROUNDS) -> MicroBatchChoice:
        """Compile ``main`` at each candidate micro-batch, time them in interleaved rounds on
        this machine (medians of :func:`time_main` medians) and keep the fastest's module."""
        exes, unscheduled = {}, {}
        for m in measure_candidates(bs):
            unscheduled[m] = []
            exes[m] = self._compile_deploy(bs, m, unscheduled[m])
        vms = {m: bind(exe) for m, exe in exes.items()}
        x = self.example_input(bs)
        times: dict[int, list[float]] = {m: [] for m in vms}
        for r in range(rounds):
            for m in (list(vms) if r % 2 == 0 else list(vms)[::-1]):
                times[m].append(time_main(vms[m], x, repeat=3, min_repeat_ms=50)["median_ms"])
        medians = {m: float(np.median(t)) for m, t in times.items()}
        choice = measured_choice(bs, medians, f"medians of {rounds} interleaved rounds here")
        self._exes[bs] = exes[choice.micro]
        self.unscheduled[bs] = unscheduled[choice.micro]
        return choice

    def executable(self, batch_size: int | None = None, embed_weights: bool = False
                   ) -> relax.VMExecutable:
        """The deploy target's module for a batch size (compiled once, then cached).

        Its ``main`` takes the weights after the input (``exe.aiq_weights`` holds them, in
        order; :meth:`vm` binds them); ``embed_weights=True`` compiles a second module with
        the weights as constants, ``main(x)`` alone (what a single-file export holds).
        Either runs the batch in the micro-batches of :meth:`micro_batch_choice`.
        """
        bs = self.batch_size if batch_size is None else int(batch_size)
        micro = self.micro_batch_choice(bs).micro
        if embed_weights:
            if bs not in self._embedded_exes:
                self._embedded_exes[bs] = compile_plan(
                    self.annotated, self.plan, self.calibration, self.params, self.target, bs,
                    self.database, micro_batch=micro, fuse_depthwise=self.fuse_depthwise)
            return self._embedded_exes[bs]
        if bs not in self._exes:
            self.unscheduled[bs] = []
            self._exes[bs] = self._compile_deploy(bs, micro, self.unscheduled[bs])
        return self._exes[bs]

    def _compile_deploy(self, bs: int, micro: int, unscheduled: list) -> relax.VMExecutable:
        """The deploy module (weights lifted) of batch ``bs`` run in calls of ``micro``;
        glue kernels left unscheduled are appended to ``unscheduled``."""
        return compile_plan(self.annotated, self.plan, self.calibration, self.params,
                            self.target, bs, self.database, unscheduled=unscheduled,
                            lift_weights=True, micro_batch=micro,
                            fuse_depthwise=self.fuse_depthwise)

    def set_executable(self, batch_size: int, exe: relax.VMExecutable,
                       unscheduled: list) -> None:
        """Replace the cached deploy module of a batch size (tuning keeps the faster one)."""
        self._exes[int(batch_size)] = exe
        self.unscheduled[int(batch_size)] = unscheduled

    def unscheduled_glue(self, batch_size: int | None = None) -> list[str]:
        """``"function (error)"`` for each glue function of the deploy module that kept TVM's
        default code (ScheduleGlue could not schedule it)."""
        bs = self.batch_size if batch_size is None else int(batch_size)
        return [f"{name} ({error})" for name, error in self.unscheduled.get(bs, [])]

    def run_executable(self, batch_size: int | None = None) -> relax.VMExecutable:
        """The module :meth:`run` executes: built for ``run_target`` with the deploy numerics."""
        if not self.cross:
            return self.executable(batch_size)
        bs = self.batch_size if batch_size is None else int(batch_size)
        if bs not in self._run_exes:
            self._run_exes[bs] = compile_plan(
                self.annotated, self.plan, self.calibration, self.params, self.run_target, bs,
                self.database, numerics_target=self.target, lift_weights=True,
                micro_batch=self.micro_batch_choice(bs).micro,
                fuse_depthwise=self.fuse_depthwise)
        return self._run_exes[bs]

    def vm(self, batch_size: int | None = None) -> WeightedVM:
        """A VM over the deploy module with its weights bound: ``vm["main"](x)`` (this
        machine must run the deploy target; ``vm.vm`` is TVM's ``VirtualMachine``)."""
        require_host_runnable(self.target, "run the deploy module here")
        return bind(self.executable(batch_size))

    def example_input(self, batch_size: int | None = None, seed: int = 0) -> np.ndarray:
        """Standard-normal input of ``main``'s shape at a batch size."""
        bs = self.batch_size if batch_size is None else int(batch_size)
        dims = [int(d) for d in list(self.annotated["main"].params[0].ty.shape)[1:]]
        return np.random.default_rng(seed).standard_normal((bs, *dims)).astype(np.float32)

    def run(self, x: np.ndarray, batch_size: int | None = None, check_finite: bool = False):
        """Run inputs of any count through the build (batched, last batch zero-padded), on
        ``run_target``: an array, or a tuple of arrays for a model with several outputs.

        NaN and Inf in ``x`` are not caught by default, and they may vanish: an 8-bit layer
        quantizes them to finite codes and ReLU (``max(x, 0)``) turns NaN into 0, so int8
        builds, and fp32 builds with ReLU, can return finite outputs where PyTorch returns
        NaN.  ``check_finite=True`` raises on non-finite inputs and outputs, naming the
        count and the first sample.
        """
        bs = self.batch_size if batch_size is None else check_positive_int("batch_size",
                                                                           batch_size)
        x = check_samples("x", x, input_shape(self.annotated), finite=check_finite)
        vm = bind(self.run_executable(bs))
        out = run_batches(vm["main"], x, bs, tvm.cpu())
        if check_finite:
            outs = out if isinstance(out, tuple) else (out,)
            for i, o in enumerate(outs):
                _check_finite("the output" + (f" {i}" if len(outs) > 1 else ""), o)
        return out

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int | None = None,
                 check_finite: bool = False) -> float:
        """Top-1 accuracy of the build on (x, y): ``y`` holds one class index per sample of
        ``x``, in ``[0, classes)``; a multi-output model is scored on its ``output``."""
        n = len(np.asarray(x)) if np.ndim(x) else 0
        y = check_labels("y", y, n, self.num_classes)
        out = self.run(x, batch_size, check_finite)
        if isinstance(out, tuple):
            if self.output is None:
                raise ValueError(f"the model returns {len(out)} outputs; build it with "
                                 f"output=<index> (0 to {len(out) - 1}) to say which one holds "
                                 f"the class scores")
            out = out[self.output]
        return accuracy(out, y)

    def benchmark(self, batch_size: int = 1, repeat: int = 20, min_repeat_ms: int = 100,
                  x: np.ndarray | None = None, remote=None) -> dict:
        """Time ``main`` with TVM's ``time_evaluator`` (median of ``repeat`` runs), here or,
        with ``remote`` (a ``tvm.rpc.RPCSession`` or ``"host:port"``), on that RPC device.

        Returns a dict with ``batch_size``, ``median_ms``, ``p10_ms``, ``p90_ms`` and
        ``images_per_s``.
        """
        x = self.example_input(batch_size) if x is None else x
        if remote is not None:
            return self.on_remote(remote, batch_size).benchmark(x, repeat, min_repeat_ms)
        require_host_runnable(self.target, "benchmark the build")
        return time_main(self.vm(batch_size), x, repeat, min_repeat_ms)

    def on_remote(self, remote, batch_size: int | None = None, cc: str | None = None):
        """The deploy module uploaded to an RPC device (``tvm.rpc.RPCSession`` or
        ``"host:port"``): a :class:`aiq_tvm.deploy.RemoteModule` to ``run`` or ``benchmark``
        there."""
        from .deploy import RemoteModule

        return RemoteModule(self.executable(batch_size), self.target, remote, cc)

    def export_library(self, path: str, batch_size: int | None = None, cc: str | None = None,
                       single_file: bool = False, **kwargs) -> list[str]:
        """Write the deploy module: the library at ``path`` (code only) and its weights
        beside it (``model.so`` -> ``model.params``, see :mod:`aiq_tvm.weights`); load both
        with :func:`aiq_tvm.load`. Returns the paths written.

        ``single_file=True`` embeds the weights in the library instead (one file, loaded by
        ``tvm.runtime.load_module`` alone; compiles the module once more, and loading it
        takes several times the weights' memory: TVM copies embedded constants).

        ``cc`` links it: default TVM's host compiler for this machine's architecture, the
        cross compiler for another (``aarch64-linux-gnu-g++`` for aarch64 triples, see
        :func:`aiq_tvm.deploy.export_compiler`). ``kwargs`` go to TVM's ``export_library``.
        """
        from .deploy import export

        return export(self.executable(batch_size, embed_weights=single_file), path,
                      self.target, cc, **kwargs)
