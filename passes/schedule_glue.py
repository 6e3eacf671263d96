"""ScheduleGlue: give TVM's unscheduled CPU kernels a parallel, vectorizable loop nest.

TVM 0.27's CPU pipeline schedules nothing, so every fused elementwise kernel (residual add +
relu + quantize, pooling, layout copies) runs as one single-threaded loop nest.  For each
PrimFunc not marked ``tirx.is_scheduled``: inline producer blocks into their consumers where
TIR allows it (not a producer smaller than the output, which would be recomputed for every
output point: EfficientNet's squeeze-and-excitation sigmoid of C gates ran once per C x H x W
product, 192 us instead of 40 us at 112 x 112 x 32), then for each remaining block fuse its
spatial loops, split off an inner loop of the target's 32-bit vector lanes
(``capabilities(target).lanes32``) when the extent allows (LLVM vectorizes it) and run the
outer loop in parallel.  Two shapes get their own rule:

* a matmul between two activations (attention) accumulates register tiles of 4 rows x 1-2
  vectors of columns over its whole reduction, its elementwise epilogue in their write-back
  (:class:`~aiq_tvm.passes.PadMatmulColumns` pads ragged columns to whole vectors first);
* a reduction over a channels-last tensor (max/avg pooling, mean over H and W) keeps its
  channel lanes innermost, inside the window loops (instead of a scalar reduction per output
  element), as many lanes as fill a vector of its output's dtype (64 for uint8 on AVX-512);
* a concatenation (an ``if_then_else`` chain on one axis) has that axis partitioned at the
  inputs' boundaries, so no element tests every input (channels-last: inside a parallel
  loop over the pixels, else one loop nest per input);
* a copy whose innermost axis is not a multiple of the lanes runs its rows in parallel with
  that axis serial inside, since lanes across rows compute every index with divisions; when
  that axis is short and the input is contiguous along another output axis (a transpose
  between NCHW and NHWC), the lanes run along that axis instead, the short one unrolled.

A function the rules fail on keeps TVM's default code; the pass warns
(:class:`UnscheduledGlueWarning`, naming the function and the error) and lists it in
``unscheduled`` (the build's report counts them).
"""

from __future__ import annotations

import warnings

import tvm
from tvm import s_tir, tirx

from aiq_tvm.targets import capabilities, current_target

__all__ = ["ScheduleGlue", "UnscheduledGlueWarning", "schedule_glue_func"]

_SCHEDULED = ("tirx.is_scheduled", "tir.is_scheduled")
# The op name differs across TVM versions (tir. / tirx. / prim.): take it from TVM itself.
_IF_THEN_ELSE = tirx.if_then_else(tirx.Var("c", "bool"), 0, 1).op.name
_MIN_PARALLEL = 2048  # below this many iterations a parallel launch costs more than it saves


class UnscheduledGlueWarning(UserWarning):
    """A glue PrimFunc kept TVM's default (single-threaded, scalar) code."""


def _is_scheduled(func: tirx.PrimFunc) -> bool:
    return func.attrs is not None and any(k in func.attrs for k in _SCHEDULED)


def _iter_kinds(sch: s_tir.Schedule, block) -> list[int]:
    return [int(iv.iter_type) for iv in sch.get(block).iter_vars]


def _extent(sch, loop) -> int | None:
    ext = sch.get(loop).extent
    return int(ext) if isinstance(ext, tirx.IntImm) else None


