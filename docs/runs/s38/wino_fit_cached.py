"""Session 38: session 31's fp32 Winograd pick fit (docs/runs/s31/wino_fit.py, its cold-cache
data set) with the library's constants and only the threshold above which a core's part of U
is re-read between passes varied (``winograd.cached_weight_bytes``, 256 KiB before).

    python docs/runs/s38/wino_fit_cached.py > docs/runs/s38/wino_fit_cached.txt
"""
import sys

import tvm

from aiq_tvm.targets import host_target
from aiq_tvm.targets.x86 import cpu_model
from aiq_tvm.targets.x86 import winograd as wino

# wino_fit reads its base constants from the module: the library's threshold on this host.
wino.CACHED_WEIGHT_BYTES = wino.cached_weight_bytes(cpu_model(tvm.target.Target(host_target())))
sys.path.insert(0, "docs/runs/s31")
import wino_fit  # noqa: E402

GRID = {"WEIGHT_STREAM_BYTES_PER_CYCLE": [10.0], "TRANSFORM_CYCLES": [0.5],
        "MEMORY_BYTES_PER_CYCLE": [2.8],
        "CACHED_WEIGHT_BYTES": [64 << 10, 256 << 10, 384 << 10, 512 << 10, 768 << 10, 1 << 20],
        "SUM_STREAM": [0], "REREAD": [2]}
wino_fit.main("docs/runs/s31/wino_dataset.jsonl", GRID)
