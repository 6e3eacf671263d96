"""``BuildConfig``: every setting of :func:`aiq_tvm.build`, checked once in ``__post_init__``.

Pure Python.  Checks that need the model (data shapes, parameter names, the static batch)
happen when the build resolves it (:func:`aiq_tvm.phases.resolve`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .calibrate import CALIBRATION_METHODS, DEFAULT_CALIBRATION, Calibration
from .checks import (
    check_choice,
    check_lam,
    check_non_negative_int,
    check_non_negative_number,
    check_optional_positive_int,
    check_percentile,
    check_positive_int,
    check_remote,
)
from .microbatch import check_divides, check_micro_batch
from .objectives import OBJECTIVES
from .plan import Plan, as_plan
from .schemes import PRECISIONS, get_precision
from .search import SEARCH_METHODS
from .weight_correction import DEFAULT_WEIGHT_CORRECTION, check_weight_correction

__all__ = ["BuildConfig", "FLOOR_TIMINGS"]

# What the speed floor compares (BuildConfig.speed_floor_timing).
FLOOR_TIMINGS = ("model", "measured")


@dataclass(frozen=True)
class BuildConfig:
    """Settings of one :func:`aiq_tvm.build`, checked and normalized on construction.

    ``plan`` becomes a :class:`Plan` (None: search one), ``precisions`` a tuple of registered
    names (all of them when None).

    Parameters
    ----------
    target : str, dict or tvm.target.Target
        ``"llvm"`` for this machine, a preset name, a TVM JSON target or a Target: the
        *deploy* target.  When this machine cannot execute its code, calibration and the
        accuracy runs use the host target with the deploy target's numerics
        (``BuildResult.run_target``, ``report.run_target``).
    plan : Plan, str or dict, optional
        Use this plan instead of searching (a precision name means every layer).
    lam : float
        Weight of AI in the loss (see :mod:`aiq_tvm.search`), in [0, 1].
    search : str
        ``"greedy"``, ``"coordinate_descent"`` or ``"budget"``.
    objective : str
        What the loss rewards (:data:`aiq_tvm.objectives.OBJECTIVES`): ``"ai"``, the paper's
        arithmetic intensity; ``"roofline"``, the speed-up the target preset's roofline
        predicts (FP32 time / plan time; int8 compute peaks count, so it prefers integer
        kernels over weight-only ones where the layer is compute-bound); or ``"measured"``,
        the speed-up of the layer kernels as timed on this machine at ``batch_size`` (each
        layer's kernel at each candidate precision, timed once in a uniform build of that
        precision).
    budget_pp : float
        Accuracy budget in percentage points for ``search="budget"``.
    precisions : sequence of str, optional
        Candidate precisions per layer (default: the target's,
        :func:`aiq_tvm.targets.default_precisions`: all registered, or FP32 alone where
        int8 does not pay, i.e. the target has no int8 dot-product instruction or its preset's
        int8 peak is not above its FP32 peak; the report says what was left out).  A list
        without ``"fp32"`` keeps every searchable layer quantized (e.g. ``["int8", "int4"]``:
        an int8/int4 mix starting from uniform int8); FP32 remains the search's baseline.
    calibration : str or Calibration
        How layer input ranges are measured (:mod:`aiq_tvm.calibrate`): ``"minmax"``,
        ``"percentile"``, ``"mse"`` (the default: the range with the smallest uint8
        round-trip error), or a ready :class:`Calibration`.
    weight_correction : str
        What is done to the weights of quantized layers before they are rounded
        (:mod:`aiq_tvm.weight_correction`): ``"gptq"`` (the default: round the weights so
        that the layer's output on the calibration data changes least, :mod:`aiq_tvm.gptq`),
        ``"bias"`` (subtract the expected output shift of round-to-nearest, from the
        calibration data's input means, from the bias), ``"bias+gptq"``, or ``"none"`` (plain
        round-to-nearest, as before).  Same per-channel scales and kernels in every case;
        stored in the build's :class:`Calibration`.
    batch_size : int, optional
        Batch size of the returned executable (more via :meth:`BuildResult.executable`);
        default 1, or the module's batch when it is static.
    eval_batch_size : int, optional
        Batch size of the calibration and accuracy runs (search and validation); default
        100 (or the number of calibration/validation samples when it is smaller), or the
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
    tune_trials : int
        Tuning trials per kernel (with ``tune``).
    percentile : float
        Upper percentile of ``calibration="percentile"``, in (50, 100].
    max_sweeps : int, optional
        Sweep limit of ``coordinate_descent`` / ``budget``.
    seed : int
        Seed of the calibration sample (recorded in the plan).
    verbose : bool
        Print each phase's progress with the elapsed time.
    remote : str or tvm.rpc.RPCSession, optional
        With ``objective="measured"``: time the layer kernels on this RPC device
        (``"host:port"`` or a session) instead of this machine, as the deploy target's code.
    output : int, optional
        For a model that returns several outputs (a tuple; nested tuples count in order):
        the index of the one holding the class scores, which validation accuracy and the
        search use.  Required when such a model is validated or searched.
    speed_floor : str, optional
        A registered precision (e.g. ``"int8"``; default None: no floor, the paper's
        objective alone). No layer may run a precision whose modelled kernel time on the
        deploy target at ``batch_size`` is above this precision's times
        ``1 + aiq_tvm.floor.FLOOR_TOLERANCE``: the search does not offer it (FP32, its
        baseline, stays offered), a given plan's layer is moved to the floor precision (its
        FP32 layers stay).
        Layers without an AIQ kernel are untouched; the report lists every layer affected
        and the plan records the floor (:mod:`aiq_tvm.floor`).
    speed_floor_timing : str
        What the speed floor compares (:data:`FLOOR_TIMINGS`): ``"model"`` (default), the
        kernel library's modelled times, nothing run; ``"measured"``, the layer kernels timed
        at ``batch_size`` on this machine (or on the RPC device ``remote``) after
        calibration, within ``aiq_tvm.floor.MEASURED_FLOOR_TOLERANCE`` (timing noise): for a
        given plan, the plan's build against the build with its layers at the floor
        precision, and where layers moved, whole inferences of the floored plan against the
        plan as given (the plan as given is kept, and the report says so, where the floored
        one ran slower as a whole); for a search, uniform builds of each candidate. The
        model can misjudge a pair of kernels on one ISA level (ResNet-20's 16-channel 3x3
        layers on skylake-avx512, batch 16: int8 modelled 2 % slower than FP32, measured
        1.6-1.7x faster; docs/performance_isa.md, session 37).
    micro_batch : None, "auto", "measure" or int
        Run a batch as sequential calls of a smaller micro-batch, inside the executable's
        ``main`` (which still takes the whole batch): large activations then stay in the
        last-level cache, at the price of reading the weights once per call
        (:mod:`aiq_tvm.microbatch`).  None or ``"off"`` (default): never split.
        ``"auto"`` picks per batch size from the plan's activation and weight bytes and the
        target preset's LLC size (batch 1, and models whose activations fit, run whole);
        ``"measure"`` compiles the candidates and keeps the fastest on this machine (a target
        that does not run here falls back to ``"auto"``, and the report says so); an
        int must divide ``batch_size`` (other batch sizes it does not divide run whole).  The
        report says which micro-batch ran and why; a module whose batch cannot be split
        (static batch) runs whole, and the report says so.
    fuse_depthwise : bool
        Run an FP32 depthwise conv whose output only an FP32 1x1 conv reads inside that
        conv's kernel where the kernel library expects it to pay on the target (default
        True; ``targets/x86/dwpw.py``, docs/performance_224.md "Session 49"): the same
        output bits, the depthwise output kept in the cores' caches. The fused kernel runs
        the planner's schedule (tuning records are not consulted for it), and a profile
        counts its time under the 1x1 layer. False: one kernel per layer.
    """

    target: object = "llvm"
    plan: Plan | str | Mapping | None = None
    lam: float = 0.9
    search: str = "greedy"
    objective: str = "ai"
    budget_pp: float = 1.0
    precisions: Sequence[str] | None = None
    calibration: str | Calibration = DEFAULT_CALIBRATION
    percentile: float = 99.99
    weight_correction: str = DEFAULT_WEIGHT_CORRECTION
    batch_size: int | None = None
    eval_batch_size: int | None = None
    max_sweeps: int | None = None
    seed: int = 0
    tune: bool = False
    database: str | None = None
    tune_trials: int = 64
    verbose: bool = False
    remote: object = None
    output: int | None = None
    speed_floor: str | None = None
    speed_floor_timing: str = "model"
    micro_batch: int | str | None = None
    fuse_depthwise: bool = True
    # True when precisions were not given: resolve() narrows them to the target's defaults.
    precisions_default: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        set_ = self._normalize
        set_("lam", check_lam(self.lam))
        check_choice("search", self.search, SEARCH_METHODS)
        check_choice("objective", self.objective, OBJECTIVES)
        set_("budget_pp", check_non_negative_number("budget_pp", self.budget_pp, " pp"))
        if isinstance(self.precisions, str):
            raise ValueError(f"precisions must be a list of precision names, e.g. "
                             f"[{self.precisions!r}] or ['fp32', 'int8'], not the string "
                             f"{self.precisions!r}; valid names: {', '.join(PRECISIONS)}")
        set_("precisions_default", self.precisions is None)
        cands = tuple(PRECISIONS if self.precisions is None else self.precisions)
        for p in cands:
            get_precision(p)
        if not cands:
            raise ValueError(f"precisions is empty; choose from {', '.join(PRECISIONS)}")
        set_("precisions", cands)
        if not isinstance(self.calibration, Calibration):
            check_choice("calibration", self.calibration, CALIBRATION_METHODS,
                         " or an aiq_tvm.Calibration")
        set_("percentile", check_percentile(self.percentile))
        check_weight_correction(self.weight_correction)
        check_optional_positive_int("batch_size", self.batch_size)
        check_optional_positive_int("eval_batch_size", self.eval_batch_size)
        check_optional_positive_int("max_sweeps", self.max_sweeps)
        if self.tune and self.database is None:
            raise ValueError("tune=True needs database='<directory>' to store tuning records in")
        check_positive_int("tune_trials", self.tune_trials)
        if self.plan is not None:
            set_("plan", as_plan(self.plan))
        if self.speed_floor is not None:
            check_choice("speed_floor", self.speed_floor, PRECISIONS)
        check_choice("speed_floor_timing", self.speed_floor_timing, FLOOR_TIMINGS)
        if self.speed_floor_timing == "measured" and self.speed_floor is None:
            raise ValueError("speed_floor_timing='measured' times the speed floor's layers; "
                             "give speed_floor=<precision> too (e.g. 'fp32')")
        set_("micro_batch", check_micro_batch(self.micro_batch))
        if isinstance(self.micro_batch, int) and self.batch_size is not None:
            check_divides(self.micro_batch, self.batch_size)
        if not isinstance(self.fuse_depthwise, bool):
            raise ValueError(f"fuse_depthwise must be True or False, got "
                             f"{self.fuse_depthwise!r}")
        set_("remote", check_remote(self.remote))
        if self.output is not None:
            set_("output", check_non_negative_int("output", self.output))
        times_layers = self.objective == "measured" and self.searches
        if self.remote is not None and not (times_layers or self.floor_measured):
            raise ValueError("remote= times layer kernels on the device for the measured "
                             "objective's search (objective='measured', no plan) or a measured "
                             "speed floor (speed_floor_timing='measured'); to time a build "
                             "on a device use BuildResult.benchmark(remote=...)")

    def _normalize(self, name: str, value) -> None:
        object.__setattr__(self, name, value)  # frozen: store the checked, normalized value

    @property
    def floor_measured(self) -> bool:
        """True when the speed floor compares measured kernel times."""
        return self.speed_floor is not None and self.speed_floor_timing == "measured"

    @property
    def searches(self) -> bool:
        """True when the build searches a plan (no plan given)."""
        return self.plan is None

    @property
    def fp32_allowed(self) -> bool:
        """Whether the search may keep a layer at FP32: only when ``precisions`` lists it
        (``["int8", "int4"]`` asks for an int8/int4 mix; FP32 is then only the baseline)."""
        return "fp32" in self.precisions

    def choices(self, layers: Sequence[str]) -> dict[str, list[str]]:
        """Precisions of every searchable layer in the search's switchable module (fp32
        always among them: it is the baseline; :attr:`fp32_allowed` says if it is a choice)."""
        cands = list(self.precisions)
        if "fp32" not in cands:
            cands.insert(0, "fp32")
        return {n: cands for n in layers}