def _schedule_block(sch: s_tir.Schedule, block, lanes: int) -> None:
    loops = sch.get_loops(block)
    if not loops:
        return
    kinds = _iter_kinds(sch, block)
    n_spatial = 0
    for k in kinds:  # leading data-parallel block iters (0 == kDataPar)
        if k != 0:
            break
        n_spatial += 1
    if n_spatial == 0 or len(loops) < n_spatial:
        return
    if _schedule_matmul(sch, block, loops, kinds, n_spatial, lanes):
        return
    if _vectorize_under_reduction(sch, block, loops, kinds, n_spatial, lanes):
        return
    spatial = loops[:n_spatial]
    inner_extent = _extent(sch, spatial[-1])
    if n_spatial == len(kinds) and len(spatial) > 1 and inner_extent is not None \
            and inner_extent % lanes:
        if _lanes_along_rows(sch, block, spatial, lanes):
            return
        # Vector lanes across rows of a ragged innermost axis would each compute indices
        # with divisions: keep that axis as a serial inner loop and run the rows in parallel.
        rows = sch.fuse(*spatial[:-1]) if len(spatial) > 2 else spatial[0]
        if (_extent(sch, rows) or 0) * inner_extent >= _MIN_PARALLEL:
            sch.parallel(rows)
        return
    fused = sch.fuse(*spatial) if len(spatial) > 1 else spatial[0]
    total = _extent(sch, fused)
    if total is None or total < _MIN_PARALLEL:
        return
    if n_spatial == len(kinds) and total % lanes == 0:
        outer, inner = sch.split(fused, [None, lanes])
        sch.parallel(outer)
        sch.vectorize(inner)
    else:
        sch.parallel(fused)


def _lanes_along_rows(sch, block, spatial, lanes: int) -> bool:
    """A transpose whose innermost output axis is short and ragged (the model input from NCHW
    to NHWC: 3 channels; ShuffleNet's NHWC to NCHW: rows of 7 or 14 pixels): vector lanes
    along the output axis its input is contiguous in (the pixels of a channel plane, the
    channels of a pixel), the short axis unrolled around them, so each lane group loads
    contiguous input (the stores are strided); all other axes fused and run in parallel.
    Returns whether it applied.

    Point by point with the short axis serial inside, every element was a scalar load from a
    distant row: 8 x 3 x 224 x 224 float32 to NHWC ran at 12 GB/s in MobileNetV2 (2 threads).
    Applies when the innermost axis has at most ``lanes`` points, and some read's last index
    is another output axis whose extent a part of ``lanes`` (see :func:`_dividing_lanes`)
    divides.
    """
    inner = _extent(sch, spatial[-1])
    if len(spatial) < 3 or inner is None or inner > lanes:
        return False
    node = sch.get(block)
    last = [r.region[-1].min for r in node.reads if r.region]
    axis = next((i for i, iv in enumerate(node.iter_vars[:len(spatial) - 1])
                 if any(_is_var(m, iv.var) for m in last)
                 and _dividing_lanes(_extent(sch, spatial[i]), lanes)), None)
    if axis is None:
        return False
    width = _dividing_lanes(_extent(sch, spatial[axis]), lanes)
    outer, lane = sch.split(spatial[axis], [None, width])
    rows = [outer if i == axis else lp for i, lp in enumerate(spatial[:-1])]
    sch.reorder(*rows, spatial[-1], lane)
    fused = sch.fuse(*rows) if len(rows) > 1 else rows[0]
    sch.unroll(spatial[-1])
    sch.vectorize(lane)
    if (_extent(sch, fused) or 0) * width * inner >= _MIN_PARALLEL:
        sch.parallel(fused)
    return True


def _is_var(expr, var) -> bool:
    return isinstance(expr, tirx.Var) and expr.same_as(var)


def _vectorize_under_reduction(sch, block, loops, kinds, n_spatial: int, lanes: int) -> bool:
    """A reduction over a channels-last tensor (pooling, mean over H and W): vector lanes
    along the innermost spatial axis, inside the reduction loops, parallel over the rest.

    Applies when the block's loops are its spatial iterators then its reduction iterators
    and the innermost spatial extent is a multiple of ``lanes`` or of a part of them down to
    a quarter (24 channels: 8 of 16 lanes); returns whether it did. ShuffleNet's 3 x 3 / 2
    max-pool of 24 channels ran as one scalar reduction per output element instead: 2 GB/s.
    """
    if len(kinds) == n_spatial or len(loops) != len(kinds):
        return False
    if any(k != 2 for k in kinds[n_spatial:]):  # 2 == kCommReduce
        return False
    extent = _extent(sch, loops[n_spatial - 1])
    lanes = _dividing_lanes(extent, lanes)
    if lanes is None:
        return False
    lanes = _dtype_lanes(sch, block, lanes, extent)
    spatial, reduction = loops[:n_spatial], loops[n_spatial:]
    outer, inner = sch.split(spatial[-1], [None, lanes])
    sch.reorder(outer, *reduction, inner)
    fused = sch.fuse(*spatial[:-1], outer) if n_spatial > 1 else outer
    total = _extent(sch, fused)
    if total is not None and total >= _MIN_PARALLEL // lanes:
        sch.parallel(fused)
    # Loop kinds need compact dataflow, so before decompose_reduction splits off the init.
    sch.vectorize(inner)
    init = sch.decompose_reduction(block, reduction[0])
    sch.vectorize(sch.get_loops(init)[-1])
    return True


