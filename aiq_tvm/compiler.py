"""Compiling an annotated module: for one plan, or with every candidate behind a switch.

``target`` is the target the code is built for; ``numerics_target`` (default ``target``) the
one whose integer arithmetic the kernels reproduce (a cross build's accuracy runs compile for
the host with the deploy target's numerics, see :mod:`aiq_tvm.runtime`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import tvm
from tvm import relax

from . import pipeline as P
from ._ir import specialize_batch
from .calibrate import Calibration
from .deploy import kernel_calls
from .passes import (
    AnnotatePrecision,
    LiftWeights,
    MicroBatch,
    SelectPrecisionAtRuntime,
    SplitAtLayers,
    inline_micro_batches,
)
from .plan import Plan
from .weights import Weights

__all__ = ["prepare", "compile_module", "compile_plan", "compile_switchable"]


def prepare(mod: tvm.IRModule) -> tvm.IRModule:
    """Annotate every layer fp32 (names, partitioning) without binding anything."""
    if not isinstance(mod, tvm.IRModule):
        raise ValueError(f"build expects a tvm.IRModule, got {type(mod).__name__}")
    names = [gv.name_hint for gv in mod.get_global_vars()]
    if "main" not in names:
        raise ValueError(f"the module has no 'main' function (functions: {names})")
    return AnnotatePrecision("fp32")(mod)


def compile_module(mod: tvm.IRModule, target, passes: list, static_memory: bool = True,
                   unscheduled: list | None = None, after_dataflow: list = (),
                   lift_weights: bool = False, before_lowering: list = ()
                   ) -> relax.VMExecutable:
    """``passes`` then TVM's CPU legalization, our glue schedules and TVM's lowering
    (``unscheduled``: see :func:`aiq_tvm.pipeline.schedule_passes`; ``after_dataflow``: see
    :func:`aiq_tvm.pipeline.lower_passes`; ``before_lowering``: passes between the glue
    schedules and TVM's lowering).

    The executable's ``aiq_kernel_calls`` lists its TIR kernel calls (symbols and argument
    shapes, in program order): what :mod:`aiq_tvm.deploy` times on a remote device.

    ``lift_weights``: ``main``'s final constants become its trailing parameters
    (:class:`~aiq_tvm.passes.LiftWeights`, the last pass before code generation); the
    executable's ``aiq_weights`` (:class:`aiq_tvm.weights.Weights`) holds them, else None.
    """
    lifted: dict = {}
    seq = tvm.transform.Sequential(
        passes + P.legalize_passes(target) + P.schedule_passes(target, unscheduled)
        + list(before_lowering) + P.lower_passes(target, static_memory, after_dataflow)
        + ([LiftWeights(lifted)] if lift_weights else [])
    )
    target = target if isinstance(target, tvm.target.Target) else tvm.target.Target(target)
    with target:  # what tvm.compile(mod, target, relax_pipeline=seq) does, in two steps
        lowered = seq(mod)
    exe = relax.build(lowered, target, relax_pipeline=None, tir_pipeline=P.TIR_PIPELINE)
    exe.aiq_kernel_calls = kernel_calls(lowered)
    exe.aiq_fused_layers = fused_layer_kernels(lowered)
    exe.aiq_weights = None
    if lifted:
        names, tensors = zip(*lifted["weights"], strict=True)
        exe.aiq_weights = Weights(list(names), list(tensors), lifted["manifest"])
    return exe


def fused_layer_kernels(lowered: tvm.IRModule) -> dict[str, int]:
    """``{kernel symbol: layers it computes}`` of the kernels that run more than one layer
    (``FUSED_LAYERS_ATTR``: a depthwise conv fused into its pointwise conv's kernel)."""
    from aiq_tvm.targets.x86.dwpw import FUSED_LAYERS_ATTR

    return {gv.name_hint: int(f.attrs[FUSED_LAYERS_ATTR])
            for gv, f in lowered.functions.items()
            if isinstance(f, tvm.tirx.PrimFunc) and f.attrs is not None
            and FUSED_LAYERS_ATTR in f.attrs}


def compile_plan(annotated: tvm.IRModule, plan: Plan | str, calibration: Calibration | None,
                 params, target, batch_size: int, database=None, tune_trials: int = 0,
                 numerics_target=None, unscheduled: list | None = None,
                 lift_weights: bool = False, micro_batch: int | None = None,
                 fuse_depthwise: bool = True) -> relax.VMExecutable:
    """Compile an annotated module for one plan and batch size (``lift_weights``: see
    :func:`compile_module`; ``fuse_depthwise``: see :class:`~aiq_tvm.passes.QuantizeAnnotated`;
    off, every layer has a kernel of its own, as per-layer timing needs).

    ``micro_batch`` m (dividing ``batch_size``): the layers are compiled at batch m and
    ``main`` runs ``batch_size / m`` of them one after another (:class:`MicroBatch`); it still
    takes and returns ``batch_size`` samples."""
    micro = batch_size if micro_batch is None else int(micro_batch)
    mod = specialize_batch(annotated, micro)
    passes = P.quantize_passes(target, plan, calibration, params, database, tune_trials,
                               numerics_target, fuse_depthwise)
    inline = []
    if micro != batch_size:
        passes.append(MicroBatch(batch_size, micro))
        inline = [inline_micro_batches()]
    return compile_module(mod, target, passes, unscheduled=unscheduled,
                          lift_weights=lift_weights, before_lowering=inline)


def compile_switchable(annotated: tvm.IRModule, params, calibration: Calibration | None,
                       choices: Mapping[str, Sequence[str]], target, batch_size: int,
                       numerics_target=None, cuts: Sequence[str] | None = None
                       ) -> relax.VMExecutable:
    """Every candidate precision of every layer in one executable, chosen per layer at run
    time by ``main``'s ``aiq_select`` input (see :class:`SelectPrecisionAtRuntime`).

    With ``cuts`` (layer names), ``main`` is replaced by the segments
    :class:`~aiq_tvm.passes.SplitAtLayers` cuts before those layers' switches: the same
    kernels, run one segment after another."""
    mod = specialize_batch(annotated, batch_size)
    passes = [*P.bind_params(params), *P.fold_constants(),
              SelectPrecisionAtRuntime(choices, calibration, target=target,
                                       numerics_target=numerics_target),
              *P.layout_passes(target)]  # as in every final build: the search measures its numerics
    split = [] if cuts is None else [SplitAtLayers(cuts)]
    # R.If branches: TVM 0.27's static memory planning corrupts them (see lower_passes).
    return compile_module(mod, target, passes, static_memory=False, after_dataflow=split)
