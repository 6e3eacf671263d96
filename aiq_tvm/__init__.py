"""aiq_tvm: Arithmetic-Intensity-Aware Quantization (AIQ) as a TVM Relax compiler plugin.

>>> mod, params = aiq_tvm.from_torch(model, example_input)
>>> res = aiq_tvm.build(mod, target="llvm", params=params, calib_data=calib,
...                     val_data=(x_val, y_val), lam=0.9, search="greedy")
>>> res.plan, res.report, res.benchmark(batch_size=1)
>>> res.export_library("model.so")        # model.so (code) + model.params (weights)
>>> aiq_tvm.load("model.so")["main"](x)    # in another process

The plan, precision, cost-model and search modules are pure Python and load without TVM;
TVM-facing names (``build``, ``from_torch``, ``passes``, ...) load on first use.  Importing
``aiq_tvm`` after ``tvm`` (or touching any TVM-facing name) registers the Relax pipeline
``relax.get_pipeline("aiq", plan=..., calibration=..., params=...)``.  Importing it changes
no environment variable (our benchmark entry points unpin TVM's threads: aiq_tvm.threads).
"""

import importlib
import sys

from .calibrate import Calibration
from .config import BuildConfig
from .cost import CostModel, LayerCost
from .objectives import OBJECTIVES
from .plan import Plan
from .schemes import PRECISIONS, PrecisionScheme, get_precision
from .search import SEARCH_METHODS, SearchResult, run_search

__version__ = "0.1.0"

_LAZY = {
    "build": ("api", "build"),
    "BuildResult": ("api", "BuildResult"),
    "from_torch": ("frontend", "from_torch"),
    "from_exported": ("frontend", "from_exported"),
    "from_onnx": ("onnx_frontend", "from_onnx"),
    "specialize_batch": ("_ir", "specialize_batch"),
    "aiq_pipeline": ("pipeline", "aiq_pipeline"),
    "Report": ("report", "Report"),
    "load": ("weights", "load"),
}
_LAZY_MODULES = ("passes", "targets", "pipeline", "api", "frontend", "analysis", "datasets",
                 "models", "report", "quant", "phases", "profiling", "compiler", "runtime",
                 "result", "onnx_frontend", "sources", "datasources", "weights", "deploy")

__all__ = [
    "build",
    "BuildConfig",
    "BuildResult",
    "from_torch",
    "from_exported",
    "from_onnx",
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
    "OBJECTIVES",
    "SearchResult",
    "run_search",
    "aiq_pipeline",
    "load",
]


def __getattr__(name):
    if name in _LAZY:
        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{mod}", __name__), attr)
        globals()[name] = value
        return value
    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'aiq_tvm' has no attribute {name!r}")


if "tvm" in sys.modules:  # TVM already paid for: make relax.get_pipeline("aiq") available
    importlib.import_module(".pipeline", __name__)
