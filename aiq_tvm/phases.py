"""The phases of :func:`aiq_tvm.build`: resolve, calibrate, search, finalize.

Each phase is a function over a :class:`BuildContext` (what :func:`resolve` learned about the
model, the targets and the data) so a caller can run, journal or resume them one at a time::

    ctx = resolve(mod, params, calib_data, val_data, BuildConfig(...))
    calibration = calibrate(ctx)
    plan, searched = search(ctx, calibration) if ctx.config.searches else (ctx.config.plan, None)
    result = finalize(ctx, plan, calibration, searched)

Targets: ``ctx.target`` is the deploy target; ``ctx.run_target`` the one calibration and the
accuracy runs execute on (the deploy target when this machine runs it, else the host target,
with the deploy target's numerics: ``ctx.numerics_target``).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax

from . import pipeline as P
from ._ir import batch_var, input_shape, output_types, specialize_batch, weight_types
from .analysis import cost_model
from .calibrate import Calibration
from .calibrate import calibrate as measure_ranges
from .compiler import compile_module, compile_plan, compile_switchable, prepare
from .config import BuildConfig
from .cost import CostModel
from .datachecks import (
    check_calibration_spread,
    check_labels,
    check_params,
    check_samples,
    compare_notes,
    sample_notes,
)
from .floor import (
    byte_stored_int4,
    describe_floor_memory,
    floor_choices,
    floor_plan,
    tolerance,
)
from .gptq import MAX_HESSIAN_BYTES, HessianCollector
from .journal import SearchJournal
from .microbatch import check_divides
from .objectives import MeritInputs, get_objective
from .passes import ExposeLayerInputs, select_vector
from .plan import Plan
from .profiling import uniform_layer_times
from .report import make_report
from .result import BuildResult
from .runtime import accuracy, require_host_runnable, run_batches, run_target
from .schemes import get_precision
from .search import SearchResult, run_search
from .targets import CpuPreset, capabilities, default_precisions, resolve_target
from .weight_correction import describe as describe_weight_correction

__all__ = ["BuildContext", "resolve", "calibrate", "search", "finalize"]


@dataclass
class BuildContext:
    """What the phases share: the checked config, the annotated model, targets and data."""

    config: BuildConfig
    annotated: tvm.IRModule
    params: Mapping | None
    target: tvm.target.Target
    run_target: tvm.target.Target
    preset: CpuPreset
    cost: CostModel
    batch_size: int
    eval_batch_size: int
    calib_x: np.ndarray | None = None
    val: tuple[np.ndarray, np.ndarray] | None = None
    timings: dict = field(default_factory=dict)
    t_start: float = field(default_factory=time.perf_counter)
    notes: list = field(default_factory=list)  # for the report
    # progress(stage, done, total) as "calibration" (batches), "compile" (the switchable
    # module) and "evaluation" (plans; total unknown) advance; front ends draw bars from it.
    progress: Callable[[str, int, int | None], None] | None = None
    # Switchable modules compiled for the search, by candidate set (sweeps reuse them).
    switchable: dict = field(default_factory=dict, repr=False)
    output: int | None = None  # which output holds the class scores (None: the only one)
    num_classes: int | None = None
    # Layer precisions the speed floor ruled out (aiq_tvm.floor.FloorMove), for the report.
    floor_moves: list = field(default_factory=list)
    # How a measured speed floor timed the layers, for the report's notes.
    floor_notes: list = field(default_factory=list)
    # A measured floor's build of the given plan and where it was timed ((result, remote)).
    floor_given: tuple | None = None

    @property
    def numerics_target(self) -> tvm.target.Target | None:
        """The deploy target when accuracy runs execute elsewhere (None: same target)."""
        return None if self.run_target is self.target else self.target

    def tick(self, stage: str, done: int, total: int | None = None) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)

    def log(self, msg: str) -> None:
        if self.config.verbose:
            print(f"[aiq {time.perf_counter() - self.t_start:7.1f}s] {msg}", flush=True)

    def result(self, plan: Plan, calibration: Calibration | None, report=None,
               searched: SearchResult | None = None, fuse_depthwise: bool | None = None
               ) -> BuildResult:
        """A build of ``plan`` (``fuse_depthwise``: the config's by default; False, every
        layer a kernel of its own, for timing layer kernels one by one)."""
        if fuse_depthwise is None:
            fuse_depthwise = self.config.fuse_depthwise
        return BuildResult(
            plan=plan, report=report, cost=self.cost, target=self.target, preset=self.preset,
            calibration=calibration, search=searched, batch_size=self.batch_size,
            annotated=self.annotated, params=self.params, timings=self.timings,
            database=self.config.database, run_target=self.run_target, output=self.output,
            num_classes=self.num_classes, micro_batch=self.config.micro_batch,
            fuse_depthwise=fuse_depthwise)


# ----------------------------------------------------------------------------- resolve
def _check_data(name: str, data, in_shape: tuple, num_classes: int | None, labels: bool
                ) -> tuple:
    """``(checked data, notes)``: float32 samples (and labels), and what looks suspicious."""
    if data is None:
        return None, []
    if labels and not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise ValueError(f"{name} must be a pair (x, y) of inputs and integer labels")
    raw = data[0] if labels else data
    x = check_samples(name, raw, in_shape)
    notes = sample_notes(name, raw, x)
    if labels:
        return (x, check_labels(f"{name} labels", data[1], len(x), num_classes)), notes
    check_calibration_spread(x)
    return x, notes


def _classifier_output(annotated: tvm.IRModule, output: int | None, needed: bool
                       ) -> tuple[int | None, int | None]:
    """``(output index, number of classes)``: which of ``main``'s outputs accuracy reads
    (None: its only output) and its last dimension when static."""
    outs = output_types(annotated)
    if outs is None:
        if output not in (None, 0):
            raise ValueError(f"output={output}, but the model has a single output")
        shape = annotated["main"].ret_ty.shape
        dims = [] if shape is None else list(shape)
        last = dims[-1] if len(dims) >= 2 else None
        return None, int(last) if isinstance(last, tvm.tirx.IntImm) else None
    shapes = ", ".join("?" if s is None else "x".join("?" if d is None else str(d) for d in s)
                       for s in outs)
    if output is None:
        if needed:
            raise ValueError(f"the model returns {len(outs)} outputs ({shapes}); pass "
                             f"output=<index> (0 to {len(outs) - 1}) to say which one holds "
                             f"the class scores that accuracy is measured on")
        return None, None
    if output >= len(outs):
        raise ValueError(f"output={output}, but the model returns {len(outs)} outputs "
                         f"({shapes}); valid: 0 to {len(outs) - 1}")
    shape = outs[output]
    return output, shape[-1] if shape is not None and len(shape) >= 2 else None


def _default_eval_batch(calib_x, val, largest: int = 100) -> int:
    """``largest``, or the number of samples when the data has fewer: rows of padding cost
    as much time and memory as rows of data (ViT-B/16 calibrated on 2 images at batch 100
    took 78 s and 3.4 GB per encoder layer)."""
    sizes = [len(calib_x)] if calib_x is not None else []
    sizes += [len(val[0])] if val is not None else []
    return min(largest, max(sizes, default=largest))


def resolve(mod: tvm.IRModule, params, calib_data, val_data, config: BuildConfig
            ) -> BuildContext:
    """Check the model and data against the config; resolve targets, batch sizes and costs."""
    target, preset = resolve_target(config.target)
    config, notes = _target_precisions(config, target, preset)
    annotated = prepare(mod)
    main_input = annotated["main"].params[0].ty.shape
    static = None if batch_var(annotated) is not None else int(main_input[0])
    bs = config.batch_size or static or 1
    output, classes = _classifier_output(annotated, config.output,
                                         needed=val_data is not None or config.searches)
    calib_x, notes_c = _check_data("calib_data", calib_data, input_shape(annotated), classes,
                                   labels=False)
    val, notes_v = _check_data("val_data", val_data, input_shape(annotated), classes,
                               labels=True)
    data_notes = notes_c + notes_v + compare_notes(calib_x, None if val is None else val[0])
    for note in data_notes:
        warnings.warn(note, UserWarning, stacklevel=3)
    if isinstance(config.micro_batch, int):
        check_divides(config.micro_batch, bs)
    eval_bs = config.eval_batch_size or static or _default_eval_batch(calib_x, val)
    check_params(params, weight_types(annotated))
    cost = cost_model(specialize_batch(annotated, bs), requant_fusion=True)
    if not cost.searchable:
        raise ValueError("the model has no quantizable conv2d/dense layers")
    if config.searches and val is None:
        raise ValueError("search needs val_data=(x_val, y_val); or pass plan=...")
    if config.tune:
        require_host_runnable(target, "tune kernels (tuning times candidates here)")
    ctx = BuildContext(config=config, annotated=annotated, params=params, target=target,
                       run_target=run_target(target), preset=preset, cost=cost,
                       batch_size=bs, eval_batch_size=eval_bs, calib_x=calib_x, val=val,
                       notes=notes + data_notes, output=output, num_classes=classes)
    return _floor_given_plan(ctx)


def _floor_given_plan(ctx: BuildContext) -> BuildContext:
    """A given plan with the layers slower than ``speed_floor`` moved to it (before
    calibration: the moved plan is the one calibrated and built)."""
    cfg = ctx.config
    if cfg.speed_floor is None or cfg.searches or cfg.floor_measured:
        return ctx  # a measured floor needs the calibrated builds: finalize() applies it
    plan, ctx.floor_moves = _floored(ctx, cfg.plan)
    ctx.config = dataclasses.replace(cfg, plan=plan)
    ctx.log(f"speed floor {cfg.speed_floor}: {len(ctx.floor_moves)} layer(s) moved")
    return ctx


def _floored(ctx: BuildContext, plan: Plan, times=None) -> tuple[Plan, list]:
    """``plan`` with its layers slower than the floor moved to it, recording the floor (the
    same again on a floored plan: the moved layers run the floor precision). ``times``:
    measured kernel times (:func:`_measured_floor_times`) instead of the model."""
    assignment, moves = floor_plan(plan.resolve(ctx.cost.names), ctx.cost,
                                   ctx.config.speed_floor, ctx.target, ctx.preset,
                                   times)  # fmt: skip
    moved = {**plan.metadata.get("speed_floor_moved", {}),
             **{m.layer: m.precision for m in moves}}
    meta = {**plan.metadata, "speed_floor": ctx.config.speed_floor,
            "speed_floor_timing": ctx.config.speed_floor_timing, "speed_floor_moved": moved}
    return Plan.from_assignment(assignment, **meta), moves


# A measured floor times both builds in this many alternating rounds and keeps each layer's
# fastest: a burst of another process's load slows one round's kernels, not every round's
# (MobileNetV2 at 224, two threads, one round each while a test suite ran beside it: a 1x1
# projection timed 23x its FP32 kernel, docs/runs/s37/bench224_floor_disturbed.log).
FLOOR_TIMING_ROUNDS = 3


def _measured_floor_times(ctx: BuildContext, plan: Plan, calibration
                          ) -> dict[str, dict[str, float]]:
    """Kernel times (us) a measured speed floor compares for a given plan: every layer of
    ``plan`` at its precision, timed in the plan's build, and at the floor precision, timed in
    the build with all of those layers at the floor (a layer's neighbours then run as they
    would around it; both builds from ``calibration``), here or on ``remote``."""
    from .profiling import measured_report

    floor = ctx.config.speed_floor
    remote = _timing_session(ctx, "time the layer kernels of a measured speed floor "
                                  "(speed_floor_timing='measured'; or pass remote='host:port' "
                                  "of an RPC device)")
    assignment = plan.resolve(ctx.cost.names)
    moving = {n: p for n, p in assignment.items()
              if ctx.cost[n].supported and p not in ("fp32", floor)}
    if not moving:
        ctx.floor_notes.append(_floor_timing_note(ctx, "nothing to time: no layer of the plan "
                                                  f"runs other than fp32 or {floor}"))
        return {}
    at_floor = Plan.from_assignment({**assignment, **dict.fromkeys(moving, floor)})
    t0 = time.perf_counter()
    builds = {"plan": ctx.result(plan, calibration, fuse_depthwise=False),
              "floor": ctx.result(at_floor, calibration, fuse_depthwise=False)}
    ctx.floor_given = (builds["plan"], remote)
    rounds = {key: [] for key in builds}
    for _ in range(FLOOR_TIMING_ROUNDS):
        for key, res in builds.items():
            rows = measured_report(res, repeat=3, remote=remote).rows
            rounds[key].append({r.name: r.measured_us for r in rows if r.measured_us is not None})
    ctx.timings["floor_timing_s"] = time.perf_counter() - t0
    fastest = {key: {n: min(r[n] for r in rs if n in r) for n in set().union(*rs)}
               for key, rs in rounds.items()}
    times = {n: {p: fastest["plan"][n], floor: fastest["floor"][n]} for n, p in moving.items()
             if n in fastest["plan"] and n in fastest["floor"]}
    untimed = sorted(set(moving) - set(times))
    ctx.floor_notes.append(_floor_timing_note(
        ctx, f"the plan's build against the build with its {len(moving)} layer(s) at {floor}, "
        f"{ctx.timings['floor_timing_s']:.1f} s"
        + (f"; no kernel time for {untimed}, left as planned" if untimed else "")))
    return times


def _measured_floor(ctx: BuildContext, plan: Plan, calibration) -> Plan:
    """A given plan under a measured floor: its layers slower than at the floor moved, then
    whole inferences of the floored plan against the plan as given (best of three alternating
    medians). The floor compares each layer's own kernel, not what a move costs the layers
    around it (a depthwise layer moved to FP32 makes the layer before it write float32
    activations: MobileNetV2 at 224 on two threads ran 0.96x floored; docs/performance_isa.md,
    session 37); where the floored plan runs slower as a whole beyond the tolerance, the plan
    as given is kept and the report says so."""
    floored, moves = _floored(ctx, plan, _measured_floor_times(ctx, plan, calibration))
    ctx.floor_moves = moves
    if not moves:
        return floored
    _, remote = ctx.floor_given
    # Whole inferences as the final build runs them (depthwise layers fused, where they fuse).
    g, f = _whole_inference_ms(ctx, ctx.result(plan, calibration),
                               ctx.result(floored, calibration), remote)
    slower = f > g * (1 + tolerance(True))
    ctx.floor_notes.append(
        f"speed floor {ctx.config.speed_floor}: whole inference at batch {ctx.batch_size} "
        f"{f:.3f} ms floored against {g:.3f} ms as given ({g / f:.2f}x)"
        + ("; the floored plan ran slower as a whole (the moves cost the layers around them "
           "more than they saved): the plan as given is kept" if slower else ""))
    if not slower:
        return floored
    ctx.floor_moves = [dataclasses.replace(m, action="kept") for m in moves]
    meta = {**floored.metadata, "speed_floor_moved": {},
            "speed_floor_kept": {m.layer: m.precision for m in moves}}
    return Plan.from_assignment(plan.resolve(ctx.cost.names), **meta)


def _whole_inference_ms(ctx: BuildContext, given: BuildResult, floored: BuildResult, remote,
                        rounds: int = 3) -> tuple[float, float]:
    """(given, floored) whole-inference milliseconds: each build's best of ``rounds``
    alternating medians."""
    ms = {"given": [], "floored": []}
    for _ in range(rounds):
        for key, res in (("given", given), ("floored", floored)):
            ms[key].append(res.benchmark(ctx.batch_size, repeat=10, remote=remote)["median_ms"])
    return min(ms["given"]), min(ms["floored"])


def _timing_session(ctx: BuildContext, what: str):
    """Where layer kernels are timed: None (this machine, which must run the target; the
    error says what needed it, ``what``) or one RPC session for every upload and timing on
    ``remote``."""
    if ctx.config.remote is None:
        require_host_runnable(ctx.target, what)
        return None
    from .deploy import connect

    return connect(ctx.config.remote)


def _floor_timing_note(ctx: BuildContext, how: str) -> str:
    from .profiling import _where

    remote = ctx.config.remote
    where = "this machine" if remote is None else f"the RPC device {_where(remote)}"
    return (f"speed floor {ctx.config.speed_floor}: layer kernels timed on {where} at batch "
            f"{ctx.batch_size} ({how})")


def _target_precisions(config: BuildConfig, target, preset: CpuPreset
                       ) -> tuple[BuildConfig, list[str]]:
    """Default candidates come from the target and its preset: no low-bit default where int8
    does not pay."""
    if not config.precisions_default:
        return config, []
    cands, excluded = default_precisions(capabilities(target), preset)
    if not excluded:
        return config, []
    notes = [f"default precisions for this target: {', '.join(cands)}; left out "
             + "; ".join(f"{p} ({why})" for p, why in excluded.items())]
    return dataclasses.replace(config, precisions=cands), notes


# ----------------------------------------------------------------------------- calibrate
def _needs_calibration(ctx: BuildContext) -> bool:
    """8-bit activations need ranges; weight-only layers take the calibration's input
    statistics for their weight correction when there is calibration data."""
    cfg = ctx.config
    precisions = [get_precision(p) for p in (
        cfg.precisions if cfg.searches else cfg.plan.resolve(ctx.cost.names).values())]
    if any(p.quantizes_activations for p in precisions):
        return True
    has_data = ctx.calib_x is not None or isinstance(cfg.calibration, Calibration)
    return (cfg.weight_correction != "none" and has_data
            and any(p.quantizes_weights for p in precisions))


def _hessian_collector(ctx: BuildContext, groups: list[list[str]]):
    """The input-patch second moments GPTQ rounding needs (None when it is not asked for)."""
    from .weight_correction import uses_gptq

    if not uses_gptq(ctx.config.weight_correction):
        return None
    geo = {}
    for n in (n for g in groups for n in g):
        c = ctx.cost[n]
        geo[n] = (c.op, tuple(c.weight_shape[2:4]), c.strides, c.padding, c.groups,
                  c.dilation)
    return HessianCollector(geo, seed=ctx.config.seed, max_bytes=MAX_HESSIAN_BYTES)


def _nchw_view(a: np.ndarray) -> np.ndarray:
    """An NHWC array seen as NCHW (no copy); other ranks unchanged."""
    return a.transpose(0, 3, 1, 2) if a.ndim == 4 else a


def calibrate(ctx: BuildContext) -> Calibration | None:
    """Activation ranges and input statistics when any layer may read 8-bit activations or
    correct its quantized weights with calibration data (else None)."""
    cfg = ctx.config
    if not _needs_calibration(ctx):
        return None
    if isinstance(cfg.calibration, Calibration):
        return dataclasses.replace(cfg.calibration, weight_correction=cfg.weight_correction)
    if ctx.calib_x is None:
        raise ValueError("8-bit activations need calib_data (or calibration=Calibration)")
    t0 = time.perf_counter()
    # Channels last: the exposed activations leave the VM without a transpose kernel.
    mod = ExposeLayerInputs(residuals=True, channels_last=True)(
        specialize_batch(ctx.annotated, ctx.eval_batch_size))
    groups = [[str(n) for n in g] for g in mod.attrs["aiq.exposed_layers"]]
    res_groups = [[str(n) for n in g] for g in mod.attrs["aiq.exposed_residuals"]]
    exe = compile_module(mod, ctx.run_target, P.quantize_passes(
        ctx.run_target, "fp32", None, ctx.params))
    vm = relax.VirtualMachine(exe, tvm.cpu())

    steps = [0, -(-len(ctx.calib_x) // ctx.eval_batch_size)]
    hess = _hessian_collector(ctx, groups)

    def run(batch_x):
        out = vm["main"](tvm.runtime.tensor(batch_x))
        steps[0] += 1
        ctx.tick("calibration", *steps)
        # NCHW views of the VM's NHWC output tensors (each keeps its tensor alive): copying
        # them out took 8 of ResNet-50's 70 s build. They are only read.
        arrays = [_nchw_view(np.from_dlpack(out[i + 1]))
                  for i in range(len(groups) + len(res_groups))]
        # GPTQ's moments: the layer inputs only (the shortcuts come after them).
        for g, a in zip(groups, arrays[:len(groups)], strict=True) if hess is not None else ():
            for n in g:  # a padded last batch's copies count too (rarely there is one)
                hess.update(n, a)
        return arrays

    # Tuple keys for the shortcuts: they cannot clash with a layer's (string) name.
    res_keys = [("residual", g[0]) for g in res_groups]
    cal = measure_ranges(run, [g[0] for g in groups] + res_keys, ctx.calib_x,
                         ctx.eval_batch_size, method=cfg.calibration,
                         percentile=cfg.percentile, seed=cfg.seed)
    for key in res_keys:
        cal.channel_means.pop(key, None)
    cal.residual_ranges = {n: cal.ranges.pop(k) for k, g in zip(res_keys, res_groups,
                                                                 strict=True) for n in g}
    # Layers reading the same tensor share its range (and so can share a requantized input).
    cal.ranges = {n: cal.ranges[g[0]] for g in groups for n in g}
    means = cal.channel_means
    means.update({n: means[g[0]] for g in groups for n in g[1:] if g[0] in means})
    cal.weight_correction = cfg.weight_correction
    cal.hessians = {} if hess is None else hess.hessians()
    if hess is not None and hess.too_large:
        ctx.notes.append(
            f"GPTQ skipped on {len(hess.too_large)} layer(s) whose input patches are too long "
            f"for its second moments (over {MAX_HESSIAN_BYTES >> 20} MiB each); they round to "
            "nearest: " + ", ".join(f"{n} (K={k})" for n, k in hess.too_large.items()))
    ctx.timings["calibration_s"] = time.perf_counter() - t0
    ctx.log(f"calibrated {len(cal.ranges)} layers on {len(ctx.calib_x)} samples")
    return cal


# ----------------------------------------------------------------------------- search
def _switchable_main(ctx: BuildContext, calibration, choices):
    """``main`` of the module with every candidate behind a switch (compiled once per
    calibration and candidate set)."""
    key = (id(calibration), tuple((n, tuple(c)) for n, c in choices.items()))
    if key not in ctx.switchable:
        t0 = time.perf_counter()
        ctx.tick("compile", 0, 1)
        exe = compile_switchable(ctx.annotated, ctx.params, calibration, choices, ctx.run_target,
                                 ctx.eval_batch_size, ctx.numerics_target)
        ctx.timings["search_compile_s"] = time.perf_counter() - t0
        ctx.log(f"compiled {sum(len(c) for c in choices.values())} layer variants in "
                f"{ctx.timings['search_compile_s']:.1f}s")
        ctx.switchable[key] = exe
        ctx.tick("compile", 1, 1)
    return relax.VirtualMachine(ctx.switchable[key], tvm.cpu())["main"]


def _accuracy_oracle(ctx: BuildContext, calibration, choices) -> Callable:
    """``accuracy(assignment)`` on the validation data; the switchable module is compiled at
    the first evaluation (a search resumed from a complete journal needs none)."""
    layers = list(choices)
    xv, yv = ctx.val
    evaluations = [0]
    mains = []

    def acc_fn(assignment: Mapping[str, str]) -> float:
        if not mains:
            mains.append(_switchable_main(ctx, calibration, choices))
        main = mains[0]
        sel = tvm.runtime.tensor(select_vector(layers, choices, assignment))
        out = run_batches(lambda a: main(a, sel), xv, ctx.eval_batch_size, tvm.cpu())
        acc = accuracy(out if ctx.output is None else out[ctx.output], yv)
        full = ctx.cost.full_assignment(assignment)
        ctx.log(f"  accuracy {100 * acc:6.2f}%  AI {ctx.cost.ai(full):7.2f}  "
                f"{sum(p != 'fp32' for p in assignment.values())} layers quantized")
        evaluations[0] += 1
        ctx.tick("evaluation", evaluations[0])
        return acc

    return acc_fn


def _layer_timer(ctx: BuildContext, calibration):
    """The measured objective's timer: uniform builds of each precision, kernels timed."""

    timed = {}  # the floor's and the objective's timings, once per set of precisions

    def time_layers(precisions):
        key = tuple(precisions)
        if key not in timed:
            timed[key] = _time_layers(precisions)
        return timed[key]

    def _time_layers(precisions):
        remote = _timing_session(ctx, "time layer kernels for objective='measured' (or pass "
                                      "remote='host:port' of an RPC device)")
        t0 = time.perf_counter()
        out = uniform_layer_times(lambda p: ctx.result(Plan.uniform(p), calibration,
                                                       fuse_depthwise=False),
                                  ctx.cost.searchable, precisions, ctx.batch_size, remote)
        ctx.timings["layer_timing_s"] = time.perf_counter() - t0
        ctx.log(f"timed every layer kernel at {len(precisions)} precisions in "
                f"{ctx.timings['layer_timing_s']:.1f}s")
        return out

    return time_layers


