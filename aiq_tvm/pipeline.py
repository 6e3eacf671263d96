"""The AIQ compilation pipeline, as per-phase pass lists and a registered Relax pipeline.

Phases (each a function of the target returning a list of passes, like TVM's
``relax/backend/cpu_generic/pipeline.py``):

1. :func:`quantize_passes`: annotate layers with the plan, bind the weights, fold constants,
   lower annotated layers to low-bit x86 kernels, then :func:`layout_passes`: decompose
   leftover batch norms, cancel the layout transposes between layers.
2. :func:`legalize_passes`: float32 exp / sigmoid / SiLU as vectorizable arithmetic, then
   TVM's CPU legalization and fusion for the remaining ops.
3. :func:`schedule_passes`: schedule the fused glue kernels TVM leaves unscheduled, split
   vectorized loops far wider than a register (they make LLVM's code generation crawl).
4. :func:`lower_passes`: TVM's dataflow lowering and VM finalization.
5. The TIR pipeline ``"aiq_tvm"`` (:func:`tir_pipeline`, :data:`TIR_PIPELINE`): TVM's own,
   with small kernel buffers kept on the stack (``StackSmallBuffers``) before host lowering.

``relax.get_pipeline("aiq", plan=..., calibration=..., params=...)`` returns the whole thing
for ``tvm.compile(mod, target, relax_pipeline=..., tir_pipeline=TIR_PIPELINE)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tvm
from tvm import relax
from tvm.relax.backend.cpu_generic import pipeline as cpu_pipeline

from .passes import (
    AnnotatePrecision,
    CancelTransposes,
    FoldHostConstants,
    FuseQuantizeIntoGlue,
    FuseTransposeIntoPad,
    FuseTransposeQuantize,
    LegalizeScans,
    LimitVectorWidth,
    PadMatmulColumns,
    QuantizeAnnotated,
    ResidualInPlace,
    ScheduleGlue,
    SeparableResize,
    SplitLargeMeans,
    StackSmallBuffers,
    VectorizableGroupNorm,
    VectorizableLayerNorm,
    VectorizableMath,
    VectorizableSoftmax,
)
from .targets import current_target

__all__ = [
    "quantize_passes",
    "layout_passes",
    "legalize_passes",
    "schedule_passes",
    "lower_passes",
    "aiq_pipeline",
    "bind_params",
    "fold_constants",
    "tir_pipeline",
    "TIR_PIPELINE",
]

# Name of :func:`tir_pipeline` in TVM's TIR pipeline registry (``tvm.compile(...,
# tir_pipeline=TIR_PIPELINE)``, ``relax.build``, ``tvm.tirx.build(..., pipeline=...)``).
TIR_PIPELINE = "aiq_tvm"


def bind_params(params: Mapping[str, np.ndarray] | None) -> list:
    """Passes that turn weight parameters into constants (empty when ``params`` is None)."""
    if not params:
        return []
    tensors = {k: tvm.runtime.tensor(np.ascontiguousarray(v)) for k, v in params.items()}
    return [relax.transform.BindParams("main", tensors)]


def fold_constants() -> list:
    """Fold what the bound weights feed: layout ops and correctly rounded arithmetic on the
    host first (the same values, and spares ``FoldConstant`` an LLVM build per call), then
    the rest."""
    return [FoldHostConstants(), relax.transform.FoldConstant()]


def quantize_passes(target, plan="fp32", calibration=None, params=None, database=None,
                    tune_trials: int = 0, numerics_target=None,
                    fuse_depthwise: bool = True) -> list:
    """Annotate, bind, fold and lower the layers; ``numerics_target`` (default ``target``) is
    the target whose integer arithmetic the kernels reproduce; ``fuse_depthwise``: see
    :class:`~aiq_tvm.passes.QuantizeAnnotated`."""
    return [
        AnnotatePrecision(plan),
        *bind_params(params),
        *fold_constants(),
        QuantizeAnnotated(calibration, target=target, database=database,
                          tune_trials=tune_trials, numerics_target=numerics_target,
                          fuse_depthwise=fuse_depthwise),
        *layout_passes(target),
    ]


def layout_passes(target=None) -> list:
    """After the layers are lowered: decompose what is left of batch norm and cancel the
    NHWC/NCHW transposes between layer kernels (shared by every AIQ build). ``target``: the
    target of the kernels these passes add (default: the target in scope)."""
    return [
        # Batch norms not folded into a conv (pre-activation ones) become constant scale and
        # shift, which CancelTransposes moves across the NHWC layout. Folded on the host only
        # (see legalize_passes: Relax's FoldConstant would compile our layer kernels).
        relax.transform.DecomposeOpsForInference(),
        FoldHostConstants(),
        CancelTransposes(),
        # What is left is the model input's transpose: quantize it while transposing.
        FuseTransposeQuantize(target),
        # At FP32 the first layer's padded input copy does it.
        FuseTransposeIntoPad(),
        # A quantize after an elementwise op (squeeze-and-excitation scale) fuses into its kernel.
        FuseQuantizeIntoGlue(),
        # Global average pooling over large feature maps sums in float32 one axis at a time.
        SplitLargeMeans(),
    ]


def legalize_passes(target) -> list:
    """TVM's CPU legalization and fusion, with float32 exp / sigmoid / SiLU / log / tanh /
    powers legalized first into kernels LLVM vectorizes (TVM's call libm's scalar ``expf``
    per element), float32 softmax and layer norm over the last axis as vectorized row kernels,
    channels-last group / instance norms with per-channel sums in vector lanes, static
    float32 resizes into two 1-D passes over host-computed index tables, and matmuls between
    activations padded to whole vectors of columns.

    TVM's ``FoldConstant`` between its legalization and fusion is left out: it compiles every
    kernel whose inputs are constants for a generic ``"llvm"`` target, ours too (a layer over a
    constant input: EdgeNeXt's positional encoding), and LLVM aborted the process on their
    vector intrinsics. Constants are folded before the layers are lowered
    (:func:`fold_constants`); a kernel over one runs at run time."""
    tvm_passes = [p for p in cpu_pipeline.legalize_passes(target)
                  if p.info.name != "FoldConstant"]
    return [VectorizableMath(), PadMatmulColumns(target), VectorizableSoftmax(target),
            VectorizableLayerNorm(target), VectorizableGroupNorm(), SeparableResize(),
            LegalizeScans()] + tvm_passes


def schedule_passes(target, unscheduled: list | None = None) -> list:
    """Our glue schedules, then over-wide vector loops split (LLVM's compile time);
    ``unscheduled`` receives ``(function, error)`` for every glue function left with TVM's
    default code."""
    # ConvertSSA after ScheduleGlue: a producer whose value binds variables (the
    # vectorizable math's lets) inlined into two consumers defines each variable twice,
    # which the next schedule (LimitVectorWidth's) rejects as ill-formed.
    return [ScheduleGlue(target, unscheduled=unscheduled), tvm.tirx.transform.ConvertSSA(),
            LimitVectorWidth()]


def lower_passes(target, static_memory: bool = True, after_dataflow: list = ()) -> list:
    """TVM's lowering, with a layer's output written over its dead shortcut
    (:class:`~aiq_tvm.passes.ResidualInPlace`); ``static_memory=False`` drops
    StaticPlanBlockMemory, which in TVM 0.27
    corrupts memory when a function has ``R.If`` branches (crash on the second call).
    ``after_dataflow`` run right after ``ToNonDataflow``, on fused and scheduled kernels."""
    finalize = cpu_pipeline.finalize_passes(target)
    if not static_memory:
        finalize = [p for p in finalize if p.info.name != "StaticPlanBlockMemory"]
    dataflow = cpu_pipeline.dataflow_lower_passes(target)
    cut = 1 + next(i for i, p in enumerate(dataflow) if p.info.name == "ToNonDataflow")
    # Kernel calls are explicit (CallTIRRewrite) and not yet given memory: a layer's output
    # may take its dead shortcut's (shortcuts beyond the target's L2).
    in_place = [ResidualInPlace(target)]
    return dataflow[:cut] + list(after_dataflow) + dataflow[cut:] + in_place + finalize


def aiq_pipeline(plan="fp32", calibration=None, params=None, target=None, database=None,
                 tune_trials: int = 0):
    """The full AIQ pipeline as one pass (registered as ``relax.get_pipeline("aiq")``).

    Parameters
    ----------
    plan : aiq_tvm.Plan, str or dict
        Per-layer precisions.
    calibration : aiq_tvm.Calibration, optional
        Required when the plan uses 8-bit activations.
    params : dict of str to numpy.ndarray, optional
        Weights to bind (as returned by :func:`aiq_tvm.from_torch`).
    target : optional
        Defaults to the target ``tvm.compile`` puts in scope.
    database, tune_trials : optional
        Meta-schedule tuning records for the layer kernels (see QuantizeAnnotated).
    """

    @tvm.transform.module_pass(opt_level=0, name="AIQPipeline")
    def _pipeline(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        tgt = current_target(target)
        with tgt:
            seq = tvm.transform.Sequential(
                quantize_passes(tgt, plan, calibration, params, database, tune_trials)
                + legalize_passes(tgt)
                + schedule_passes(tgt)
                + lower_passes(tgt)
            )
            return seq(mod)

    return _pipeline


def tir_pipeline(**kwargs):
    """TVM's default TIR pipeline (``"s_tir"``) with :class:`StackSmallBuffers` right before
    the host finalization (``LowerTVMBuiltin``): a register block's accumulators of 1 KiB or
    more stay in registers instead of a workspace that each block zeroes and stores into.
    Returns ``(pipeline, finalize_host_passes, finalize_device_passes)`` like TVM's pipeline
    factories; registered as :data:`TIR_PIPELINE`."""
    pipeline, finalize_host, finalize_device = tvm.tirx.get_tir_pipeline("s_tir", **kwargs)

    def finalize_host_passes():
        return tvm.transform.Sequential([StackSmallBuffers(), finalize_host()])

    return pipeline, finalize_host_passes, finalize_device


tvm.tirx.register_tir_pipeline(TIR_PIPELINE, tir_pipeline)

if "aiq" not in relax.pipeline.PIPELINE_MAP:
    relax.register_pipeline("aiq")(aiq_pipeline)
