"""How much of the last-level cache (LLC) this process can really use: a pointer-chase probe.

sysfs lists the LLC a core shares, and on a virtual machine that is the whole host's: the
Xeon guest of this project's benchmarks lists 480 MiB, of which its 2 vCPUs hold far less
(other guests, cache partitioning). A model sized on the listed figure believes every batch's
activations stay cached (``aiq_tvm.microbatch``, ``"auto"``), while MobileNetV2 FP32 at batch
8 ran 1.17-1.18x faster there in calls of 2 images (docs/performance_224.md, "Session 29").

The probe follows a random cyclic chain of one pointer per cache line through a buffer of
``W`` bytes, so every load waits for the one before it: its time per load is the latency of
wherever the chain's lines live. Plotted over ``W`` it has a plateau where the chain fits the
LLC and another, several times higher, in memory. The **usable LLC** is the working set a
quarter of the way up that step (:func:`usable_llc`, interpolated on a log scale of sizes):
beyond it a growing share of the loads goes to memory. The buffers are TVM tensors, allocated
like a model's activations (same allocator, same pages), and the chain runs in a TIR loop
compiled for the host.

On a shared host the reading is a snapshot: the guest above read 20.3 MiB, then 35-49 MiB
within the hour, and MobileNetV2's best split moved with it (docs/performance_224.md,
"Session 29").

Pure Python apart from :func:`latency_curve`, which runs the probe (a few seconds per size).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["STEP_FRACTION", "MIN_STEP", "probe_sizes", "latency_curve", "usable_llc"]

# Where on the step from the LLC's latency to memory's the usable size is read: a quarter of
# the way, where (the latency being about the mix of the two) about a quarter of the chain's
# loads go to memory.
STEP_FRACTION = 0.25
# Memory's latency must be at least this multiple of the LLC plateau's for the curve to show
# a step at all; a flatter curve (the probe never left the LLC) gives no usable size.
MIN_STEP = 1.5
LINE_BYTES = 64
# Chain loads per timed call and timed calls per size (the median is kept).
STEPS = 1 << 20
CALLS = 5
# The probe goes up to this multiple of the listed LLC (at most MAX_PROBE_BYTES), far enough
# past a real LLC that the last sizes time memory.
BEYOND_LLC = 8
MAX_PROBE_BYTES = 512 << 20
MIN_PROBE_BYTES = 1 << 20


def probe_sizes(llc_bytes: int, max_bytes: int = MAX_PROBE_BYTES) -> list[int]:
    """Working sets the probe times: 1, 1.5, 2, 3, 4, 6, ... MiB up to ``BEYOND_LLC`` times the
    listed LLC ``llc_bytes`` (at most ``max_bytes``)."""
    if llc_bytes <= 0:
        raise ValueError(f"llc_bytes must be positive, got {llc_bytes}")
    top = min(BEYOND_LLC * llc_bytes, max_bytes)
    sizes, size = [], MIN_PROBE_BYTES
    while size <= top:
        sizes += [size] + ([size * 3 // 2] if size * 3 // 2 <= top else [])
        size *= 2
    return sizes


def _chase_func():
    from tvm.script import tirx as T

    @T.prim_func
    def chase(var_buf: T.handle, out: T.Buffer((1,), "int32"), steps: T.int32):
        T.func_attr({"global_symbol": "main", "tir.noalias": True})
        n = T.int32()
        buf = T.match_buffer(var_buf, (n,), "int32")
        # A one-element "global" buffer becomes a stack slot LLVM keeps in a register.
        idx = T.alloc_buffer((1,), "int32")
        idx[0] = 0
        for _ in range(steps):
            idx[0] = buf[idx[0]]
        out[0] = idx[0]

    return chase


def _chain(nbytes: int, rng: np.random.Generator) -> np.ndarray:
    """int32 words of ``nbytes`` holding one random cycle through all cache lines: the
    first word of each line is the index of the next line's first word."""
    per_line = LINE_BYTES // 4
    lines = nbytes // LINE_BYTES
    order = rng.permutation(lines).astype(np.int64) * per_line
    words = np.zeros(lines * per_line, np.int32)
    words[order] = np.roll(order, -1).astype(np.int32)
    return words


def latency_curve(target, sizes: Sequence[int], seed: int = 0) -> dict[int, float]:
    """Nanoseconds per dependent load of the chain at each working set of ``sizes`` (bytes),
    on this machine (``target`` must run here: a host target)."""
    import tvm

    lib = tvm.compile(tvm.IRModule({"main": _chase_func()}), tvm.target.Target(target))
    main, rng, out = lib["main"], np.random.default_rng(seed), {}
    res = tvm.runtime.tensor(np.zeros(1, np.int32))
    for size in sizes:
        buf = tvm.runtime.tensor(_chain(size, rng))
        main(buf, res, size // LINE_BYTES)  # one lap: the chain's lines are where they settle
        times = []
        for _ in range(CALLS):
            t0 = time.perf_counter()
            main(buf, res, STEPS)
            times.append(time.perf_counter() - t0)
        out[size] = float(np.median(times)) / STEPS * 1e9
        del buf
    return out


def usable_llc(curve: Mapping[int, float], l2_bytes: int = 0,
               llc_bytes: int = 0) -> tuple[int, str]:
    """(usable LLC bytes, how it was read) from a latency ``curve`` (bytes -> ns per load).

    The LLC plateau is the lowest latency at working sets of at least twice the core's L2
    (``l2_bytes``; 0: any size), memory's the latency at the largest working set. The usable
    size is where the curve crosses :data:`STEP_FRACTION` of the way between them,
    interpolated between the neighbouring sizes on a log scale, and at most the listed
    ``llc_bytes`` (when known). 0 when the curve shows no step (memory below
    :data:`MIN_STEP` times the plateau): the probe did not leave the cache, so it says
    nothing."""
    sizes = sorted(curve)
    if len(sizes) < 2:
        raise ValueError(f"a latency curve needs at least two sizes, got {len(sizes)}")
    plateau_sizes = [s for s in sizes[:-1] if s >= 2 * l2_bytes] or sizes[:-1]
    plateau = min(curve[s] for s in plateau_sizes)
    memory = curve[sizes[-1]]
    if memory < MIN_STEP * plateau:
        return 0, (f"no step: {memory:.0f} ns at {sizes[-1] >> 20} MiB against the plateau's "
                   f"{plateau:.0f} ns (below {MIN_STEP:g}x)")
    level = plateau + STEP_FRACTION * (memory - plateau)
    # The first size past the level (the last one is: memory > level); the crossing lies
    # between it and the size before, where the curve was still below the level.
    start = sizes.index(plateau_sizes[0])
    above = next(i for i in range(start, len(sizes)) if curve[sizes[i]] > level)
    if above == start:
        size, how = sizes[start], (f"the plateau's first size {sizes[start] >> 20} MiB is "
                                   f"already past {STEP_FRACTION:g} of the step")
    else:
        lo, hi = sizes[above - 1], sizes[above]
        t = (level - curve[lo]) / (curve[hi] - curve[lo])
        size = int(round(lo * math.exp(t * math.log(hi / lo))))
        how = (f"{STEP_FRACTION:g} of the way from the LLC's {plateau:.0f} ns per load to "
               f"memory's {memory:.0f} ns ({sizes[-1] >> 20} MiB)")
    if llc_bytes and size > llc_bytes:
        return llc_bytes, how + f", capped at the listed {llc_bytes >> 20} MiB"
    return size, how
