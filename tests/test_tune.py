"""Meta-schedule tuning of the x86 kernels from the library's schedule template."""

from __future__ import annotations

import itertools
import os
import random
import time

import numpy as np
import pytest

os.environ.setdefault("TVM_NUM_THREADS", "2")

import tvm  # noqa: E402
import tvm_ffi  # noqa: E402
from tvm import s_tir  # noqa: E402
from tvm.s_tir import meta_schedule as ms  # noqa: E402

from aiq_tvm import quant  # noqa: E402
from aiq_tvm.quant import ActQParams  # noqa: E402
from aiq_tvm.targets import capabilities  # noqa: E402
from aiq_tvm.targets.x86 import (  # noqa: E402
    ConvSpec,
    DenseSpec,
    conv2d_kernel,
    dense_kernel,
    tune,
    tune_kernels,
)
from isa import BEST_X86  # noqa: E402

TARGET = tvm.target.Target(BEST_X86)
TRIALS = 8


def _run(kernel, x) -> np.ndarray:
    ex = tvm.compile(tvm.IRModule({"main": kernel.prim_func}), TARGET)
    args = [tvm.runtime.tensor(x)] + [tvm.runtime.tensor(c) for c in kernel.consts]
    y = tvm.runtime.tensor(np.zeros(kernel.out_shape, kernel.out_dtype))
    ex.mod["main"](*args, y)
    return y.numpy()


def _space_of(build):
    """(unscheduled func, TileSpace, default kernel) of a kernel built by ``build(**kw)``."""
    raw = build(schedule=False)
    space = tune.TileSpace.of(raw.prim_func, raw.plan, raw.info["acc_budget"])
    return raw.prim_func, space, build()


QP = ActQParams.from_range(-1.0, 2.0)
RNG = np.random.default_rng(0)
W_CONV = RNG.standard_normal((48, 16, 3, 3)).astype(np.float32)
W_PW = RNG.standard_normal((48, 16, 1, 1)).astype(np.float32)
W_DENSE = RNG.standard_normal((10, 37)).astype(np.float32)

SPACE_CASES = {
    "conv3x3_padded_int8": lambda **kw: conv2d_kernel(
        ConvSpec(2, 8, 8, 16, 48, 3, 3, padding=1), "int8", W_CONV, None, act_qparams=QP,
        target=BEST_X86, **kw,
    ),
    "pointwise_fp32": lambda **kw: conv2d_kernel(
        ConvSpec(2, 8, 8, 16, 48, 1, 1), "fp32", W_PW, None, target=BEST_X86, **kw
    ),
    "depthwise_int4": lambda **kw: conv2d_kernel(
        ConvSpec(1, 9, 9, 32, 32, 3, 3, stride=2, padding=1, groups=32), "int4",
        W_CONV[:32, :1], None, act_qparams=QP, target=BEST_X86, **kw,
    ),
    "dense_w4": lambda **kw: dense_kernel(
        DenseSpec(3, 37, 10), "w4", W_DENSE, None, target=BEST_X86, **kw
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(SPACE_CASES))
def test_design_space_replays_with_any_decisions(name):
    """Every structure replays with any decisions (what evolutionary search does), and the
    default structure with default decisions is exactly the default kernel."""
    func, space, default = _space_of(SPACE_CASES[name])
    mod = tune.workload_module(func)
    sch = s_tir.Schedule(mod)
    space.apply(sch, space.structures[0])
    assert tvm_ffi.structural_equal(tune.finalize(sch.mod["main"]), default.prim_func)
    assert space.is_default(sch.trace)
    assert space.describe(sch.trace, "k") == space.plan.describe("k")
    rng = random.Random(0)
    cands = [*space.tile_cands, space.vector_cands]
    combos = list(itertools.product(*[range(len(c)) for c in cands]))
    for st in space.structures:
        base = s_tir.Schedule(mod)
        space.apply(base, st)
        samples = tune._samples(base.trace)
        assert len(samples) == space.n_samples
        for combo in rng.sample(combos, min(4, len(combos))):
            trace = base.trace
            for inst, d in zip(samples, combo, strict=True):
                trace = trace.with_decision(inst, d, True)
            replayed = s_tir.Schedule(mod)
            trace.apply_to_schedule(replayed, remove_postproc=True)
            tiles, vectors = space.decisions(replayed.trace)
            assert tiles == tuple(c[d] for c, d in zip(cands, combo[:-1], strict=False))
            assert vectors == cands[-1][combo[-1]]


@pytest.mark.parametrize("name", ["pointwise_fp32", "dense_w4"])
def test_schedule_choice_does_not_change_float_results(name):
    """Every schedule of the template accumulates each output over the same reduction order,
    so tuned and default kernels (and a tuned fused-uint8 kernel vs the default float one the
    precision search measured) agree bit for bit, float accumulation included."""
    func, space, default = _space_of(SPACE_CASES[name])
    mod = tune.workload_module(func)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 8, 8, 16) if name == "pointwise_fp32" else (3, 37))
    x = x.astype(np.float32)
    expect = _run(default, x)
    cands = [*space.tile_cands, space.vector_cands]
    variants = [
        (st, combo)
        for st in space.structures
        for combo in itertools.product(*[range(len(c)) for c in cands])
        if space.valid([c[d] for c, d in zip(cands[:-1], combo[:-1], strict=True)],
                       cands[-1][combo[-1]])
    ]  # fmt: skip
    assert len(variants) >= 2
    for st, combo in random.Random(2).sample(variants, min(3, len(variants))):
        sch = s_tir.Schedule(mod)
        space.apply(sch, st)
        trace = sch.trace
        for inst, d in zip(tune._samples(trace), combo, strict=True):
            trace = trace.with_decision(inst, d, True)
        if space.is_default(trace):
            continue
        variant = tune.finalize(tune._replay(mod, trace).mod["main"])
        assert not tvm_ffi.structural_equal(variant, default.prim_func)
        k = type(default)(variant, default.consts, default.in_dtype, default.out_shape,
                          default.out_dtype)  # fmt: skip
        np.testing.assert_array_equal(_run(k, x), expect)


