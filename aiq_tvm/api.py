"""``aiq_tvm.build``: calibrate, search a plan (or take one), compile, report, benchmark."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax

from . import pipeline as P
from .analysis import cost_model
from .calibrate import CALIBRATION_METHODS, Calibration, calibrate
from .cost import CostModel
from .frontend import batch_var, specialize_batch
from .passes import (
    AnnotatePrecision,
    CancelTransposes,
    ExposeLayerInputs,
    SelectPrecisionAtRuntime,
)
from .passes.select_precision_at_runtime import select_vector
from .plan import Plan
from .report import Report, make_report
from .schemes import PRECISIONS, get_precision
from .search import SEARCH_METHODS, SearchResult, run_search
from .targets import CpuPreset, resolve_target

__all__ = ["build", "BuildResult", "compile_plan", "prepare", "accuracy", "OBJECTIVES"]

# Figures of merit the search can maximize (the loss's first term, normalized by FP32).
OBJECTIVES = ("ai", "roofline", "measured")


# ----------------------------------------------------------------------------- helpers
def _validate_data(name: str, data, input_shape: tuple, labels: bool):
    if data is None:
        return None
    if labels:
        if not (isinstance(data, (tuple, list)) and len(data) == 2):
            raise ValueError(f"{name} must be a pair (x, y) of inputs and integer labels")
        x, y = np.asarray(data[0], np.float32), np.asarray(data[1])
        if len(x) == 0:
            raise ValueError(f"{name} is empty; pass at least one validation sample")
        if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(
                f"{name} labels must be integers of shape ({len(x)},), got {y.dtype} {y.shape}"
            )
    else:
        x, y = np.asarray(data, np.float32), None
        if x.ndim == 0 or len(x) == 0:
            raise ValueError(f"{name} is empty; pass at least one calibration sample")
    if tuple(x.shape[1:]) != input_shape:
        raise ValueError(
            f"{name} has samples of shape {tuple(x.shape[1:])}; the model takes {input_shape}"
        )
    return (x, y) if labels else x


def prepare(mod: tvm.IRModule) -> tvm.IRModule:
    """Annotate every layer fp32 (names, partitioning) without binding anything."""
    if not isinstance(mod, tvm.IRModule):
        raise ValueError(f"build expects a tvm.IRModule, got {type(mod).__name__}")
    names = [gv.name_hint for gv in mod.get_global_vars()]
    if "main" not in names:
        raise ValueError(f"the module has no 'main' function (functions: {names})")
    return AnnotatePrecision("fp32")(mod)


def _compile(mod: tvm.IRModule, target, passes: list, static_memory: bool = True
             ) -> relax.VMExecutable:
    seq = tvm.transform.Sequential(
        passes + P.legalize_passes(target) + P.schedule_passes(target)
        + P.lower_passes(target, static_memory)
    )
    return tvm.compile(mod, target, relax_pipeline=seq)


def compile_plan(annotated: tvm.IRModule, plan: Plan, calibration: Calibration | None,
                 params, target, batch_size: int, database=None, tune_trials: int = 0
                 ) -> relax.VMExecutable:
    """Compile an annotated module for one plan and batch size."""
    mod = specialize_batch(annotated, batch_size)
    return _compile(mod, target, P.quantize_passes(target, plan, calibration, params,
                                                   database, tune_trials))


def _run_batches(fn, x: np.ndarray, batch: int, dev) -> np.ndarray:
    outs = []
    for s in range(0, len(x), batch):
        chunk = x[s:s + batch]
        real = len(chunk)
        if real < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - real,) + chunk.shape[1:],
                                                    chunk.dtype)])
        out = fn(tvm.runtime.tensor(np.ascontiguousarray(chunk), dev))
        outs.append(out.numpy()[:real])
    return np.concatenate(outs)


def _fallbacks(cost: CostModel, assignment: Mapping[str, str]) -> dict[str, str]:
    """Layers the plan asked for a low precision that have no AIQ kernel (they stay fp32)."""
    return {n: assignment[n] for n in cost.names
            if not cost[n].supported and assignment[n] != "fp32"}


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy."""
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


