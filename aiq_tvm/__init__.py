"""aiq_tvm: Arithmetic-Intensity-Aware Quantization (AIQ) as a TVM Relax compiler plugin.

>>> mod, params = aiq_tvm.from_torch(model, example_input)
>>> res = aiq_tvm.build(mod, target="llvm", params=params, calib_data=calib,
...                     val_data=(x_val, y_val), lam=0.9, search="greedy")
>>> res.plan, res.report, res.benchmark(batch_size=1)
"""

from . import pipeline as _pipeline  # registers relax.get_pipeline("aiq")
from .build import BuildResult, build
from .calibrate import Calibration
from .cost import CostModel, LayerCost
from .frontend import from_torch, specialize_batch
from .pipeline import aiq_pipeline
from .plan import Plan
from .report import Report
from .schemes import PRECISIONS, PrecisionScheme, get_precision
from .search import SEARCH_METHODS, SearchResult, run_search

__version__ = "0.1.0"

__all__ = [
    "build",
    "BuildResult",
    "from_torch",
    "specialize_batch",
    "Plan",
    "Calibration",
    "CostModel",
    "LayerCost",
    "Report",
    "PRECISIONS",
    "PrecisionScheme",
    "get_precision",
    "SEARCH_METHODS",
    "SearchResult",
    "run_search",
    "aiq_pipeline",
]
del _pipeline
