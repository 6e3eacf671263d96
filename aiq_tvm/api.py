"""``aiq_tvm.build``: check the settings, then run the build phases (:mod:`aiq_tvm.phases`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import tvm

from . import phases
from .calibrate import DEFAULT_CALIBRATION, Calibration
from .compiler import compile_plan, prepare
from .config import BuildConfig
from .objectives import OBJECTIVES
from .plan import Plan
from .result import BuildResult
from .runtime import accuracy
from .weight_correction import DEFAULT_WEIGHT_CORRECTION

__all__ = ["build", "BuildResult", "BuildConfig", "compile_plan", "prepare", "accuracy",
           "OBJECTIVES"]


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
    calibration: str | Calibration = DEFAULT_CALIBRATION,
    percentile: float = 99.99,
    weight_correction: str = DEFAULT_WEIGHT_CORRECTION,
    batch_size: int | None = None,
    eval_batch_size: int | None = None,
    max_sweeps: int | None = None,
    seed: int = 0,
    tune: bool = False,
    database: str | None = None,
    tune_trials: int = 64,
    verbose: bool = False,
    remote=None,
    output: int | None = None,
    speed_floor: str | None = None,
    speed_floor_timing: str = "model",
    micro_batch: int | str | None = None,
    fuse_depthwise: bool = True,
) -> BuildResult:
    """Quantize a Relax model with AIQ and compile it for a CPU.

    Checks every setting (:class:`~aiq_tvm.config.BuildConfig`, which documents them:
    ``target``, ``plan``, ``lam``, ``search``, ``objective``, ``budget_pp``, ``precisions``,
    ``calibration``, ``percentile``, ``weight_correction``, ``batch_size``,
    ``eval_batch_size``, ``max_sweeps``,
    ``seed``, ``tune``, ``database``, ``tune_trials``, ``verbose``, ``remote``, ``output``,
    ``speed_floor``, ``speed_floor_timing``, ``micro_batch``, ``fuse_depthwise``), then
    runs the phases of :mod:`aiq_tvm.phases`: resolve the model and targets, calibrate, search
    a plan (unless ``plan`` is given), finalize and compile.

    Parameters
    ----------
    mod : tvm.IRModule
        ``main(x, *weights)`` from :func:`aiq_tvm.from_torch`, or any Relax module whose
        ``main`` takes the input first (weights as constants or as parameters in ``params``).
    params : dict, optional
        Weight values for ``main``'s parameters after the input (each checked against the
        shape and dtype ``main`` declares).
    calib_data : numpy.ndarray, optional
        Calibration inputs, prepared like the model's inputs; needed when any layer may use
        8-bit activations.  NaN/Inf, complex values and constant data are errors; data that
        looks like raw 0-255 pixels, or differs from ``val_data``, is warned about and noted
        in the report.
    val_data : (numpy.ndarray, numpy.ndarray), optional
        Validation inputs and integer labels in ``[0, classes)``; needed for search, and
        reported when given.
    """
    config = BuildConfig(
        target=target, plan=plan, lam=lam, search=search, objective=objective,
        budget_pp=budget_pp, precisions=precisions, calibration=calibration,
        percentile=percentile, weight_correction=weight_correction, batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        max_sweeps=max_sweeps, seed=seed, tune=tune, database=database,
        tune_trials=tune_trials, verbose=verbose, remote=remote, output=output,
        speed_floor=speed_floor, speed_floor_timing=speed_floor_timing,
        micro_batch=micro_batch, fuse_depthwise=fuse_depthwise,
    )
    ctx = phases.resolve(mod, params, calib_data, val_data, config)
    calib = phases.calibrate(ctx)
    if config.searches:
        plan, searched = phases.search(ctx, calib)
    else:
        plan, searched = config.plan, None
    return phases.finalize(ctx, plan, calib, searched)