# ----------------------------------------------------------------------------- result
@dataclass
class BuildResult:
    """A compiled AIQ model and everything that led to it."""

    plan: Plan
    report: Report
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
    _exes: dict = field(default_factory=dict, repr=False)

    def executable(self, batch_size: int | None = None) -> relax.VMExecutable:
        """The compiled module for a batch size (compiled once, then cached)."""
        bs = self.batch_size if batch_size is None else int(batch_size)
        if bs not in self._exes:
            self._exes[bs] = compile_plan(self.annotated, self.plan, self.calibration,
                                          self.params, self.target, bs, self.database)
        return self._exes[bs]

    def vm(self, batch_size: int | None = None) -> relax.VirtualMachine:
        return relax.VirtualMachine(self.executable(batch_size), tvm.cpu())

    def run(self, x: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Run inputs of any count through the build (batched, last batch zero-padded)."""
        x = np.asarray(x, np.float32)
        bs = batch_size or self.batch_size
        vm = self.vm(bs)
        return _run_batches(vm["main"], x, bs, tvm.cpu())

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int | None = None) -> float:
        """Top-1 accuracy of the build on (x, y)."""
        return accuracy(self.run(x, batch_size), np.asarray(y))

    def benchmark(self, batch_size: int = 1, repeat: int = 20, min_repeat_ms: int = 100,
                  x: np.ndarray | None = None) -> dict:
        """Time ``main`` with TVM's ``time_evaluator`` (median of ``repeat`` runs).

        Returns a dict with ``batch_size``, ``median_ms``, ``p10_ms``, ``p90_ms`` and
        ``images_per_s``.
        """
        vm = self.vm(batch_size)
        dims = list(self.annotated["main"].params[0].ty.shape)[1:]
        shape = (batch_size,) + tuple(int(d) for d in dims)
        if x is None:
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        dev = tvm.cpu()
        arg = tvm.runtime.tensor(np.ascontiguousarray(x, np.float32), dev)
        vm["main"](arg)  # warm up
        ev = vm.time_evaluator("main", dev, number=1, repeat=repeat, min_repeat_ms=min_repeat_ms)
        res = np.array(ev(arg).results) * 1e3
        med = float(np.median(res))
        return {"batch_size": batch_size, "median_ms": med,
                "p10_ms": float(np.percentile(res, 10)), "p90_ms": float(np.percentile(res, 90)),
                "images_per_s": batch_size / med * 1e3}

    def profile(self, batch_size: int | None = None, repeat: int = 7) -> list[tuple[str, float]]:
        """Median time in microseconds of every TIR kernel call of one inference.

        Runs ``main`` once with a VM instrument that records each kernel call and its
        arguments, then times every recorded call on its own with ``time_evaluator``.
        Returns ``[(symbol, us), ...]`` in call order (layers with identical shapes share one
        kernel symbol, so the order, not the name, tells calls apart).
        """
        bs = self.batch_size if batch_size is None else int(batch_size)
        exe = self.executable(bs)
        vm = relax.VirtualMachine(exe, tvm.cpu())
        calls: list = []

        def instrument(func, name, before_run, ret_value, *args):
            if before_run and not str(name).startswith("vm.") and args and all(
                    hasattr(a, "numpy") for a in args):
                calls.append((str(name), [tvm.runtime.tensor(a.numpy()) for a in args]))
            return 0

        vm.set_instrument(instrument)
        dims = list(self.annotated["main"].params[0].ty.shape)[1:]
        x = np.random.default_rng(0).standard_normal((bs, *map(int, dims))).astype(np.float32)
        vm["main"](tvm.runtime.tensor(x))
        lib = exe.mod.imports[0] if exe.mod.imports else exe.mod  # the compiled kernels
        out = []
        for name, args in calls:
            ev = lib.time_evaluator(name, tvm.cpu(), number=10, repeat=repeat)
            out.append((name, float(np.median(ev(*args).results)) * 1e6))
        return out

    def measured_report(self, repeat: int = 7) -> Report:
        """The report with each layer's measured kernel time beside its roofline time.

        Layer kernels run in program order, one per supported layer; a standalone input
        quantize kernel is counted with the layer that follows it.  Everything else (layout
        copies, pooling, fused glue, layers without an AIQ kernel) is summed in a note.
        """
        calls = self.profile(self.batch_size, repeat)
        assignment = self.plan.resolve(self.cost.names)
        layers = iter(self.cost.searchable)
        precisions = "|".join(PRECISIONS)
        kernel = re.compile(rf"^.+_({precisions})$")
        per_layer: dict[str, float] = {}
        other = pending = 0.0
        for sym, us in calls:
            if sym.endswith("_quantize"):
                pending += us
            elif kernel.match(sym):
                name = next(layers)
                per_layer[name] = us + pending
                pending = 0.0
            else:
                other += us
        other += pending
        rep = make_report(self.cost, assignment, self.preset, str(self.target),
                          fallbacks=_fallbacks(self.cost, assignment), measured_us=per_layer)
        if self.report is not None:
            rep.accuracy_fp32, rep.accuracy = self.report.accuracy_fp32, self.report.accuracy
        rep.notes.append(
            f"measured at batch {self.batch_size}: layer kernels {sum(per_layer.values()):.1f} us,"
            f" other kernels (layout, pooling, glue) {other:.1f} us")
        return rep

    def export_library(self, path: str, batch_size: int | None = None) -> None:
        """Write the compiled module as a shared library (load with tvm.runtime.load_module)."""
        self.executable(batch_size).export_library(path)


# ----------------------------------------------------------------------------- search
class _SwitchableModel:
    """All candidate precisions compiled once; accuracy of any plan at run time."""

    def __init__(self, annotated, params, calibration, choices, target, batch):
        mod = specialize_batch(annotated, batch)
        passes = [*P.bind_params(params), relax.transform.FoldConstant(),
                  SelectPrecisionAtRuntime(choices, calibration, target=target),
                  CancelTransposes()]
        self.exe = _compile(mod, target, passes, static_memory=False)
        self.vm = relax.VirtualMachine(self.exe, tvm.cpu())
        self.layers = list(choices)
        self.choices = choices
        self.batch = batch

    def logits(self, assignment: Mapping[str, str], x: np.ndarray) -> np.ndarray:
        sel = tvm.runtime.tensor(select_vector(self.layers, self.choices, assignment))
        fn = self.vm["main"]
        return _run_batches(lambda a: fn(a, sel), x, self.batch, tvm.cpu())


# ----------------------------------------------------------------------------- build
def build(
    mod: tvm.IRModule,
    target="llvm",
    *,
    params: Mapping[str, np.ndarray] | None = None,
    plan: Plan | str | Mapping | None = None,
    calib_data=None,
    val_data=None,
    lam: float = 0.9,
    search: str = "greedy",
    objective: str = "ai",
    budget_pp: float = 1.0,
    precisions: Sequence[str] | None = None,
    calibration: str | Calibration = "percentile",
    percentile: float = 99.99,
    batch_size: int | None = None,
    eval_batch_size: int | None = None,
    max_sweeps: int | None = None,
    seed: int = 0,
    tune: bool = False,
    database: str | None = None,
    tune_trials: int = 64,
    verbose: bool = False,
) -> BuildResult:
    """Quantize a Relax model with AIQ and compile it for a CPU.

    Parameters
    ----------
    mod : tvm.IRModule
        ``main(x, *weights)`` from :func:`aiq_tvm.from_torch`, or any Relax module whose
        ``main`` takes the input first (weights as constants or as parameters in ``params``).
    target : str, dict or tvm.target.Target
        ``"llvm"`` for this machine, a preset name, a TVM JSON target or a Target.
    params : dict, optional
        Weight values for ``main``'s parameters after the input.
    plan : Plan, str or dict, optional
        Use this plan instead of searching (a precision name means every layer).
    calib_data : numpy.ndarray, optional
        Calibration inputs; needed when any layer may use 8-bit activations.
    val_data : (numpy.ndarray, numpy.ndarray), optional
        Validation inputs and labels; needed for search, and reported when given.
    lam : float
        Weight of AI in the loss (see :mod:`aiq_tvm.search`), in [0, 1].
    search : str
        ``"greedy"``, ``"coordinate_descent"`` or ``"budget"``.
    objective : str
        What the loss rewards (see :data:`OBJECTIVES`): ``"ai"``, the paper's arithmetic
        intensity; ``"roofline"``, the speed-up the target preset's roofline predicts (FP32
        time / plan time; int8 compute peaks count, so it prefers integer kernels over
        weight-only ones where the layer is compute-bound); or ``"measured"``, the speed-up
        of the layer kernels as timed on this machine at ``batch_size`` (each layer's kernel
        at each candidate precision, timed once in a uniform build of that precision).
    budget_pp : float
        Accuracy budget in percentage points for ``search="budget"``.
    precisions : sequence of str, optional
        Candidate precisions per layer (default: all registered).
    calibration : str or Calibration
        ``"minmax"``, ``"percentile"``, or a ready :class:`Calibration`.
    batch_size : int, optional
        Batch size of the returned executable (more via :meth:`BuildResult.executable`);
        default 1, or the module's batch when it is static.
    eval_batch_size : int, optional
        Batch size of the accuracy runs (search and validation); default 100, or the
        module's batch when it is static.
    tune : bool
        Tune the layer kernels of the final build with meta-schedule (XGBoost cost model,
        search space = our schedule templates), ``tune_trials`` trials per kernel the
        database does not know yet, and store the records in ``database``.  The tuned and
        the default build are both timed at ``batch_size`` and the faster one is kept
        (``BuildResult.tuning`` has the figures).
    database : str, optional
        Meta-schedule JSON database directory.  Without ``tune``, its records are reused
        (no tuning); kernels it lacks keep the default schedule.
    """
    t_start = time.perf_counter()
    timings: dict = {}
    if not isinstance(lam, (int, float)) or not 0.0 <= float(lam) <= 1.0:
        raise ValueError(f"lam must be a number in [0, 1], got {lam!r}")
    if search not in SEARCH_METHODS:
        raise ValueError(f"unknown search {search!r}; valid: {', '.join(SEARCH_METHODS)}")
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}")
    cands = list(precisions) if precisions is not None else list(PRECISIONS)
    for p in cands:
        get_precision(p)
    if isinstance(calibration, str) and calibration not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration {calibration!r}; valid: "
                         f"{', '.join(CALIBRATION_METHODS)} or an aiq_tvm.Calibration")
    if tune and database is None:
        raise ValueError("tune=True needs database='<directory>' to store tuning records in")
    if not isinstance(tune_trials, int) or tune_trials < 1:
        raise ValueError(f"tune_trials must be a positive int, got {tune_trials!r}")
    tgt, preset = resolve_target(target)
    annotated = prepare(mod)
    static = None if batch_var(annotated) is not None else int(
        annotated["main"].params[0].ty.shape[0])
    batch_size = batch_size if batch_size is not None else (static or 1)
    eval_batch_size = eval_batch_size if eval_batch_size is not None else (static or 100)
    for nm, v in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{nm} must be a positive integer, got {v!r}")
    in_shape = tuple(int(d) for d in list(annotated["main"].params[0].ty.shape)[1:])
    calib_x = _validate_data("calib_data", calib_data, in_shape, labels=False)
    val = _validate_data("val_data", val_data, in_shape, labels=True)
    if params is not None:
        names = {p.name for p in annotated["main"].params}
        unknown = sorted(set(params) - names)
        if unknown:
            raise ValueError(f"params has names main does not take: {unknown[:5]}")

    cost = cost_model(specialize_batch(annotated, batch_size), requant_fusion=True)
    layers = cost.searchable
    if not layers:
        raise ValueError("the model has no quantizable conv2d/dense layers")

    def log(msg):
        if verbose:
            print(f"[aiq {time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)

    # ---- plan to use and whether we need activation ranges
    if plan is not None:
        plan_obj = plan if isinstance(plan, Plan) else (
            Plan.uniform(plan) if isinstance(plan, str) else Plan(dict(plan)))
        assignment = plan_obj.resolve(cost.names)
        needs_calib = any(get_precision(p).quantizes_activations for p in assignment.values())
    else:
        if val is None:
            raise ValueError("search needs val_data=(x_val, y_val); or pass plan=...")
        needs_calib = any(get_precision(p).quantizes_activations for p in cands)
    calib = None
    if needs_calib:
        if isinstance(calibration, Calibration):
            calib = calibration
        else:
            if calib_x is None:
                raise ValueError("8-bit activations need calib_data (or calibration=Calibration)")
            t0 = time.perf_counter()
            calib = _calibrate(annotated, params, tgt, calib_x, calibration, percentile,
                               eval_batch_size, seed)
            timings["calibration_s"] = time.perf_counter() - t0
            log(f"calibrated {len(calib.ranges)} layers on {len(calib_x)} samples")

    result_search = None
    acc_fp32 = acc_plan = None
    if plan is None:
        choices = {n: cands if "fp32" in cands else ["fp32", *cands] for n in layers}
        t0 = time.perf_counter()
        switch = _SwitchableModel(annotated, params, calib, choices, tgt, eval_batch_size)
        timings["search_compile_s"] = time.perf_counter() - t0
        log(f"compiled {sum(len(c) for c in choices.values())} layer variants in "
            f"{timings['search_compile_s']:.1f}s")
        xv, yv = val

        def acc_fn(a):
            acc = accuracy(switch.logits(a, xv), yv)
            log(f"  accuracy {100 * acc:6.2f}%  AI {cost.ai(cost.full_assignment(a)):7.2f}  "
                f"{sum(p != 'fp32' for p in a.values())} layers quantized")
            return acc

        if objective == "ai":
            merit = cost.ai
        elif objective == "roofline":
            def merit(a):
                return 1.0 / cost.predicted_time(cost.full_assignment(a), preset)
        else:
            t0 = time.perf_counter()
            table, overhead = _layer_times(annotated, params, calib, tgt, preset, cost, cands,
                                           batch_size)
            timings["layer_timing_s"] = time.perf_counter() - t0
            log(f"timed every layer kernel at {len(cands)} precisions in "
                f"{timings['layer_timing_s']:.1f}s")

            def merit(a):
                return 1.0 / (overhead + sum(table[n][a.get(n, "fp32")] for n in layers))
        result_search = run_search(search, layers, choices, merit, acc_fn, lam=lam,
                                   budget_pp=budget_pp, max_sweeps=max_sweeps)
        timings["search_s"] = result_search.wall_time_s
        assignment = cost.full_assignment(result_search.assignment)
        plan_obj = Plan.from_assignment(
            assignment, method=search, objective=objective, lam=float(lam), budget_pp=budget_pp,
            ai_fp32=cost.fp32_ai(), ai=cost.ai(assignment),
            merit_gain=result_search.best.ai_norm,
            val_accuracy_fp32=result_search.baseline.accuracy,
            val_accuracy=result_search.best.accuracy,
            evaluations=result_search.evaluations, seed=seed,
        )
        acc_fp32, acc_plan = result_search.baseline.accuracy, result_search.best.accuracy
        log(f"search {search}: {result_search.evaluations} evaluations in "
            f"{result_search.wall_time_s:.1f}s")

    report = make_report(cost, assignment, preset, str(tgt),
                         fallbacks=_fallbacks(cost, assignment))
    res = BuildResult(
        plan=plan_obj, report=report, cost=cost, target=tgt, preset=preset, calibration=calib,
        search=result_search, batch_size=batch_size, annotated=annotated, params=params,
        timings=timings, database=database,
    )
    t0 = time.perf_counter()
    if tune:
        _tune(res, tune_trials, log)
    res.executable(batch_size)
    timings["compile_s"] = time.perf_counter() - t0
    if val is not None and plan is not None:
        xv, yv = val
        acc_plan = res.evaluate(xv, yv, eval_batch_size)
    report.accuracy_fp32, report.accuracy = acc_fp32, acc_plan
    timings["total_s"] = time.perf_counter() - t_start
    log(f"done: AI x{report.ai_gain:.2f}")
    return res


def _layer_times(annotated, params, calib, target, preset, cost, precisions, batch_size
                 ) -> tuple[dict[str, dict[str, float]], float]:
    """Measured kernel time (us) of every supported layer at every candidate precision, and
    the rest of an FP32 inference (glue kernels, unsupported layers, VM dispatch) in us."""
    table: dict[str, dict[str, float]] = {n: {} for n in cost.searchable}
    overhead = 0.0
    for prec in dict.fromkeys(["fp32", *precisions]):
        res = BuildResult(plan=Plan.uniform(prec), report=None, cost=cost, target=target,
                          preset=preset, calibration=calib, search=None, batch_size=batch_size,
                          annotated=annotated, params=params)
        rows = res.measured_report(repeat=5).rows
        for r in rows:
            if r.name in table and r.measured_us is not None:
                table[r.name][prec] = r.measured_us
        if prec == "fp32":
            total_us = res.benchmark(batch_size, repeat=15)["median_ms"] * 1e3
            overhead = max(total_us - sum(table[n]["fp32"] for n in table), 0.0)
    return table, overhead


def _tune(res: BuildResult, trials: int, log) -> None:
    """Tune the final build's kernels into ``res.database``; keep whichever whole build is
    faster, the tuned one or the default one (both timed here)."""
    bs = res.batch_size
    t0 = time.perf_counter()
    tuned = compile_plan(res.annotated, res.plan, res.calibration, res.params, res.target, bs,
                         res.database, trials)
    tune_s = time.perf_counter() - t0
    default = compile_plan(res.annotated, res.plan, res.calibration, res.params, res.target,
                           bs)
    times = {}
    for key, exe in (("tuned", tuned), ("default", default)):
        res._exes[bs] = exe
        times[key] = res.benchmark(bs, repeat=15)["median_ms"]
    kept = "tuned" if times["tuned"] <= times["default"] else "default"
    res._exes[bs] = tuned if kept == "tuned" else default
    if kept == "default":
        res.database = None  # other batch sizes: default schedules too
    res.tuning = {"trials_per_kernel": trials, "tune_s": tune_s, "tuned_ms": times["tuned"],
                  "default_ms": times["default"], "kept": kept, "batch_size": bs}
    log(f"tuning: {tune_s:.1f}s; batch {bs}: tuned {times['tuned']:.3f} ms vs default "
        f"{times['default']:.3f} ms -> kept {kept}")


def _calibrate(annotated, params, target, x, method, percentile, batch, seed) -> Calibration:
    mod = specialize_batch(annotated, batch)
    mod = ExposeLayerInputs()(mod)
    groups = [[str(n) for n in g] for g in mod.attrs["aiq.exposed_layers"]]
    names = [g[0] for g in groups]
    exe = _compile(mod, target, P.quantize_passes(target, "fp32", None, params))
    vm = relax.VirtualMachine(exe, tvm.cpu())

    def run(batch_x):
        out = vm["main"](tvm.runtime.tensor(batch_x))
        return [out[i + 1].numpy() for i in range(len(names))]

    cal = calibrate(run, names, x, batch, method=method, percentile=percentile, seed=seed)
    # Layers reading the same tensor share its range (and so can share a requantized input).
    cal.ranges = {n: cal.ranges[g[0]] for g in groups for n in g}
    return cal
