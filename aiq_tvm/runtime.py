"""Running compiled modules on this machine: which target runs here, batched runs, timing.

A build has a *deploy target* (what the user asked for) and a *run target*: the deploy
target when this machine executes its code, else the host target (:func:`run_target`).
Calibration, the search's accuracy runs and :meth:`BuildResult.run` use the run target with
the deploy target's numerics; timing needs the deploy target itself
(:func:`require_host_runnable`).
"""

from __future__ import annotations

import numpy as np
import tvm

from .batching import padded_batches
from .targets import capabilities, host_target
from .targets.capabilities import host_arch

__all__ = ["run_target", "require_host_runnable", "run_batches", "accuracy", "time_main"]


def run_target(deploy: tvm.target.Target) -> tvm.target.Target:
    """The target accuracy runs compile for: ``deploy`` if this machine runs it, else the
    host."""
    if capabilities(deploy).host_runnable:
        return deploy
    return tvm.target.Target(host_target())


def runs_here(target: tvm.target.Target) -> bool:
    """Whether this machine executes code built for ``target``."""
    return capabilities(target).host_runnable


def require_host_runnable(target: tvm.target.Target, what: str) -> None:
    """Raise a clear error when this machine cannot execute code built for ``target``."""
    caps = capabilities(target)
    if caps.host_runnable:
        return
    why = (f"this machine lacks {', '.join(caps.missing_on_host)}" if caps.missing_on_host
           else f"this machine is {host_arch()}, the target {caps.arch}")
    raise RuntimeError(
        f"cannot {what}: this machine cannot execute code built for {target} ({caps.isa}; "
        f"{why}). Export it with BuildResult.export_library(path, cc=...) (a cross "
        "compiler for the target, e.g. cc='aarch64-linux-gnu-g++') and run it there "
        "(aiq_tvm.load(path) loads the library and its weights file); "
        "BuildResult.run/evaluate already run here with the deploy target's numerics")


def run_batches(fn, x: np.ndarray, batch: int, dev):
    """``fn`` over ``x`` in batches of exactly ``batch`` rows (last one zero-padded): one
    array, or a tuple of arrays for a model with several outputs."""
    outs = [_real_rows(fn(tvm.runtime.tensor(chunk, dev)), real)
            for chunk, real in padded_batches(np.asarray(x, np.float32), batch)]
    if isinstance(outs[0], tuple):
        return tuple(np.concatenate(parts) for parts in zip(*outs, strict=True))
    return np.concatenate(outs)


def _real_rows(out, real: int):
    """The first ``real`` rows of a VM result: a tensor, or a tuple of them (nested tuples
    are flattened in order)."""
    if hasattr(out, "numpy"):
        return out.numpy()[:real]
    flat = []
    for item in out:
        part = _real_rows(item, real)
        flat.extend(part if isinstance(part, tuple) else (part,))
    return tuple(flat)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy."""
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def time_main(vm, x: np.ndarray, repeat: int = 20, min_repeat_ms: int = 100, dev=None) -> dict:
    """Median, p10 and p90 milliseconds of ``vm["main"](x)`` (TVM's ``time_evaluator``) on
    ``dev`` (default this machine's CPU; an RPC session's device times it there)."""
    dev = tvm.cpu() if dev is None else dev
    arg = tvm.runtime.tensor(np.ascontiguousarray(x, np.float32), dev)
    vm["main"](arg)  # warm up
    ev = vm.time_evaluator("main", dev, number=1, repeat=repeat, min_repeat_ms=min_repeat_ms)
    res = np.array(ev(arg).results) * 1e3
    med = float(np.median(res))
    return {"batch_size": len(x), "median_ms": med,
            "p10_ms": float(np.percentile(res, 10)), "p90_ms": float(np.percentile(res, 90)),
            "images_per_s": len(x) / med * 1e3}