def search(ctx: BuildContext, calibration: Calibration | None,
           journal: SearchJournal | None = None) -> tuple[Plan, SearchResult]:
    """Search a plan: the config's method over its objective and the validation accuracy.
    With a ``journal``, every evaluation is appended to it as it finishes, and plans it
    already holds (a resumed search) are answered from it without running the model."""
    cfg, cost = ctx.config, ctx.cost
    choices = cfg.choices(cost.searchable)
    time_layers = _layer_timer(ctx, calibration)
    if journal is not None:
        time_layers = journal.layer_times_fn(time_layers)
    floor = {}
    if cfg.speed_floor is not None:
        times = None
        if cfg.floor_measured:  # uniform builds of each candidate (the measured objective's)
            times = time_layers(tuple(dict.fromkeys([*cfg.precisions, cfg.speed_floor])))[0]
            timed = dict.fromkeys(["fp32", *cfg.precisions, cfg.speed_floor])
            ctx.floor_notes.append(_floor_timing_note(ctx, f"uniform builds of {', '.join(timed)}"))
        choices, ctx.floor_moves = floor_choices(choices, cost, cfg.speed_floor, ctx.target,
                                                 ctx.preset, times)  # fmt: skip
        floor = {"speed_floor": cfg.speed_floor, "speed_floor_timing": cfg.speed_floor_timing}
    acc_fn = _accuracy_oracle(ctx, calibration, choices)
    if journal is not None:
        acc_fn = journal.accuracy_fn(acc_fn)
    merit = get_objective(cfg.objective).merit(MeritInputs(
        cost=cost, preset=ctx.preset, candidates=cfg.precisions, time_layers=time_layers))
    found = run_search(cfg.search, cost.searchable, choices, merit, acc_fn, lam=cfg.lam,
                       budget_pp=cfg.budget_pp, max_sweeps=cfg.max_sweeps,
                       allow_fp32=cfg.fp32_allowed)
    ctx.timings["search_s"] = found.wall_time_s
    assignment = cost.full_assignment(found.assignment)
    plan = Plan.from_assignment(
        assignment, method=cfg.search, objective=cfg.objective, lam=cfg.lam,
        budget_pp=cfg.budget_pp, ai_fp32=cost.fp32_ai(), ai=cost.ai(assignment),
        merit_gain=found.best.ai_norm, val_accuracy_fp32=found.baseline.accuracy,
        val_accuracy=found.best.accuracy, evaluations=found.evaluations, seed=cfg.seed,
        **floor,
    )
    ctx.log(f"search {cfg.search}: {found.evaluations} evaluations in "
            f"{found.wall_time_s:.1f}s")
    return plan, found