_LOAD = type(tirx.BufferLoad(tirx.decl_buffer((1,), "float32"), [tirx.IntImm("int32", 0)]))
_MATMUL_ROWS = 4  # output rows per register tile (x 2 vectors of columns: 8 accumulators)


def _matmul_operands(sch, block, n_spatial: int):
    """``(row_read, col_read)`` of a block ``C[.., i, j] += A[.., i, k] * B[.., k, j]`` (TVM's
    ``matmul`` between two activations, e.g. attention's scores), else None: one reduction
    iterator ``k``; ``j`` (innermost output axis) the last index of ``B`` and absent from
    ``A``; ``i`` (the axis before it) in ``A`` and absent from ``B``."""
    node = sch.get(block)
    store = node.body
    if n_spatial < 2 or len(node.iter_vars) != n_spatial + 1 or \
            not isinstance(store, tirx.BufferStore):
        return None
    value = store.value
    if not (isinstance(value, tirx.Add) and isinstance(value.a, _LOAD)
            and value.a.source.same_as(store.buffer) and isinstance(value.b, tirx.Mul)):
        return None
    loads = [value.b.a, value.b.b]
    if not all(isinstance(ld, _LOAD) for ld in loads):
        return None
    i_var, j_var = node.iter_vars[n_spatial - 2].var, node.iter_vars[n_spatial - 1].var
    if not _is_var(store.indices[-1], j_var):
        return None

    def uses(load, var):
        return any(_mentions(ix, var) for ix in load.indices)
    for a, b in (loads, loads[::-1]):
        if _is_var(b.indices[-1], j_var) and not uses(a, j_var) and uses(a, i_var) \
                and not uses(b, i_var):
            return a, b
    return None


def _same_shape(a, b) -> bool:
    return len(a) == len(b) and all(
        isinstance(x, tirx.IntImm) and isinstance(y, tirx.IntImm) and int(x) == int(y)
        for x, y in zip(a, b, strict=True))


def _pointwise_consumer(node, buffer) -> bool:
    """``node`` writes one buffer of ``buffer``'s shape, at its block iterators in order, and
    reads ``buffer`` only there."""
    store = node.body
    if len(node.writes) != 1 or not isinstance(store, tirx.BufferStore) or \
            not _same_shape(store.buffer.shape, buffer.shape):
        return False
    iters = [iv.var for iv in node.iter_vars]

    def at_iters(indices) -> bool:
        return len(indices) == len(iters) and all(
            _is_var(ix, v) for ix, v in zip(indices, iters, strict=True))

    if not at_iters(store.indices):
        return False
    stack = [store.value]
    while stack:
        expr = stack.pop()
        if isinstance(expr, _LOAD) and expr.source.same_as(buffer) and \
                not at_iters(expr.indices):
            return False
        stack += _children(expr)
    return True


def _mentions(expr, var) -> bool:
    stack = [expr]
    while stack:
        node = stack.pop()
        if _is_var(node, var):
            return True
        stack += _children(node)
    return False


