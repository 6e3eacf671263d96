"""A reduction over the last axis that ScheduleGlue vectorizes: ``lanes`` partial results per
row along its vectors (the lanes are the vector), then their total. Shared by
VectorizableSoftmax and VectorizableLayerNorm."""

from __future__ import annotations

from tvm import te


def row_reduce(values, rows: list[int], n: int, lanes: int, reducer, name: str) -> te.Tensor:
    """``reducer`` (``te.sum`` / ``te.max``) of ``values(*row, j)`` over ``j < n`` for every
    row, ``n`` a multiple of ``lanes``: stage ``<name>_part`` holds the ``lanes`` partials."""
    step = te.reduce_axis((0, n // lanes), f"{name}_step")
    part = te.compute((*rows, lanes), lambda *i: reducer(
        values(*i[:-1], step * lanes + i[-1]), axis=step), name=f"{name}_part")
    lane = te.reduce_axis((0, lanes), f"{name}_lane")
    return te.compute(rows, lambda *r: reducer(part[(*r, lane)], axis=lane), name=name)
