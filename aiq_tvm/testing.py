"""Helpers shared by the kernel tests and ``scripts/bench_kernels.py``.

Random layer data for a kernel spec, the numpy reference of that spec
(:func:`aiq_tvm.quant.ref_conv2d` / :func:`~aiq_tvm.quant.ref_dense` with the spec's geometry),
and compiling, running and timing one kernel of :mod:`aiq_tvm.targets.x86`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tvm

from .quant import ActQParams, quantize_act, ref_conv2d, ref_dense
from .schemes import get_precision

__all__ = ["layer_data", "reference", "kernel_input", "kernel_args", "compile_prim_func",
           "run_kernel", "kernel_timer", "relative_error"]


def _is_dense(spec) -> bool:
    return not hasattr(spec, "weight_shape")


def layer_data(spec, rng: np.random.Generator, *, residual: bool = False, offset: float = 0.0):
    """Random float32 data of one layer: ``(x, w, b, res, qp)``.

    ``x`` has the kernel's input layout (``[N, K]`` or NHWC ``spec.in_shape``), shifted by
    ``offset`` (off-centre activations exercise the zero point); ``w`` is ``[O, K]`` or OIHW,
    scaled by 1/sqrt(fan-in); ``res`` is an output-shaped shortcut or None; ``qp`` the input's
    min/max uint8 parameters.  Draws in that order from ``rng``.
    """
    if _is_dense(spec):
        x = rng.standard_normal((spec.N, spec.K)) + offset
        w = rng.standard_normal((spec.O, spec.K)) / np.sqrt(spec.K)
        out_shape = (spec.N, spec.O)
    else:
        x = rng.standard_normal(spec.in_shape) + offset
        w = rng.standard_normal(spec.weight_shape) / np.sqrt(np.prod(spec.weight_shape[1:]))
        out_shape = spec.out_shape
    b = rng.standard_normal(w.shape[0])
    res = rng.standard_normal(out_shape).astype(np.float32) if residual else None
    qp = ActQParams.from_range(float(x.min()), float(x.max()))
    f32 = np.float32
    return x.astype(f32), w.astype(f32), b.astype(f32), res, qp


def int8_qmax(spec, target) -> int:
    """Largest 8-bit weight code of a conv/dense spec's kernel on numerics target ``target``
    (``TargetCaps.layer_int8_weight_qmax``: 63 on ``vpmaddubsw`` targets except for
    depthwise convs)."""
    from .targets import capabilities

    depthwise = not _is_dense(spec) and spec.is_depthwise
    return capabilities(target).layer_int8_weight_qmax(depthwise)


def reference(spec, precision: str, x, w, b, *, target=None, **kwargs):
    """The numpy reference (``RefResult``) of a conv/dense spec; ``kwargs`` are the kernel's
    epilogue arguments (``act``, ``act_qparams``, ``residual``, ``out_qparams``). With
    ``target`` (the kernel's numerics target), 8-bit weight codes are that target's
    (``layer_int8_weight_qmax``: 63 where ``vpmaddubsw`` is the int8 dot product, except for
    depthwise convs)."""
    if target is not None:
        kwargs["int8_qmax"] = int8_qmax(spec, target)
    if _is_dense(spec):
        return ref_dense(x, w, b, precision, **kwargs)
    return ref_conv2d(x, w, b, precision, stride=spec.stride, padding=spec.padding,
                      groups=spec.groups, dilation=spec.dilation, **kwargs)


def kernel_input(precision: str, x: np.ndarray, qp: ActQParams) -> np.ndarray:
    """What a kernel of ``precision`` reads: uint8 codes when it quantizes activations."""
    return quantize_act(x, qp) if get_precision(precision).quantizes_activations else x


def kernel_args(kernel, x: np.ndarray, residual: np.ndarray | None = None) -> list:
    """``[x, *consts, (residual), zero output]`` as TVM tensors, in the kernel's order."""
    args = [tvm.runtime.tensor(x)] + [tvm.runtime.tensor(c) for c in kernel.consts]
    if residual is not None:
        args.append(tvm.runtime.tensor(residual))
    return args + [tvm.runtime.tensor(np.zeros(kernel.out_shape, kernel.out_dtype))]


def compile_prim_func(func, target):
    """Compile one PrimFunc as ``main`` for a target (dict or Target), through the TIR
    pipeline builds use (``aiq_tvm.pipeline.TIR_PIPELINE``)."""
    from .pipeline import TIR_PIPELINE

    return tvm.compile(tvm.IRModule({"main": func}), tvm.target.Target(target),
                       tir_pipeline=TIR_PIPELINE)


def glue_pipeline(target, lower: bool = True) -> tvm.transform.Pass:
    """aiq_tvm's legalization and glue schedules (and, with ``lower``, TVM's lowering) for
    ``target``: how a build compiles the operators between layers."""
    from . import pipeline

    passes = pipeline.legalize_passes(target) + pipeline.schedule_passes(target)
    return tvm.transform.Sequential(passes + (pipeline.lower_passes(target) if lower else []))


def run_relax(mod: tvm.IRModule, target, *inputs: np.ndarray) -> np.ndarray:
    """Compile a Relax module through :func:`glue_pipeline` for ``target`` (one this host
    runs) and run ``main`` on ``inputs``."""
    target = tvm.target.Target(target)
    with target:
        lowered = glue_pipeline(target)(mod)
    from .pipeline import TIR_PIPELINE

    exe = tvm.relax.build(lowered, target=target, tir_pipeline=TIR_PIPELINE)
    vm = tvm.relax.VirtualMachine(exe, tvm.cpu())
    return vm["main"](*(tvm.runtime.tensor(x) for x in inputs)).numpy()


def run_kernel(kernel, x: np.ndarray, target, residual: np.ndarray | None = None,
               ex=None) -> np.ndarray:
    """Run a kernel once on ``x`` (compiled here unless ``ex`` is given); return its output."""
    ex = ex if ex is not None else compile_prim_func(kernel.prim_func, target)
    args = kernel_args(kernel, x, residual)
    ex.mod["main"](*args)
    return args[-1].numpy()


def kernel_timer(ex, args: list) -> Callable[[int], float]:
    """``run(number) -> seconds per call`` of a compiled kernel on fixed arguments."""

    def run(number: int) -> float:
        f = ex.mod.time_evaluator("main", tvm.cpu(), number=number, repeat=1)
        return float(f(*args).mean)

    return run


def relative_error(y: np.ndarray, ref: np.ndarray) -> float:
    """max |y - ref| / max |ref|."""
    return float(np.abs(y - ref).max() / max(np.abs(ref).max(), 1e-30))
