"""Fixed-size batches over a sample array, the last one zero-padded.  Pure numpy.

Compiled modules take a static batch size; calibration and the accuracy runs feed any number
of samples through them with :func:`padded_batches` and keep only the real rows.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["padded_batches"]


def padded_batches(x: np.ndarray, batch: int, repeat: bool = False
                   ) -> Iterator[tuple[np.ndarray, int]]:
    """Yield ``(chunk, real)``: C-contiguous chunks of exactly ``batch`` rows, of which the
    first ``real`` are samples of ``x``; the rest are zeros, or with ``repeat`` copies of the
    chunk's samples (so every row of the batch is real data)."""
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        real = len(chunk)
        if real < batch:
            if repeat:
                pad = np.resize(chunk, (batch - real,) + chunk.shape[1:])
            else:
                pad = np.zeros((batch - real,) + chunk.shape[1:], chunk.dtype)
            chunk = np.concatenate([chunk, pad])
        yield np.ascontiguousarray(chunk), real