def _schedule_matmul(sch, block, loops, kinds, n_spatial: int, lanes: int) -> bool:
    """A matmul between activations (see :func:`_matmul_operands`): register tiles of
    ``_MATMUL_ROWS`` output rows x one or two vectors of columns accumulate in local
    (register) buffers over the whole reduction, each ``B`` vector loaded once per row tile,
    and the elementwise ops fused after the matmul run in the tile's write-back. Under the
    generic reduction rule the accumulator went through memory on every ``k``, and ragged
    columns kept TVM's scalar loops: ViT-B/16's attention scores (12 x 197 x 197 over 64)
    took 7.1 ms, 0.48 ms now with PadMatmulColumns. Returns whether it applied (the column
    extent must take whole vectors: see :class:`~aiq_tvm.passes.PadMatmulColumns`)."""
    if len(loops) != len(kinds) or kinds[n_spatial:] != [2] or \
            _matmul_operands(sch, block, n_spatial) is None:
        return False
    cols = _extent(sch, loops[n_spatial - 1])
    lanes = _dividing_lanes(cols, lanes)
    rows = _extent(sch, loops[n_spatial - 2])
    if lanes is None or rows is None:
        return False
    width = 2 if cols % (2 * lanes) == 0 else 1
    *outer, i_loop, j_loop = loops[:n_spatial]
    k_loop = loops[n_spatial]
    io, ii = sch.split(i_loop, [None, min(_MATMUL_ROWS, rows)])
    jo, jt, jv = sch.split(j_loop, [None, width, lanes])
    sch.reorder(*outer, io, jo, k_loop, ii, jt, jv)
    fused = sch.fuse(*outer, io, jo)
    if (_extent(sch, fused) or 0) >= 2:
        sch.parallel(fused)
    # Loop kinds need compact dataflow: set before decompose_reduction splits off the init.
    sch.vectorize(jv)
    sch.unroll(ii)
    sch.unroll(jt)
    acc = sch.cache_write(block, 0, "local")
    # The elementwise ops fused after the matmul (scale, bias, activation) go into the
    # write-back of each register tile; else the matmul's whole output is a buffer written
    # inside the kernel on every call and read back.
    product = sch.get(block).writes[0].source
    for consumer in sch.get_consumers(acc):
        # Only a consumer over the same points that reads each product point at its own
        # point: TVM also inlines a slice, writing its output at the matmul's (padded)
        # indices, past its end.
        if not _pointwise_consumer(sch.get(consumer), product):
            continue
        try:
            sch.reverse_compute_inline(consumer)
        except s_tir.ScheduleError:
            pass
    sch.reverse_compute_at(acc, fused)
    sch.vectorize(sch.get_loops(acc)[-1])
    init = sch.decompose_reduction(block, k_loop)
    sch.vectorize(sch.get_loops(init)[-1])
    return True


