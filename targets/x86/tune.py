"""Meta-schedule tuning of the x86 kernels, searching the library's own schedule template.

The search space of a kernel is :func:`~aiq_tvm.targets.x86.schedules.apply_tiled` itself,
expressed as a ``meta_schedule`` :class:`ScheduleFn` design space: every tile factor the planner
would choose (spatial register-block extents, channel vectors per block) is drawn with
``sch.sample_categorical`` over the values that divide the loop, and each loop structure (outer
loop order, how many loops form the parallel loop) is one design space. The template never
branches on a factor's value, so a trace replays with any decisions: meta-schedule's
evolutionary search re-samples and mutates them, its XGBoost cost model ranks the candidates
before they are built and measured, and the database stores replayable traces.

Workloads are the kernels' *unscheduled* PrimFuncs (weights and output quantization parameters
are parameters, not constants), so every layer of the same shape, scheme and fused epilogue
shares one record.

Selection is never worse than the default template: after the search, the default schedule and
the best few tuned ones are re-measured interleaved in this process (median per-round time
ratio and ratio of minima against the default), and only the default and the tuned schedules
that beat it by :data:`CONFIRM_MARGIN` in both are committed to the database, with those
times. The database's best record for a workload is therefore the default unless a tuned
schedule was confirmed faster under the same conditions.

Databases are meta-schedule JSON databases (``database_workload.json`` and
``database_tuning_record.json`` in a directory) or any ``ms.database.Database``.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import sys
import tempfile
import time
import types
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from math import prod
from typing import Any

import numpy as np
import tvm
import tvm_ffi
from tvm import s_tir, tirx

from .common import finalize
from .schedules import (
    TEMPLATE_KEY,
    TilePlan,
    acc_extents,
    apply_tiled,
    divisors,
    structure_tag,
)

__all__ = ["TileSpace", "TuneReport", "schedule_kernel", "tune_kernels", "workload_module"]

TOP_K = 3  # tuned candidates re-measured against the default after the search
CONFIRM_ROUNDS = 21
CONFIRM_SAMPLE_S = 3e-3
# A tuned schedule replaces the default only if it is this much faster in the interleaved
# re-measurement: smaller differences are within the noise of a shared 2-core machine.
CONFIRM_MARGIN = 0.02


# ---------------------------------------------------------------------------------------------
# The search space
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Structure:
    """Loop structure of one design space: outer loop order and parallel loop count."""

    order: tuple[str, ...]
    npar: int

    def tag(self) -> str:
        return structure_tag(self.order, self.npar)


@dataclass(frozen=True)
class TileSpace:
    """The tuning space of one kernel around its default :class:`TilePlan`.

    Attributes
    ----------
    plan : TilePlan
        Default plan (layout-defining ``ocb`` and the default decisions).
    tile_cands : tuple of tuple of int
        Candidate tile factors of every spatial loop: its divisors up to the one-vector
        accumulator budget.
    vector_cands : tuple of int
        Candidate channel vectors per register block: divisors of ``ocb / lanes``.
    structures : tuple of Structure
        Loop structures, the default first.
    acc_budget : tuple of int
        Register budget: ``prod(tiles) * vectors <= acc_budget[vectors - 1]`` accumulators
        (fewer with more channel vectors, whose weights occupy registers too).
    """

    plan: TilePlan
    tile_cands: tuple[tuple[int, ...], ...]
    vector_cands: tuple[int, ...]
    structures: tuple[Structure, ...]
    acc_budget: tuple[int, ...]

    @classmethod
    def of(cls, func: tirx.PrimFunc, plan: TilePlan, acc_budget: tuple[int, ...]) -> TileSpace:
        """Space of the unscheduled kernel ``func`` whose default plan is ``plan``."""
        sch = s_tir.Schedule(func)
        nsp = len(plan.tiles)
        ext = acc_extents(sch, nsp)
        try:
            sch.get_sblock("pad")
            has_pad = True
        except Exception:  # noqa: BLE001 - TVM raises a generic error for a missing block
            has_pad = False
        tile_cands = [[d for d in divisors(e) if d <= acc_budget[0]] for e in ext[:nsp]]
        vector_cands = divisors(plan.ocb // plan.lanes)
        # A trace replays only if every decision yields the same loop nest, and
        # decompose_reduction drops the register-block loop when the block is a single vector.
        # So that loop must exist for all decisions or for none: one factor that is >= 2 by
        # default only offers values >= 2; a single-vector default block is not searched.
        widest = max(range(nsp), key=lambda i: plan.tiles[i])
        if plan.tiles[widest] >= 2:
            tile_cands[widest] = [d for d in tile_cands[widest] if d >= 2]
        elif plan.ocv >= 2:
            vector_cands = [v for v in vector_cands if v >= 2]
        else:
            tile_cands = [[t] for t in plan.tiles]
            vector_cands = [plan.ocv]
        tile_cands = tuple(tuple(c) for c in tile_cands)
        vector_cands = tuple(vector_cands)
        default = Structure(plan.order, plan.num_parallel(ext))
        structures = [default]
        if has_pad:
            # The padded copy is per parallel iteration: per image group or per row group.
            orders = [plan.order]
            npars = [1, 2] if nsp > 1 else [1]
        else:
            spatial = tuple(f"s{i}" for i in range(nsp))
            orders = [("o", *spatial), (*spatial, "o")]
            npars = list(range(1, nsp + 2))
        for order in orders:
            for npar in npars:
                st = Structure(order, npar)
                if st not in structures:
                    structures.append(st)
        return cls(plan, tile_cands, vector_cands, tuple(structures), tuple(acc_budget))

    @property
    def n_samples(self) -> int:
        """Sampling instructions of the template (one per spatial tile, one for vectors)."""
        return len(self.tile_cands) + 1

    def valid(self, tiles, vectors: int) -> bool:
        """Whether the register block fits the accumulator budget."""
        return prod(tiles) * vectors <= self.acc_budget[vectors - 1]

    def apply(self, sch: s_tir.Schedule, structure: Structure) -> None:
        """Apply the template with sampled factors (decisions default to the plan's)."""
        plan = self.plan
        rvs = []
        for cands, t in zip(self.tile_cands, plan.tiles, strict=True):
            rvs.append(_sample(sch, cands, cands.index(t)))
        vec = _sample(sch, self.vector_cands, self.vector_cands.index(plan.ocv))
        # The per-thread decode split depends on a tile loop's extent (whether the threads
        # divide it), i.e. on a sampled factor, so tuned decode-once kernels decode at the root.
        sub = replace(plan, order=structure.order, decode_threads=0, decode_block=False)
        apply_tiled(sch, sub, tiles=rvs, vectors=vec, npar=structure.npar)

    def decisions(self, trace) -> tuple[tuple[int, ...], int]:
        """(tiles, vectors) chosen in a trace of this template."""
        values = [int(inst.attrs[0][int(trace.decisions[inst])]) for inst in _samples(trace)]
        return tuple(values[:-1]), values[-1]

    def describe(self, trace, kind: str) -> str:
        """Schedule tag of a trace, in the format of :meth:`TilePlan.describe`."""
        tag = _structure_tag(trace)
        if tag is None:
            return f"{kind}_foreign_record"
        tiles, vectors = self.decisions(trace)
        plan = replace(self.plan, tiles=tiles, vectors=vectors)
        default = self.structures[0].tag()
        return plan.describe(kind) + ("" if tag == default else f"_{tag.replace('|', '_')}")

    def is_default(self, trace) -> bool:
        """Whether a trace of this template makes exactly the default decisions."""
        if _structure_tag(trace) != self.structures[0].tag():
            return False
        return self.decisions(trace) == (self.plan.tiles, self.plan.ocv)


def _sample(sch, cands, decision: int):
    return sch.sample_categorical(
        candidates=list(cands), probs=[1.0 / len(cands)] * len(cands), decision=decision
    )


def _samples(trace) -> list:
    return [i for i in trace.insts if i.kind.name == "SampleCategorical"]


def _structure_tag(trace) -> str | None:
    """Loop structure recorded in a trace of the template (None for other traces)."""
    for inst in trace.insts:
        if inst.kind.name == "Annotate" and str(inst.attrs[0]) == TEMPLATE_KEY:
            return str(inst.inputs[1])
    return None


def workload_module(func: tirx.PrimFunc) -> tvm.IRModule:
    """The database workload of a kernel: its unscheduled PrimFunc as ``main``.

    Normalized exactly like ``meta_schedule.tune_tir`` does, so records committed by tuning are
    found again by structural equality.
    """
    if func.attrs is None or "global_symbol" not in func.attrs:
        func = func.with_attr("global_symbol", "main")
    return tvm.IRModule({"main": func.with_attr("tirx.noalias", True)})


# ---------------------------------------------------------------------------------------------
# Database access
# ---------------------------------------------------------------------------------------------

_DB_CACHE: dict[str, tuple[tuple, Any]] = {}


def _db_files(path: str) -> list[str]:
    return [
        os.path.join(path, "database_workload.json"),
        os.path.join(path, "database_tuning_record.json"),
    ]


def _stamp(path: str) -> tuple:
    out = []
    for f in _db_files(path):
        try:
            st = os.stat(f)
            out.append((st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


def open_database(database):
    """A meta-schedule database from a directory path (JSON, cached per process) or as is.

    Parameters
    ----------
    database : str, os.PathLike or ms.database.Database
        Directory of a JSON database (created if missing) or a database object.
    """
    from tvm.s_tir import meta_schedule as ms

    if isinstance(database, ms.database.Database):
        return database
    if not isinstance(database, str | os.PathLike):
        raise TypeError(
            f"database must be a directory path or a meta_schedule Database, got "
            f"{type(database).__name__}"
        )
    path = os.path.abspath(os.fspath(database))
    os.makedirs(path, exist_ok=True)
    hit = _DB_CACHE.get(path)
    if hit is not None and hit[0] == _stamp(path):
        return hit[1]
    db = ms.database.JSONDatabase(work_dir=path, module_equality="structural")
    _DB_CACHE[path] = (_stamp(path), db)
    return db


def _touch_cache(database) -> None:
    """Our own commits changed the files: keep the cached database valid."""
    for path, (_, db) in list(_DB_CACHE.items()):
        if db.same_as(database):
            _DB_CACHE[path] = (_stamp(path), db)


def workload_records(database, mod: tvm.IRModule, target: tvm.target.Target) -> list:
    """Valid records of ``mod`` for ``target``, best (lowest mean run time) first."""
    if not database.has_workload(mod):
        return []
    wl = database.commit_workload(mod)
    recs = database.get_top_k(wl, 1 << 30)
    want = str(target)
    return [r for r in recs if r.target is None or str(r.target) == want]


def _replay(mod: tvm.IRModule, trace) -> s_tir.Schedule:
    sch = s_tir.Schedule(mod)
    trace.apply_to_schedule(sch, remove_postproc=False)
    return sch


def _mean_ms(record) -> float:
    return float(np.mean([float(s) for s in record.run_secs])) * 1e3


# ---------------------------------------------------------------------------------------------
# Search components (meta-schedule classes are defined on first use: importing meta_schedule
# is only paid by callers that tune)
# ---------------------------------------------------------------------------------------------

_PARTS: dict[str, type] = {}


def _search_classes() -> tuple[type, type]:
    if _PARTS:
        return _PARTS["check"], _PARTS["mutate"]
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.mutator import PyMutator
    from tvm.s_tir.meta_schedule.postproc import PyPostproc

    @derived_object
    class RegisterBudget(PyPostproc):
        """Reject candidates whose register block exceeds the accumulator budget.

        Independent per-loop samples can multiply into a block that spills; the evolutionary
        search drops such samples and draws again.
        """

        def __init__(self, space: TileSpace):
            self.space = space

        def _initialize_with_tune_context(self, context) -> None:
            pass

        def apply(self, sch) -> bool:
            tiles, vectors = self.space.decisions(sch.trace)
            return self.space.valid(tiles, vectors)

        def clone(self):
            return RegisterBudget(self.space)

    @derived_object
    class MutateTile(PyMutator):
        """Change one tile decision of the template to another value within the budget.

        Meta-schedule's own mutators only mutate ``sample_perfect_tile`` and unroll /
        parallel decisions; this one is what lets the evolutionary search walk our space.
        """

        def __init__(self, space: TileSpace, seed: int):
            self.space = space
            # Our own generator: the search passes its random state by value, so a Python
            # mutator cannot advance it.
            self.rng = random.Random(seed)

        def _initialize_with_tune_context(self, context) -> None:
            pass

        def apply(self, trace, _rand_state):
            insts = _samples(trace)
            cur = [int(trace.decisions[i]) for i in insts]
            cands = [*self.space.tile_cands, self.space.vector_cands]
            for k in self.rng.sample(range(len(insts)), len(insts)):
                alts = []
                for j in range(len(cands[k])):
                    if j == cur[k]:
                        continue
                    pick = [c[d] for c, d in zip(cands, cur, strict=True)]
                    pick[k] = cands[k][j]
                    if self.space.valid(pick[:-1], pick[-1]):
                        alts.append(j)
                if alts:
                    return trace.with_decision(insts[k], self.rng.choice(alts), True)
            return None

        def clone(self):
            return MutateTile(self.space, self.rng.randrange(1 << 30))

    _PARTS["check"], _PARTS["mutate"] = RegisterBudget, MutateTile
    return RegisterBudget, MutateTile


# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------


def build_candidate(mod: tvm.IRModule, target: tvm.target.Target, _params=None):
    """Builder function of the tuning workers (``LocalBuilder(f_build=...)``).

    meta-schedule's default build first imports ``tvm.s_tir.tensor_intrin`` (TVM's whole
    tensor-intrinsic library: hundreds of TVMScript functions, 20-50 s of parsing per worker
    process on a loaded 2-core machine); our candidates are already tensorized with the
    intrinsics of ``vnni.py``, so they are compiled directly, through the TIR pipeline
    builds use.
    """
    return tvm.tirx.build(mod, target=target, pipeline=_tir_pipeline())


def _tir_pipeline() -> str:
    """Name of the TIR pipeline model builds compile kernels with (registered on import of
    ``aiq_tvm.pipeline``; imported here, as tuning workers may not have loaded it yet)."""
    from aiq_tvm.pipeline import TIR_PIPELINE

    return TIR_PIPELINE


@contextmanager
def _quiet_console():
    """Keep meta-schedule's per-trial INFO lines in its log files, off the console.

    Its loggers print at the level of the ``tvm.s_tir.meta_schedule`` logger (DEBUG when
    unset); a level the user set is respected. ``tune_tir`` re-configures that logger with
    ``logging.config.dictConfig``, naming every handler already attached to it; a handler
    without a name (pytest's ``LogCaptureHandler``, or one a user added) makes that call fail,
    so such handlers are detached for the duration of the call and re-attached afterwards.
    """
    lg = logging.getLogger("tvm.s_tir.meta_schedule")
    unnamed = [h for h in lg.handlers if not h.get_name()]
    for h in unnamed:
        lg.removeHandler(h)
    user_level = lg.level != logging.NOTSET
    if not user_level:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        if not user_level:
            lg.setLevel(logging.NOTSET)
        for h in unnamed:
            lg.addHandler(h)


@contextmanager
def _without_tvm_intrin_library():
    """Let ``TuneContext`` skip importing ``tvm.s_tir.tensor_intrin`` while we tune.

    ``TuneContext.__init__`` imports that library so TVM's auto-tensorize rules can find its
    intrinsics; our design space never uses them (see :func:`build_candidate` for the cost).
    A placeholder module stands in for the duration of the call only, so a later real import
    (by anyone) still loads the library.
    """
    name = "tvm.s_tir.tensor_intrin"
    if name in sys.modules:
        yield
        return
    placeholder = types.ModuleType(name)
    sys.modules[name] = placeholder
    try:
        yield
    finally:
        if sys.modules.get(name) is placeholder:
            del sys.modules[name]


def _random_args(func: tirx.PrimFunc, rng: np.random.Generator) -> list:
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    args = []
    for info in ArgInfo.from_prim_func(func):
        shape = tuple(int(s) for s in info.shape)
        dtype = str(info.dtype)
        if dtype.startswith("float"):
            data = rng.standard_normal(shape).astype(dtype)
        else:
            lo, hi = (0, 256) if dtype.startswith("uint") else (-8, 8)
            data = rng.integers(lo, hi, shape).astype(dtype)
        args.append(tvm.runtime.tensor(data))
    return args


def measure_relative(
    funcs: list[tirx.PrimFunc],
    target: tvm.target.Target,
    rounds: int = CONFIRM_ROUNDS,
    sample_s: float = CONFIRM_SAMPLE_S,
) -> tuple[float, list[float], list[float]]:
    """Time kernels against the first one, round-robin in this process.

    Every round times each kernel once (about ``sample_s`` seconds of calls, order rotated),
    so the kernels of one round run under the same background load; each kernel's speed is
    the median over rounds of its time divided by the first kernel's time in that round,
    which is far steadier on a shared machine than comparing medians of absolute times. The
    ratio of the per-kernel minima is returned too: background load only ever adds time, so
    the minima estimate the undisturbed cost.

    Returns
    -------
    base_ms : float
        Median milliseconds per call of ``funcs[0]``.
    ratios : list of float
        Median per-round time ratio of each kernel to ``funcs[0]`` (``ratios[0] == 1``).
    min_ratios : list of float
        Minimum time of each kernel over the rounds divided by that of ``funcs[0]``.
    """
    rng = np.random.default_rng(0)
    timers = []
    for f in funcs:
        # A fresh default context: tuning may run inside a model build's pass context.
        with tvm.transform.PassContext(opt_level=3):
            ex = tvm.compile(tvm.IRModule({"main": f}), target, tir_pipeline=_tir_pipeline())
        args = _random_args(f, rng)
        ex.mod["main"](*args)
        once = ex.mod.time_evaluator("main", tvm.cpu(), number=1, repeat=3)(*args).min
        number = int(np.clip(sample_s / max(once, 1e-7), 1, 10000))
        timers.append((ex.mod.time_evaluator("main", tvm.cpu(), number=number, repeat=1), args))
    samples = np.zeros((rounds, len(funcs)))
    for r in range(rounds):
        for i in np.roll(np.arange(len(funcs)), r):
            fn, args = timers[i]
            samples[r, i] = fn(*args).mean
    ratios = np.median(samples / samples[:, :1], axis=0)
    mins = samples.min(axis=0)
    return (
        float(np.median(samples[:, 0])) * 1e3,
        [float(v) for v in ratios],
        [float(v) for v in mins / mins[0]],
    )


# ---------------------------------------------------------------------------------------------
# Tuning
# ---------------------------------------------------------------------------------------------


@dataclass
class TuneReport:
    """Default-vs-tuned outcome of one kernel workload.

    Attributes
    ----------
    kernel : str
        Default schedule tag of the kernel (``Kernel.info["schedule"]`` without tuning).
    source : str
        ``"tuned"`` (searched now) or ``"database"`` (records found).
    chosen : str
        Schedule tag of the selected record (equal to ``kernel`` when the default won).
    default_ms, best_ms : float or None
        Recorded milliseconds per call of the default schedule and of the selected record
        (interleaved re-measurement; ``default_ms`` is None for a database without it).
    trials : int
        Candidates measured by the search (0 for ``"database"``).
    seconds : float
        Wall time of the search (0 for ``"database"``).
    """

    kernel: str
    source: str
    chosen: str
    default_ms: float | None
    best_ms: float
    trials: int = 0
    seconds: float = 0.0

    @property
    def speedup(self) -> float | None:
        """``default_ms / best_ms`` (>= 1 by construction for tuned workloads)."""
        return None if self.default_ms is None else self.default_ms / self.best_ms

    def as_dict(self) -> dict:
        return asdict(self)


def _tune(
    mod: tvm.IRModule,
    space: TileSpace,
    target: tvm.target.Target,
    trials: int,
    database,
    seed: int,
    kind: str,
) -> TuneReport:
    """Search ``space``, confirm the best candidates against the default, commit them."""
    measured, n_trials, seconds = _evolutionary_search(mod, space, target, trials, seed)
    cands = _default_and_best_distinct(mod, space, measured)
    base_ms, ratios, min_ratios = measure_relative([finalize(c.mod["main"]) for c in cands], target)
    times = [base_ms * r for r in ratios]
    keep = _commit_confirmed(database, mod, target, cands, times, ratios, min_ratios)
    best = min(keep, key=lambda i: times[i])
    return TuneReport(
        kernel=space.plan.describe(kind),
        source="tuned",
        chosen=space.describe(cands[best].trace, kind),
        default_ms=times[0],
        best_ms=times[best],
        trials=n_trials,
        seconds=seconds,
    )


def _evolutionary_search(
    mod: tvm.IRModule, space: TileSpace, target: tvm.target.Target, trials: int, seed: int
) -> tuple[list, int, float]:
    """Meta-schedule search over ``space`` in a scratch database: its records of ``mod``
    (best first), the number of candidates measured and the search's wall seconds."""
    from tvm.s_tir import meta_schedule as ms

    check_cls, mutate_cls = _search_classes()

    def design_spaces(sch):
        out = []
        for st in space.structures:
            s = sch.copy()
            space.apply(s, st)
            out.append(s)
        return out

    t0 = time.perf_counter()
    work_dir = tempfile.mkdtemp(prefix="aiq_tune_")
    try:
        scratch = ms.database.MemoryDatabase(module_equality="structural")
        with _without_tvm_intrin_library(), _quiet_console():
            ms.tune_tir(
                mod,
                target,
                work_dir=work_dir,
                max_trials_global=trials,
                num_trials_per_iter=min(trials, 16),
                builder=ms.builder.LocalBuilder(
                    max_workers=os.cpu_count() or 1, timeout_sec=120, f_build=build_candidate
                ),
                runner=ms.runner.LocalRunner(
                    timeout_sec=60,
                    evaluator_config=ms.runner.EvaluatorConfig(
                        number=1, repeat=5, min_repeat_ms=20, enable_cpu_cache_flush=False
                    ),
                ),
                database=scratch,
                cost_model="xgb",
                space=ms.space_generator.ScheduleFn(
                    design_spaces,
                    sch_rules=[],
                    postprocs=[check_cls(space)],
                    mutator_probs={mutate_cls(space, seed): 1.0},
                ),
                strategy=ms.search_strategy.EvolutionarySearch(
                    population_size=128,
                    init_measured_ratio=0.2,
                    init_min_unmeasured=8,
                    max_fail_count=10,
                    genetic_num_iters=3,
                    genetic_mutate_prob=0.85,
                    genetic_max_fail_count=10,
                    eps_greedy=0.1,
                ),
                num_tuning_cores=os.cpu_count() or 1,
                seed=seed,
            )
        measured = workload_records(scratch, mod, target)
        n_trials = len(scratch.get_all_tuning_records())
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return measured, n_trials, time.perf_counter() - t0


def _default_and_best_distinct(mod: tvm.IRModule, space: TileSpace, measured: list) -> list:
    """The default schedule followed by up to :data:`TOP_K` of the best measured records whose
    functions differ from it and from each other."""
    default_sch = s_tir.Schedule(mod)
    space.apply(default_sch, space.structures[0])
    cands = [default_sch]
    seen = [default_sch.mod]
    for rec in measured:
        if len(cands) > TOP_K:
            break
        sch = _replay(mod, rec.trace)
        if any(tvm_ffi.structural_equal(sch.mod, m) for m in seen):
            continue
        seen.append(sch.mod)
        cands.append(sch)
    return cands


def _commit_confirmed(database, mod, target, cands, times, ratios, min_ratios) -> list[int]:
    """Commit the default (``cands[0]``) and the tuned schedules confirmed faster; return
    their indices.

    A tuned schedule must beat the default by the margin in both the median per-round ratio
    and the ratio of minima, so the database's best record is the default unless a tuned one
    is confirmed faster. Recorded times are the default's median scaled by each candidate's
    median per-round ratio.
    """
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    wl = database.commit_workload(mod)
    args_info = ArgInfo.from_prim_func(mod["main"])
    keep = [0] + [
        i for i in range(1, len(cands)) if max(ratios[i], min_ratios[i]) < 1 - CONFIRM_MARGIN
    ]
    for i in keep:
        database.commit_tuning_record(
            ms.database.TuningRecord(
                cands[i].trace, wl, run_secs=[times[i] * 1e-3], target=target, args_info=args_info
            )
        )
    _touch_cache(database)
    return keep


def _default_schedule(func: tirx.PrimFunc, plan: TilePlan, kind: str):
    sch = s_tir.Schedule(func)
    apply_tiled(sch, plan)
    return finalize(sch.mod["main"]), {
        "schedule": plan.describe(kind),
        "schedule_source": "default",
    }


def schedule_kernel(
    func: tirx.PrimFunc,
    plan: TilePlan,
    kind: str,
    *,
    target: tvm.target.Target,
    acc_budget: tuple[int, ...],
    database=None,
    tune_trials: int = 0,
    seed: int = 0,
) -> tuple[tirx.PrimFunc, dict]:
    """Schedule an unscheduled kernel: from the database, by tuning, or with the default plan.

    Parameters
    ----------
    func : tirx.PrimFunc
        Unscheduled kernel (blocks ``acc``, ``out``, optionally ``pad``).
    plan : TilePlan
        The planner's default plan.
    kind : str
        Prefix of the schedule tag (e.g. ``"nhwc_direct"``).
    target : tvm.target.Target
        Target the schedule is for (records of other targets are ignored).
    acc_budget : tuple of int
        Accumulator vectors per register block with 1..4 channel vectors on the target (see
        ``isa.CpuModel.acc_budget``).
    database : str, os.PathLike or ms.database.Database, optional
        Tuning records (directory of a JSON database, created if missing).
    tune_trials : int
        When the database has no usable record of this workload (or there is no database) and
        ``tune_trials > 0``: tune now with this many measured candidates and commit the result.
    seed : int
        Seed of the search.

    Returns
    -------
    func : tirx.PrimFunc
        Scheduled kernel (kernel attributes attached).
    info : dict
        ``schedule`` tag, ``schedule_source`` (``"default"``, ``"database"`` or ``"tuned"``)
        and, unless default, ``tuning`` (:meth:`TuneReport.as_dict`).
    """
    if not isinstance(tune_trials, int | np.integer) or tune_trials < 0:
        raise ValueError(f"tune_trials must be an int >= 0, got {tune_trials!r}")
    if (database is None and not tune_trials) or plan.pairs:
        # 2 x 2 blocks (Arm usmmla) need even position tiles, which the tuning space does not
        # constrain: they keep the planner's schedule.
        return _default_schedule(func, plan, kind)
    from tvm.s_tir import meta_schedule as ms

    db = open_database(database) if database is not None else ms.database.MemoryDatabase()
    mod = workload_module(func)
    space = TileSpace.of(func, plan, acc_budget)
    source, report = "database", None
    records = _usable_records(db, mod, target)
    if not records and tune_trials:
        source, report = "tuned", _tune(mod, space, target, int(tune_trials), db, seed, kind)
        records = _usable_records(db, mod, target)
    if not records:
        return _default_schedule(func, plan, kind)
    best, sch = records[0]
    if report is None:
        default = next((r for r, _ in records if space.is_default(r.trace)), None)
        report = TuneReport(
            kernel=plan.describe(kind),
            source=source,
            chosen=space.describe(best.trace, kind),
            default_ms=None if default is None else _mean_ms(default),
            best_ms=_mean_ms(best),
        )
    info = {
        "schedule": space.describe(best.trace, kind),
        "schedule_source": source,
        "tuning": report.as_dict(),
    }
    return finalize(sch.mod["main"]), info


def _usable_records(database, mod: tvm.IRModule, target) -> list:
    """(record, replayed schedule) of every record that replays, best first.

    A record whose trace no longer replays (written by another version of the template) is
    skipped with a warning instead of failing the build.
    """
    out = []
    for rec in workload_records(database, mod, target):
        try:
            out.append((rec, _replay(mod, rec.trace)))
        except Exception as err:  # noqa: BLE001 - TVM reports replay errors with several types
            warnings.warn(
                f"skipping a tuning record that does not replay on this kernel: {err}",
                RuntimeWarning,
                stacklevel=3,
            )
    return out


def tune_kernels(build_fns, database, trials: int) -> list[TuneReport]:
    """Tune several kernels into one database and report default vs tuned times.

    Parameters
    ----------
    build_fns : iterable of callable
        Each ``build(database=..., tune_trials=...)`` returns a
        :class:`~aiq_tvm.targets.x86.Kernel` (e.g. a ``functools.partial`` of
        :func:`~aiq_tvm.targets.x86.conv2d_kernel`).
    database : str, os.PathLike or ms.database.Database
        Where records are read from and committed to.
    trials : int
        Measured candidates per workload without records.

    Returns
    -------
    list of TuneReport
        One per kernel (``source == "database"`` when it was already tuned).
    """
    if trials < 1:
        raise ValueError(f"tune_kernels needs trials >= 1, got {trials}")
    reports = []
    for build in build_fns:
        k = build(database=database, tune_trials=trials)
        reports.append(TuneReport(**k.info["tuning"]))
    return reports
