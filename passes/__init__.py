"""Relax passes of aiq_tvm (shipped as ``aiq_tvm.passes``).

Insert them into your own pipeline (``mod`` with a static batch: kernels are compiled for
one shape, ``aiq_tvm.specialize_batch(mod, n)`` fixes an imported module's batch)::

    tvm.compile(mod, target, relax_pipeline=tvm.transform.Sequential([
        aiq_tvm.passes.AnnotatePrecision(plan),
        relax.transform.BindParams("main", params), relax.transform.FoldConstant(),
        aiq_tvm.passes.QuantizeAnnotated(calibration),
        relax.get_pipeline("default")]))

or take the whole AIQ pipeline: ``relax.get_pipeline("aiq", plan=..., calibration=...,
params=...)``.
"""

from ._layers import LAYER_OPS, LayerInfo, is_layer_function, parse_layer
from .annotate_precision import (
    AnnotatePrecision,
    LayerEntry,
    LayerReaders,
    binding_name_hints,
    layer_consumers,
    layer_readers,
    layer_table,
)
from .batched_matmul_to_dense import BatchedMatmulToDense
from .cancel_transposes import CancelTransposes
from .canonicalize_clip import CanonicalizeClip
from .expose_layer_inputs import ExposeLayerInputs
from .fills_to_scalars import FillsToScalars
from .fold_host_constants import FoldHostConstants
from .fuse_quantize_into_glue import FuseQuantizeIntoGlue
from .fuse_transpose_into_pad import FuseTransposeIntoPad
from .fuse_transpose_quantize import FuseTransposeQuantize
from .legalize_scans import LegalizeScans
from .lift_weights import LiftWeights
from .limit_vector_width import LimitVectorWidth
from .micro_batch import MICRO_FUNCTION, MicroBatch, inline_micro_batches
from .pad_matmul_columns import PadMatmulColumns
from .quantize_annotated import QuantizeAnnotated
from .residual_in_place import ResidualInPlace
from .schedule_glue import ScheduleGlue
from .select_precision_at_runtime import SELECT_PARAM, SelectPrecisionAtRuntime, select_vector
from .separable_resize import SeparableResize
from .split_at_layers import SplitAtLayers, segment_name
from .split_large_means import SplitLargeMeans
from .stack_small_buffers import StackSmallBuffers
from .vectorizable_group_norm import VectorizableGroupNorm
from .vectorizable_layer_norm import VectorizableLayerNorm
from .vectorizable_math import VectorizableMath
from .vectorizable_softmax import VectorizableSoftmax

__all__ = [
    "AnnotatePrecision",
    "BatchedMatmulToDense",
    "QuantizeAnnotated",
    "SelectPrecisionAtRuntime",
    "CancelTransposes",
    "ResidualInPlace",
    "CanonicalizeClip",
    "ExposeLayerInputs",
    "FillsToScalars",
    "ScheduleGlue",
    "SplitAtLayers",
    "segment_name",
    "SplitLargeMeans",
    "StackSmallBuffers",
    "VectorizableMath",
    "VectorizableSoftmax",
    "VectorizableLayerNorm",
    "VectorizableGroupNorm",
    "PadMatmulColumns",
    "LegalizeScans",
    "SeparableResize",
    "LimitVectorWidth",
    "LiftWeights",
    "MicroBatch",
    "MICRO_FUNCTION",
    "inline_micro_batches",
    "FoldHostConstants",
    "FuseQuantizeIntoGlue",
    "FuseTransposeQuantize",
    "FuseTransposeIntoPad",
    "layer_table",
    "binding_name_hints",
    "layer_consumers",
    "LayerReaders",
    "layer_readers",
    "LayerEntry",
    "LayerInfo",
    "LAYER_OPS",
    "is_layer_function",
    "parse_layer",
    "select_vector",
    "SELECT_PARAM",
]
