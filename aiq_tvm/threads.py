"""Thread-pool settings of our own benchmark entry points.  Pure Python.

TVM pins its pool workers to cores by default (``TVM_BIND_THREADS=1``).  On our shared 2-vCPU
VM a process then often ran batch-1 models ~1.5x slower for its whole life; unpinned it did so
far less often (docs/threading.md, scripts/check_thread_binding.py).  ``import aiq_tvm``
changes nothing; the entry points that time things (``aiq-tvm run``, ``scripts/bench_*.py``)
call :func:`unpin_tvm_threads` before TVM starts its pool.
"""

from __future__ import annotations

import os

__all__ = ["unpin_tvm_threads"]


def unpin_tvm_threads() -> str:
    """Set ``TVM_BIND_THREADS=0`` unless the user set it; return the value in effect.

    TVM reads it when it starts its thread pool (the first parallel kernel), so call this
    before running anything.
    """
    return os.environ.setdefault("TVM_BIND_THREADS", "0")