def test_search_components_respect_the_register_budget():
    func, space, _ = _space_of(SPACE_CASES["conv3x3_padded_int8"])
    mod = tune.workload_module(func)
    check_cls, mutate_cls = tune._search_classes()
    check, mutate = check_cls(space), mutate_cls(space, 0)
    sch = s_tir.Schedule(mod)
    space.apply(sch, space.structures[0])
    assert check.apply(sch)
    trace, seen = sch.trace, set()
    for _ in range(20):
        trace = mutate.apply(trace)
        assert trace is not None
        tiles, vectors = space.decisions(trace)
        assert space.valid(tiles, vectors)
        seen.add((tiles, vectors))
    assert len(seen) > 3
    # An over-budget block (the largest factor everywhere) is rejected by the postprocessor.
    trace = sch.trace
    for inst, cands in zip(tune._samples(trace), space.tile_cands, strict=False):
        trace = trace.with_decision(inst, len(cands) - 1, True)
    over = s_tir.Schedule(mod)
    trace.apply_to_schedule(over, remove_postproc=True)
    assert not space.valid(*space.decisions(over.trace))
    assert not check.apply(over)


def test_tune_commits_and_database_reuses(tmp_path):
    """Tuning writes a JSON database holding the default and the confirmed tuned records; the
    best record is never slower than the default's record; a second build with the database
    and no trials does not tune and returns exactly the best record's schedule; the tuned
    kernel computes exactly what the default one does."""
    spec = ConvSpec(2, 8, 8, 16, 16, 3, 3, padding=1)
    rng = np.random.default_rng(3)
    w = rng.standard_normal(spec.weight_shape).astype(np.float32)
    b = rng.standard_normal(spec.O).astype(np.float32)
    x = rng.standard_normal(spec.in_shape).astype(np.float32)
    qp = ActQParams.from_range(float(x.min()), float(x.max()))
    db_dir = str(tmp_path / "db")

    def build(**kw):
        return conv2d_kernel(spec, "int8", w, b, act="relu", act_qparams=qp, target=BEST_X86, **kw)

    tuned = build(database=db_dir, tune_trials=TRIALS)
    assert tuned.info["schedule_source"] == "tuned"
    report = tuned.info["tuning"]
    assert report["source"] == "tuned" and 0 < report["trials"] <= TRIALS
    for f in ("database_workload.json", "database_tuning_record.json"):
        assert os.path.getsize(os.path.join(db_dir, f)) > 0

    # What is on disk (a fresh database object, not the cached one).
    db = ms.database.JSONDatabase(work_dir=db_dir)
    func, space, default = _space_of(build)
    mod = tune.workload_module(func)
    records = tune.workload_records(db, mod, TARGET)
    assert 1 <= len(records) <= 1 + tune.TOP_K
    defaults = [r for r in records if space.is_default(r.trace)]
    assert len(defaults) == 1
    default_ms = tune._mean_ms(defaults[0])
    # Selection: tuned records are only kept when confirmed faster than the default.
    for r in records:
        if r is not defaults[0]:
            assert tune._mean_ms(r) < default_ms * (1 - tune.CONFIRM_MARGIN)
    best = records[0]
    assert tune._mean_ms(best) <= default_ms
    assert report["best_ms"] == pytest.approx(tune._mean_ms(best))
    assert report["default_ms"] == pytest.approx(tune._mean_ms(defaults[0]))
    assert report["best_ms"] <= report["default_ms"]
    best_func = tune.finalize(tune._replay(mod, best.trace).mod["main"])
    assert tvm_ffi.structural_equal(tuned.prim_func, best_func)

    # Reuse: no tuning, same schedule, also for another layer of the same shape.
    t0 = time.perf_counter()
    again = build(database=db_dir)
    assert time.perf_counter() - t0 < 5.0
    assert again.info["schedule_source"] == "database"
    assert again.info["tuning"]["trials"] == 0
    assert tvm_ffi.structural_equal(again.prim_func, tuned.prim_func)
    other = conv2d_kernel(spec, "int8", -w, b + 1, act="relu", act_qparams=qp, target=BEST_X86,
                          database=db_dir)  # fmt: skip
    assert other.info["schedule_source"] == "database"
    assert default.info["schedule_source"] == "default"
    (rep,) = tune_kernels([build], db_dir, trials=TRIALS)
    assert rep.source == "database" and rep.best_ms == pytest.approx(report["best_ms"])
    assert rep.speedup >= 1.0

    # Numerics: the int accumulation is exact, so tuned == default bit for bit.
    xq = quant.quantize_act(x, qp)
    y_tuned, y_default = _run(tuned, xq), _run(default, xq)
    np.testing.assert_array_equal(y_tuned, y_default)
    ref = quant.ref_conv2d(xq, w, b, "int8", padding=spec.padding, act="relu", act_qparams=qp,
                           int8_qmax=capabilities(BEST_X86).int8_weight_qmax)
    np.testing.assert_allclose(y_tuned, ref.y, rtol=1e-5, atol=1e-6 * np.abs(ref.y).max())