def _dividing_lanes(extent: int | None, lanes: int) -> int | None:
    """``lanes``, halved at most twice (not below 4) until it divides ``extent`` (None if it
    never does)."""
    if extent is None:
        return None
    for part in (lanes, lanes // 2, lanes // 4):
        if part >= 4 and extent % part == 0:
            return part
    return None


# A row padded to whole vectors of the full width costs its vectors times this (the padding
# and the slice that drops it) against the same row in the narrower vectors that divide it
# unpadded. 14 x 14 = 196 columns divide into 4-lane vectors only; padded to 208 on 16 lanes,
# an attention block over 196 tokens (64 channels, 2 heads, one thread) ran its softmax in
# 164 instead of 407 us and its two matmuls in 40 instead of 283 (13 vectors per row against
# 49: 2.5x for the softmax where 3.8x fewer vectors; docs/runs/s42/attention_rows_*.txt).
PAD_COST = 1.5


def unpadded_lanes(extent: int, lanes: int) -> int | None:
    """The part of ``lanes`` (:func:`_dividing_lanes`) that runs ``extent`` unpadded, or None
    where padding it to whole vectors of ``lanes`` is cheaper by :data:`PAD_COST` (or no part
    divides it)."""
    part = _dividing_lanes(extent, lanes)
    if part is None or part == lanes or extent < lanes:
        return part
    return None if -(-extent // lanes) * PAD_COST < extent // part else part


def _dtype_lanes(sch: s_tir.Schedule, block, lanes: int, extent: int) -> int:
    """Lanes of one full vector of the block's output dtype (``lanes`` 32-bit lanes: 4x as
    many uint8 ones), halved until they divide ``extent``. A uint8 max-pool on 16 of the 64
    lanes of a 512-bit vector ran 2x slower (ResNet-50's 3 x 3 / 2 pool at 112 x 112 x 64,
    Zen 4, one thread: 0.061 vs 0.030 ms)."""
    bits = tvm.DataType(str(sch.get(block).writes[0].source.dtype)).bits
    wide = lanes * max(32 // bits, 1)
    while wide > lanes and extent % wide:
        wide //= 2
    return wide


def _children(node) -> list:
    """Sub-expressions of a TIR expression node (the kinds a glue block's value holds)."""
    out = []
    for attr in ("a", "b", "value", "condition", "true_value", "false_value"):
        child = getattr(node, attr, None)
        if isinstance(child, tvm.ir.expr.Expr):
            out.append(child)
    for attr in ("args", "indices"):
        out += [c for c in getattr(node, attr, None) or [] if isinstance(c, tvm.ir.expr.Expr)]
    return out


def _concat_split(cond, iter_vars: list) -> tuple[int, int] | None:
    """``(axis, offset)`` of a concat's branch condition ``offset <= v`` on a block iter."""
    if isinstance(cond, tirx.LE) and isinstance(cond.a, tirx.IntImm):
        bound, var = int(cond.a.value), cond.b
    elif isinstance(cond, tirx.GE) and isinstance(cond.b, tirx.IntImm):
        bound, var = int(cond.b.value), cond.a
    else:
        return None
    axis = next((i for i, v in enumerate(iter_vars) if v.same_as(var)), None)
    return None if axis is None else (axis, bound)


def _concat_segments(sch: s_tir.Schedule, block) -> tuple[int, list[int]] | None:
    """A concatenation inside ``block`` (TOPI's ``concatenate`` selects its input with an
    ``if_then_else`` chain on one axis): ``(axis, segment extents)``, else None."""
    node = sch.get(block)
    iter_vars = [iv.var for iv in node.iter_vars]
    splits, stack = set(), [node.body.value] if isinstance(node.body, tirx.BufferStore) else []
    while stack:
        expr = stack.pop()
        if isinstance(expr, tvm.ir.expr.Call) and getattr(expr.op, "name", "") == _IF_THEN_ELSE:
            split = _concat_split(expr.args[0], iter_vars)
            if split is None:
                return None
            splits.add(split)
        stack += _children(expr)
    axes = {a for a, _ in splits}
    if len(axes) != 1:
        return None
    axis = axes.pop()
    extent = node.iter_vars[axis].dom.extent
    if not isinstance(extent, tirx.IntImm):
        return None
    bounds = sorted(b for _, b in splits if 0 < b < int(extent.value))
    edges = [0, *bounds, int(extent.value)]
    return axis, [hi - lo for lo, hi in zip(edges[:-1], edges[1:], strict=True)]


def _schedule_concat(sch: s_tir.Schedule, block, lanes: int) -> bool:
    """Schedule a concatenation as one loop nest per input (returns whether it did).

    Scheduled as one block, every element evaluates the whole ``if_then_else`` chain and
    a vector lane loads from every input: a 24-input DenseNet concat (+ batch norm + ReLU,
    14 x 14 x 992, one thread) ran at 0.6 GB/s. The concat axis is moved outermost and
    partitioned at the inputs' boundaries; in each part the conditions are constant (the
    simplifier removes them). A part's loop starts at its input's offset, which ``fuse``
    refuses, so it is not fused: the part's channels run in parallel and the other axes,
    fused, in vector lanes. Channels-last (concat axis innermost) see
    :func:`_concat_channels_last`.
    """
    found = _concat_segments(sch, block)
    loops = sch.get_loops(block)
    if found is None or len(loops) != len(sch.get(block).iter_vars):
        return False
    axis, sizes = found
    if len(sizes) < 2 or any(k != 0 for k in _iter_kinds(sch, block)):
        return False
    if axis == len(loops) - 1:
        _concat_channels_last(sch, loops, sizes)
        return True
    others = [lp for i, lp in enumerate(loops) if i != axis]
    sch.reorder(loops[axis], *others)
    # The last part as None: loop_partition refuses factors that add up to the extent.
    parts = sch.loop_partition(loops[axis], [*sizes[:-1], None])
    for part, size in zip(parts, sizes, strict=True):
        (blk,) = sch.get_child_blocks(part)
        rest = sch.get_loops(blk)[1:]
        fused = sch.fuse(*rest) if len(rest) > 1 else rest[0]
        total = (_extent(sch, fused) or 0) * size
        if total >= _MIN_PARALLEL:
            sch.parallel(part)
        if (_extent(sch, fused) or 0) % lanes == 0:
            sch.vectorize(sch.split(fused, [None, lanes])[1])
    return True


def _concat_channels_last(sch: s_tir.Schedule, loops: list, sizes: list[int]) -> None:
    """A concatenation on the innermost axis: the other axes fused and run in parallel, the
    concat axis partitioned inside them, so each pixel copies its inputs' channels in turn
    and the output is written as one stream. Each part's loop stays serial: LLVM's loop
    vectorizer takes it (``split`` refuses a loop that starts at the input's offset, and a
    whole 512-channel part as vector lanes makes LLVM crawl, see LimitVectorWidth).

    One loop nest per input over all pixels instead wrote the output in strided slices, and
    LLVM vectorized some nests across pixels with gathers: DenseNet's concat of 6 inputs +
    ReLU at 8 x 56 x 56 x 224 float32 ran 4x slower than with the pixels outside.
    """
    rows = sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0]
    if (_extent(sch, rows) or 0) * sum(sizes) >= _MIN_PARALLEL:
        sch.parallel(rows)
    # The last part as None: loop_partition refuses factors that add up to the extent.
    sch.loop_partition(loops[-1], [*sizes[:-1], None])


def _root_blocks(sch: s_tir.Schedule) -> list:
    try:
        return sch.get_child_blocks(sch.get_sblock("root"))
    except s_tir.ScheduleError:  # no "root" block: nothing this pass knows how to schedule
        return []


def _points(sch: s_tir.Schedule, block) -> int | None:
    """Iteration points of a block (``None`` for a symbolic extent)."""
    n = 1
    for iv in sch.get(block).iter_vars:
        if not isinstance(iv.dom.extent, tirx.IntImm):
            return None
        n *= int(iv.dom.extent)
    return n


def _output_points(sch: s_tir.Schedule, block) -> int | None:
    """Points of a block's data-parallel iterators (its output elements; ``None`` for a
    symbolic extent). A reduction's window iterators do not count: a padded max-pool's
    output has 4x fewer points than its padded input, not 2.25x more."""
    n = 1
    for iv in sch.get(block).iter_vars:
        if int(iv.iter_type) != 0:  # 0 == kDataPar
            continue
        if not isinstance(iv.dom.extent, tirx.IntImm):
            return None
        n *= int(iv.dom.extent)
    return n


def _broadcast_producer(sch: s_tir.Schedule, block, out_points: int | None) -> bool:
    """A producer with fewer points than the function's output: inlined, it would be
    recomputed for every output point that reads it (a squeeze-and-excitation sigmoid of C
    values once per C x H x W product), so it keeps its own small loop nest. A pooling's
    padded input has more points than the pooled output and is inlined: materialized, the
    114 x 114 padded copy made ResNet's 3 x 3 / 2 max-pool at 112 x 112 x 64 3.5x slower
    (float32, batch 1) to 17x (uint8, batch 8)."""
    points = _points(sch, block)
    return points is not None and out_points is not None and points < out_points


def _last_extent(sch: s_tir.Schedule, block) -> int | None:
    extent = sch.get(block).iter_vars[-1].dom.extent if sch.get(block).iter_vars else None
    return int(extent) if isinstance(extent, tirx.IntImm) else None


def _vector_rows_before_slice(sch: s_tir.Schedule, block, out_block, lanes: int) -> bool:
    """A producer whose rows take whole vectors, read by an output of shorter rows that no
    vector divides (a softmax padded to 64 columns and sliced back to Swin's 49 tokens):
    inlined, it would be computed in the output's scalar loop, its exponentials included
    (an attention softmax over 49 tokens ran 3.5 ns per score against 1.4 over 256), so it
    keeps its own vectorized loop nest and the output copies the kept columns."""
    produced, kept = _last_extent(sch, block), _last_extent(sch, out_block)
    if produced is None or kept is None or kept >= produced or not _reads_row_statistics(
            sch, block):
        return False
    same_rows = len(sch.get(block).iter_vars) == len(sch.get(out_block).iter_vars)
    return (same_rows and _dividing_lanes(produced, lanes) is not None
            and _dividing_lanes(kept, lanes) is None)


def _reads_row_statistics(sch: s_tir.Schedule, block) -> bool:
    """Whether a block reads a reduction's result (a row max, sum or reciprocal), directly or
    through other blocks: the exponentials and normalization of a softmax or a norm. A plain
    elementwise producer (a channel split after an add) stays inlined: materializing it
    would cost a pass over memory."""
    derived: set[str] = set()  # buffers computed from a reduction's result, in block order
    for blk in _root_blocks(sch):
        node = sch.get(blk)
        if any(int(iv.iter_type) != 0 for iv in node.iter_vars) or any(
                r.source.name in derived for r in node.reads):
            derived.update(w.source.name for w in node.writes)
    return any(r.source.name in derived for r in sch.get(block).reads)


def schedule_glue_func(func: tirx.PrimFunc, lanes: int) -> tirx.PrimFunc:
    """Schedule one PrimFunc (raises what the schedule primitives raise when they fail)."""
    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    blocks = _root_blocks(sch)
    out_points = _output_points(sch, blocks[-1]) if blocks else None
    for blk in blocks[:-1]:
        if _broadcast_producer(sch, blk, out_points) or _vector_rows_before_slice(
                sch, blk, blocks[-1], lanes):
            continue
        try:
            sch.compute_inline(blk)
        except s_tir.ScheduleError:  # not inlinable (e.g. a reduction): keep the block
            pass
    for name in [sch.get(blk).name_hint for blk in _root_blocks(sch)]:
        try:
            blk = sch.get_sblock(name)
        except s_tir.ScheduleError:  # inlined while an earlier block was scheduled
            continue
        if not _schedule_concat(sch, blk, lanes):
            _schedule_block(sch, blk, lanes)
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)


@tvm.transform.module_pass(opt_level=0, name="ScheduleGlue")
class ScheduleGlue:
    """Parallelize and vectorize unscheduled PrimFuncs (see the module docstring).

    Parameters
    ----------
    target : optional
        Defaults to the target in scope; its vector width sets the inner loop's lanes.
    lanes : int, optional
        Override the target's 32-bit lanes.
    unscheduled : list, optional
        Receives ``(function name, error)`` for every function left unscheduled (the pass
        also warns); a new list when not given (``pass.unscheduled``).
    """

    def __init__(self, target=None, lanes: int | None = None, unscheduled: list | None = None):
        self.target = target
        self.lanes = lanes
        self.unscheduled = [] if unscheduled is None else unscheduled

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        lanes = self.lanes or capabilities(current_target(self.target)).lanes32
        out = tvm.IRModule({gv: f for gv, f in mod.functions_items()}, attrs=mod.attrs)
        for gv, func in mod.functions_items():
            if isinstance(func, tirx.PrimFunc) and not _is_scheduled(func):
                try:
                    out[gv] = schedule_glue_func(func, lanes)
                except Exception as err:  # noqa: BLE001 - any failure: TVM's code, reported
                    self._fallback(gv.name_hint, err)
        return out

    def _fallback(self, name: str, err: Exception) -> None:
        error = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err) else ''}"
        warnings.warn(f"ScheduleGlue left {name!r} unscheduled (TVM's single-threaded code): "
                      f"{error}", UnscheduledGlueWarning, stacklevel=2)
        self.unscheduled.append((name, error))