# ----------------------------------------------------------------------------- finalize
def _tune(ctx: BuildContext, res: BuildResult) -> None:
    """Tune the final build's kernels into the database; keep whichever whole build is
    faster, the tuned one or the default one (both timed here)."""
    bs, trials = res.batch_size, ctx.config.tune_trials
    micro = res.micro_batch_choice(bs).micro  # the kernels tuned are the micro-batch's
    glue = {"tuned": [], "default": []}
    t0 = time.perf_counter()
    exes = {"tuned": compile_plan(res.annotated, res.plan, res.calibration, res.params,
                                  res.target, bs, res.database, trials,
                                  unscheduled=glue["tuned"], lift_weights=True,
                                  micro_batch=micro, fuse_depthwise=res.fuse_depthwise)}
    tune_s = time.perf_counter() - t0
    exes["default"] = compile_plan(res.annotated, res.plan, res.calibration, res.params,
                                   res.target, bs, unscheduled=glue["default"],
                                   lift_weights=True, micro_batch=micro,
                                   fuse_depthwise=res.fuse_depthwise)
    times = {}
    for key, exe in exes.items():
        res.set_executable(bs, exe, glue[key])
        times[key] = res.benchmark(bs, repeat=15)["median_ms"]
    kept = "tuned" if times["tuned"] <= times["default"] else "default"
    res.set_executable(bs, exes[kept], glue[kept])
    if kept == "default":
        res.database = None  # other batch sizes: default schedules too
    res.tuning = {"trials_per_kernel": trials, "tune_s": tune_s, "tuned_ms": times["tuned"],
                  "default_ms": times["default"], "kept": kept, "batch_size": bs}
    ctx.log(f"tuning: {tune_s:.1f}s; batch {bs}: tuned {times['tuned']:.3f} ms vs default "
            f"{times['default']:.3f} ms -> kept {kept}")