def test_without_database_or_trials_is_default():
    k = SPACE_CASES["pointwise_fp32"]()
    assert k.info["schedule_source"] == "default"
    assert "tuning" not in k.info
    with pytest.raises(ValueError, match="tune_trials"):
        SPACE_CASES["pointwise_fp32"](tune_trials=-1)
    with pytest.raises(TypeError, match="database"):
        SPACE_CASES["pointwise_fp32"](database=3)


def test_empty_database_without_trials_is_default(tmp_path):
    k = SPACE_CASES["dense_w4"](database=str(tmp_path / "db"))
    assert k.info["schedule_source"] == "default"
    assert tvm_ffi.structural_equal(k.prim_func, SPACE_CASES["dense_w4"]().prim_func)


def test_tuning_tolerates_unnamed_log_handlers(tmp_path):
    """meta-schedule's ``tune_tir`` re-configures its logger by handler name; an unnamed handler
    a user (or pytest's log capture) attached must neither break tuning nor be lost."""
    import logging

    lg = logging.getLogger("tvm.s_tir.meta_schedule")
    handler = logging.Handler()
    assert handler.get_name() is None
    lg.addHandler(handler)
    try:
        k = SPACE_CASES["dense_w4"](database=str(tmp_path / "db"), tune_trials=4)
        assert k.info["tuning"]["trials"] > 0
        assert handler in lg.handlers
        assert lg.level == logging.NOTSET
    finally:
        lg.removeHandler(handler)
