"""x86 (AVX-512 / AVX512-VNNI) kernel library: scheduled TIR kernels for every precision."""

from .common import ConvSpec, DenseSpec, Kernel, UnsupportedLayer, has_vnni
from .conv2d import check_supported, conv2d_kernel
from .dense import dense_kernel
from .quantize import quantize_kernel
from .tune import TuneReport, tune_kernels
from .vnni import VNNI_U8I4, VNNI_U8I8

__all__ = [
    "ConvSpec",
    "DenseSpec",
    "Kernel",
    "TuneReport",
    "UnsupportedLayer",
    "VNNI_U8I4",
    "VNNI_U8I8",
    "check_supported",
    "conv2d_kernel",
    "dense_kernel",
    "has_vnni",
    "quantize_kernel",
    "tune_kernels",
]