def finalize(ctx: BuildContext, plan: Plan, calibration: Calibration | None,
             searched: SearchResult | None = None) -> BuildResult:
    """Report, compile (tuning first when asked) and, for a given plan, validate."""
    if searched is None and ctx.config.floor_measured:
        plan = _measured_floor(ctx, plan, calibration)
        ctx.log(f"speed floor {ctx.config.speed_floor} (measured): "
                f"{len(plan.metadata['speed_floor_moved'])} layer(s) moved")
    elif searched is None and ctx.config.speed_floor is not None:
        plan = _floored(ctx, plan)[0]  # a caller's own copy of the given plan
    assignment = plan.resolve(ctx.cost.names)
    report = make_report(ctx.cost, assignment, ctx.preset, str(ctx.target),
                         run_target=str(ctx.run_target))
    report.notes += ctx.notes
    stored = byte_stored_int4(ctx.cost, assignment, ctx.target)
    if stored:
        report.notes.append(
            f"{len(stored)} int4 layer(s) run on AMX tiles with their 4-bit codes stored a byte "
            f"each (int8's speed and weight memory; bytes and AI above count 4 bits): {stored}")
    report.speed_floor = ctx.config.speed_floor
    if ctx.config.floor_measured:
        report.speed_floor_timing = "measured"
        report.notes += ctx.floor_notes
    elif ctx.config.speed_floor is not None:
        report.notes.append(describe_floor_memory(ctx.cost, ctx.config.speed_floor, ctx.target,
                                                  ctx.preset))  # fmt: skip
    report.floor = [m.to_dict() for m in ctx.floor_moves]
    report.weight_correction = describe_weight_correction(calibration, [
        n for n, p in assignment.items()
        if ctx.cost[n].supported and get_precision(p).quantizes_weights])
    res = ctx.result(plan, calibration, report, searched)
    t0 = time.perf_counter()
    if ctx.config.tune:
        _tune(ctx, res)
    res.executable(ctx.batch_size)
    ctx.timings["compile_s"] = time.perf_counter() - t0
    if ctx.config.micro_batch is not None:  # off (the default) leaves the header as it was
        report.micro_batch = res.micro_batch_choice().describe()
    report.unscheduled = res.unscheduled_glue()
    if searched is not None:
        report.accuracy_fp32 = searched.baseline.accuracy
        report.accuracy = report.search_accuracy = searched.best.accuracy
    if ctx.val is not None:  # the final build's own accuracy, as its exported library gives
        report.accuracy = res.evaluate(*ctx.val, ctx.eval_batch_size)
    ctx.timings["total_s"] = time.perf_counter() - ctx.t_start
    ctx.log(f"done: AI x{report.ai_gain:.2f}")
    return res
