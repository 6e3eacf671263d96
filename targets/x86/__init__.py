"""The kernel library: scheduled TIR kernels for every precision, on every x86 ISA level and
on AArch64.

Vector width, register budget and the int8 dot-product instruction (AVX-512 VNNI / AVX-VNNI
``vpdpbusd``, AVX-512BW / AVX2 ``vpmaddubsw``; on AArch64 ``usmmla`` / ``usdot``,
``sdot`` or ``smull``, registered by :mod:`aiq_tvm.targets.arm.neon`) come from the target's
capabilities through the tables in :mod:`~aiq_tvm.targets.x86.isa`.
"""

from .common import ConvSpec, DenseSpec, Kernel, UnsupportedLayer, WeightFormat
from .conv2d import check_supported, conv2d_cycles, conv2d_kernel
from .dense import dense_cycles, dense_kernel
from .isa import (
    DOT_FAMILIES,
    KERNEL_ISAS,
    CpuModel,
    DotFamily,
    KernelIsa,
    cpu_model,
    register_dot_family,
    register_isa,
)
from .quantize import QUANTIZE_ATTR, QUANTIZE_AXES_ATTR, quantize_kernel
from .sparse_taps import TapPiece, layer_tap_pieces, tap_pieces
from .tune import TuneReport, tune_kernels

# The AArch64 int8 dot families (usmmla / usdot, sdot, smull) register themselves in the
# tables above.
from ..arm import neon as _neon  # noqa: E402, F401  isort: skip

__all__ = [
    "ConvSpec",
    "CpuModel",
    "DOT_FAMILIES",
    "DenseSpec",
    "DotFamily",
    "KERNEL_ISAS",
    "Kernel",
    "KernelIsa",
    "QUANTIZE_ATTR",
    "QUANTIZE_AXES_ATTR",
    "TapPiece",
    "TuneReport",
    "UnsupportedLayer",
    "WeightFormat",
    "check_supported",
    "conv2d_cycles",
    "conv2d_kernel",
    "cpu_model",
    "dense_cycles",
    "dense_kernel",
    "layer_tap_pieces",
    "quantize_kernel",
    "register_dot_family",
    "register_isa",
    "tap_pieces",
    "tune_kernels",
]
