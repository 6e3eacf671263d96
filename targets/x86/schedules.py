"""``tvm.s_tir.Schedule`` recipes for the x86 kernels.

All conv/dense kernels share one TE structure (see ``conv2d.py`` / ``dense.py``):

* optional ``pad`` block: a zero-point/zero padded (and channel-padded) copy of the input,
* ``acc`` block: the reduction into an int32/float32 accumulator over padded output channels,
* ``out`` block: the fused epilogue (dequantize, bias, residual, activation) into ``y``.

:func:`apply_tiled` tiles ``acc`` into register blocks of (spatial tile) x (``ocb`` output
channels): reduction loops outermost, the tile's positions and ``lanes``-wide channel vectors
unrolled innermost (broadcast-FMA, or a tensorized int8 dot block: ``vpdpbusd`` or
``vpmaddubsw``), the accumulators in a small stack buffer that LLVM promotes to vector
registers. ``out`` runs right after each block on the
still-hot accumulators, and ``pad`` is computed once per parallel iteration (an image or a group
of output rows), so the inner loop never branches on borders.

The schedule is one template, :func:`apply_tiled`, whose tile factors are either the planner's
integers (the default schedule) or meta-schedule random variables (the tuning search space of
``tune.py``); both produce identical functions for identical factors.

:func:`schedule_elementwise` flattens an elementwise kernel into parallel vector chunks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from math import prod
from typing import NamedTuple

from tvm import DataType, s_tir, tirx


@dataclass(frozen=True)
class TilePlan:
    """How :func:`apply_tiled` blocks one kernel.

    Attributes
    ----------
    tiles : tuple of int
        Tile extent of every spatial loop of ``acc`` (e.g. (n, oh, ow) or (n,)). The product is
        the number of register-blocked output positions.
    ocb : int
        Output channels per block of the packed weight layout (a multiple of ``lanes``).
    lanes : int
        32-bit lanes of one channel vector (the target's vector width).
    mode : str
        ``"bcast"`` (broadcast one input value, FMA into channel vectors), ``"dot"``
        (tensorize ``lanes`` x group blocks with ``intrin``) or ``"dw"`` (depthwise: input
        and weight are both channel vectors).
    order : tuple of str
        Order of the outer tile loops: ``"s<i>"`` for spatial loop ``i`` and ``"o"`` for the
        output-channel block. Every loop is split (a covering tile leaves a unit outer loop).
    par : tuple of str
        Outer loops that may be fused into the parallel loop; they must lead ``order``. The
        ``pad`` block is computed once per iteration of the parallel loop, or once at the root
        when ``order`` leads with ``"o"`` (every output-channel task reads all of it).
    intrin : str or None
        Tensor intrinsic name for ``mode == "dot"``.
    reduce_names : tuple of str
        Names of the reduction axes of ``acc`` in order.
    inner_reduce : str or None
        Reduction axis that stays inside the register block (the channel group of a dot
        block, which is tensorized, or the nibble position of packed int4 weights, which is
        unrolled).
    min_tasks : int
        0: fuse all of ``par``. Otherwise fuse the shortest prefix of ``par`` with at least this
        many iterations and run the remaining tile loops serially inside: per-task buffers (the
        accumulator) are allocated once per parallel iteration, so tiny tiles must not each be
        a parallel iteration.
    vectors : int
        Channel vectors per register block (0: the whole ``ocb`` block). Fewer than
        ``ocb / lanes`` adds a serial loop over the sub-blocks of one weight block.
    pairs : bool
        ``intrin`` computes 2 positions x 2 channels (``WeightFormat.pairs``): the last
        spatial tile is even, and the accumulator is laid out in 2 x 2 tiles.
    decode_threads : int
        Decode-once kernels (a ``wdec`` block) with a parallel loop: split it into this many
        chunks, one per thread, and decode the int4 weights a chunk's blocks read into that
        chunk's own scratch, inside the parallel loop. 0 (or 1): one scratch at the root,
        decoded before the parallel loop.
    decode_block : bool
        Decode-once kernels whose parallel loop is the output-channel block loop alone
        (``order[0] == par[0] == "o"``): each iteration decodes its block's weights into a
        scratch of one block (``KH * KW * Cp * ocb`` bytes, cache-resident where the whole
        scratch is not) and computes every output of the block from it; the padded copy,
        if any, is made once at the root.
    unrolled_taps : int
        ``"dw"`` mode: how many of the trailing reduction loops outside the block are unrolled
        (0 none, 1 ``kw``, 2 ``kh`` and ``kw``; :func:`dw_unrolled_taps`).
    kchunk : int
        ``"bcast"`` mode: 0, or the input channels (``cg`` steps) per reduction chunk. The
        chunk loop runs right inside the parallel loop, outside every other tile loop, so each
        task sweeps all its register blocks over one chunk of the weights (``KH x KW x kchunk
        x ocb``, sized to stay in cache) before the next, its accumulators in a task-sized
        buffer between chunks; the epilogue runs once per task after the last chunk. Without
        it every register block streams its whole ``KH x KW x C x ocb`` weight panel (2.2 MB
        at 3x3 960 -> 256 in blocks of 64 channels, from beyond L2 for every block of 4
        positions).
    """

    tiles: tuple[int, ...]
    ocb: int
    lanes: int
    mode: str
    order: tuple[str, ...]
    par: tuple[str, ...]
    intrin: str | None = None
    reduce_names: tuple[str, ...] = ()
    inner_reduce: str | None = None
    min_tasks: int = 0
    vectors: int = 0
    pairs: bool = False
    decode_threads: int = 0
    decode_block: bool = False
    unrolled_taps: int = 0
    kchunk: int = 0

    def __post_init__(self):
        if self.lanes < 1 or self.ocb % self.lanes:
            raise ValueError(f"ocb={self.ocb} must be a multiple of lanes={self.lanes}")
        if self.mode not in ("bcast", "dot", "dw"):
            raise ValueError(f"mode must be 'bcast', 'dot' or 'dw', got {self.mode!r}")
        if self.mode == "dot" and not self.intrin:
            raise ValueError("mode 'dot' needs a tensor intrinsic")
        if self.pairs and (self.mode != "dot" or self.tiles[-1] % 2 or self.lanes % 2):
            raise ValueError(f"2 x 2 blocks need mode 'dot' and an even last tile, got "
                             f"{self.mode!r} with tiles {self.tiles}")
        if self.decode_block and (self.order[:1] != ("o",) or self.par != ("o",)):
            raise ValueError(f"a per-block decode needs order and par to lead with 'o' "
                             f"alone, got order {self.order} and par {self.par}")
        if self.unrolled_taps and (self.mode != "dw" or not
                                   0 < self.unrolled_taps <= len(self.reduce_names)):
            raise ValueError(f"unrolled_taps={self.unrolled_taps} needs mode 'dw' and at most "
                             f"{len(self.reduce_names)} reduction loops, got mode {self.mode!r}")
        if self.kchunk and (self.mode != "bcast" or "cg" not in self.reduce_names
                            or self.pairs or self.decode_threads or self.decode_block):
            raise ValueError(f"kchunk={self.kchunk} needs mode 'bcast' with a 'cg' reduction "
                             f"and no decode stage, got mode {self.mode!r}")

    @property
    def ocv(self) -> int:
        """Channel vectors per register block."""
        return self.vectors or self.ocb // self.lanes

    def describe(self, kind: str) -> str:
        """Short schedule tag for ``Kernel.info["schedule"]``."""
        tile = "x".join(str(t) for t in self.tiles)
        sub = f"_v{self.ocv}" if self.ocv != self.ocb // self.lanes else ""
        mode = f"{self.mode}2x2" if self.pairs else self.mode
        chunk = f"_kc{self.kchunk}" if self.kchunk else ""
        return f"{kind}_{mode}_oc{self.ocb}{sub}_tile{tile}{chunk}"

    def num_parallel(self, extents: tuple[int, ...]) -> int:
        """How many leading loops of ``order`` :func:`apply_tiled` fuses into the parallel loop.

        Parameters
        ----------
        extents : tuple of int
            Extents of the spatial loops of ``acc`` followed by its output-channel extent.
        """
        spatial = zip(extents[:-1], self.tiles, strict=True)
        outer = {f"s{i}": e // t for i, (e, t) in enumerate(spatial)}
        outer["o"] = extents[-1] // self.ocb
        if prod(outer[nm] for nm in self.par) == 1:
            return 0  # a single task: a parallel launch would only add its overhead
        if not self.min_tasks:
            return len(self.par)
        tasks = 1
        for i, name in enumerate(self.par):
            tasks *= outer[name]
            if tasks >= self.min_tasks:
                return i + 1
        return len(self.par)


TEMPLATE_KEY = "aiq.template"


def structure_tag(order: tuple[str, ...], npar: int) -> str:
    """Tag of a loop structure: outer loop order and number of loops in the parallel loop."""
    return f"{'.'.join(order)}|par{npar}"


def _extent(sch: s_tir.Schedule, loop) -> int:
    return int(sch.get(loop).extent)


def _split_exact(sch, loop, factor: int):
    """Split ``loop`` by ``factor``, or return (None, loop) when ``factor`` covers it."""
    if factor >= _extent(sch, loop):
        return None, loop
    return sch.split(loop, [None, factor])


def _fuse(sch, loops):
    return sch.fuse(*loops) if len(loops) > 1 else loops[0]


def acc_extents(sch: s_tir.Schedule, nsp: int) -> tuple[int, ...]:
    """Spatial extents of the unscheduled ``acc`` block followed by its channel extent."""
    loops = sch.get_loops(sch.get_sblock("acc"))
    return tuple(_extent(sch, lp) for lp in loops[: nsp + 1])


def apply_tiled(sch: s_tir.Schedule, plan: TilePlan, *, tiles=None, vectors=None, npar=None):
    """Apply the register-blocking template to an unscheduled pad/acc/out kernel in place.

    The template is one fixed sequence of schedule primitives whose tile factors may be
    meta-schedule random variables (``ExprRV`` from ``sch.sample_categorical``): no Python
    decision below depends on a factor's value, so a trace recorded with some decisions replays
    correctly with any other valid ones (which is what tuning does). Every spatial loop and the
    channel block are always split, even where a factor covers the loop (the unit loops vanish
    when the function is lowered).

    Parameters
    ----------
    sch : s_tir.Schedule
        Schedule of the unscheduled kernel (blocks ``acc``, ``out`` and optionally ``pad``).
    plan : TilePlan
        Structure (loop order, reduction layout, mode) and the default factors.
    tiles : sequence of int or ExprRV, optional
        Spatial tile factors (default ``plan.tiles``); each must divide its ``acc`` extent.
    vectors : int or ExprRV, optional
        Channel vectors per register block (default ``plan.ocv``); must divide
        ``ocb / lanes``.
    npar : int, optional
        Leading loops of ``plan.order`` fused into the parallel loop (default: from
        ``plan.min_tasks`` and the default tiles, see :meth:`TilePlan.num_parallel`).
    """
    nsp = len(plan.tiles)
    if npar is None:
        npar = plan.num_parallel(acc_extents(sch, nsp))
    tiles = plan.tiles if tiles is None else tuple(tiles)
    vectors = plan.ocv if vectors is None else vectors
    out = sch.get_sblock("out")
    acc = sch.get_sblock("acc")
    # Names the loop structure in the schedule (and in tuning traces, which record it); block
    # annotations without a pragma prefix do not reach the generated code.
    sch.annotate(acc, TEMPLATE_KEY, structure_tag(plan.order, npar))
    try:
        pad = sch.get_sblock("pad")
    except Exception:  # noqa: BLE001 - TVM raises a generic error for a missing block
        pad = None
    block = _register_block(sch, acc, plan, tiles, vectors, npar)
    if block.chunk is not None:
        _epilogue_after_chunks(sch, out, block.outer[:npar], plan)
    else:
        _epilogue_after_block(sch, out, block.outer, plan)
    added = _parallel_loop(sch, pad, block, plan, npar)
    xf = optional_block(sch, "xf")
    if xf is not None:
        _float_input_stage(sch, xf, plan.lanes)
    # outer loops left after the fuse (and the per-thread split)
    n_outer = len(block.outer) - max(npar - 1, 0) + added
    _vectorize_block(sch, acc, block, plan, n_outer)


def optional_block(sch: s_tir.Schedule, name: str):
    """Block ``name`` of ``sch``, or None where the kernel has none."""
    try:
        return sch.get_sblock(name)
    except Exception:  # noqa: BLE001 - TVM raises a generic error for a missing block
        return None


def _float_input_stage(sch: s_tir.Schedule, xf, lanes: int) -> None:
    """The uint8 -> float32 copy of an integer depthwise conv's input (``conv2d._float_input``):
    once per call at the root, rows over the threads, each pixel's channels in vectors (split
    from the channel loop alone: a vector over fused columns and channels indexes through a
    division LLVM does not see past)."""
    n, h, _, c = sch.get_loops(xf)
    sch.parallel(sch.fuse(n, h))
    width = next((v for v in (4 * lanes, 2 * lanes, lanes, lanes // 2, lanes // 4)
                  if v > 1 and _extent(sch, c) % v == 0), 0)  # fmt: skip
    if width:
        _, vec = sch.split(c, [None, width])
        sch.vectorize(vec)


def _decode_stage(sch: s_tir.Schedule, dec, plan: TilePlan, thread_loop=None) -> None:
    """The decode-once stage ``wdec`` (int4 -> int8 scratch, see ``common.decode_int4``): one
    byte vector per ``4 * lanes`` weights.

    With ``thread_loop`` (the parallel loop split into one chunk per thread) each thread
    decodes the weights its chunk reads into its own scratch, inside the conv's parallel
    region. A scratch shared by both threads (decoded at the root, by one thread or by a
    parallel loop of its own) ran 0.60-0.87x of int8 at two threads on Zen 4 (a 9 KB
    depthwise scratch: 0.008 -> 0.013 ms; 590 KB at 3x3 256 -> 256 @ 14: 0.266 -> 0.306 ms,
    scripts/bench_int4_decode.py): every call, each core reads back the part of the scratch
    the other core wrote, and the large ones paid a second parallel launch. Without it (no
    parallel loop, or one planned thread), a root loop nest before the register blocks,
    parallel over (channel block, kh, kw) slices from :data:`DECODE_PARALLEL_BYTES`."""
    if thread_loop is not None:
        sch.compute_at(dec, thread_loop, preserve_unit_loops=True)
        loops = sch.get_loops(dec)[1:]  # under the (outermost) thread loop
    else:
        loops = sch.get_loops(dec)
    if len(sch.get(dec).iter_vars) == 3:  # depthwise [KH, KW, Cp]: a few vectors
        _, vec = sch.split(loops[-1], [None, plan.lanes])
        sch.vectorize(vec)
        return
    parallel = prod(_extent(sch, lp) for lp in loops) >= DECODE_PARALLEL_BYTES
    _, vec = sch.split(sch.fuse(*loops[-2:]), [None, 4 * plan.lanes])
    sch.vectorize(vec)
    if parallel and thread_loop is None:
        sch.parallel(sch.fuse(*loops[:3]))


class _RegisterBlock(NamedTuple):
    """Loops of the tiled ``acc`` block (schedule loop handles)."""

    named: dict  # the outer tile loops by name ("s0", "s1", ..., "o")
    outer: list  # loops outside the register block, outermost first
    reg: object  # the fused loop over the block's accumulator vectors
    lanes: object  # the innermost loop over one vector's lanes
    head_red: list  # reduction loops outside the block
    tail: list  # the reduction loop inside the block (``plan.inner_reduce``), if any
    chunk: object = None  # the reduction chunk loop (``plan.kchunk``), among ``outer``


def _register_block(sch: s_tir.Schedule, acc, plan: TilePlan, tiles, vectors,
                    npar: int = 0) -> _RegisterBlock:  # fmt: skip
    """Tile ``acc`` into register blocks of ``tiles`` positions x ``vectors`` channel vectors
    (with ``plan.kchunk``, the chunk loop right after the ``npar`` parallel loops)."""
    # The accumulator keeps the default "global" scope: TVM 0.27 lowers every "local" buffer to
    # a heap workspace, while a small "global" one becomes a stack alloca that LLVM promotes to
    # vector registers.
    nsp = len(plan.tiles)
    loops = sch.get_loops(acc)
    spatial, o = loops[:nsp], loops[nsp]
    reds = dict(zip(plan.reduce_names, loops[nsp + 1 :], strict=True))
    named, inners = {}, []
    for i, (lp, t) in enumerate(zip(spatial, tiles, strict=True)):
        named[f"s{i}"], li = sch.split(lp, [None, t])
        inners.append(li)
    named["o"], oi = sch.split(o, [None, plan.ocb])
    osub, ov, ol = sch.split(oi, [None, vectors, plan.lanes])
    outer = [named[nm] for nm in plan.order] + [osub]
    chunk = None
    if plan.kchunk:
        chunk, reds["cg"] = sch.split(reds["cg"], [None, plan.kchunk])
        outer = outer[:npar] + [chunk] + outer[npar:]
    inner_red = reds.get(plan.inner_reduce) if plan.inner_reduce else None
    head_red = [reds[nm] for nm in plan.reduce_names if nm != plan.inner_reduce]
    tail = [inner_red] if inner_red is not None else []
    if plan.pairs:
        # 2 x 2 blocks: position pairs of the last spatial tile x channel pairs of a vector;
        # the tensorized loops are (position, channel, input channel) of one tile.
        pj, pi = sch.split(inners[-1], [None, 2])
        olo, oli = sch.split(ol, [None, 2])
        sch.reorder(*outer, *head_red, *inners[:-1], pj, ov, olo, pi, oli, *tail)
        reg = sch.fuse(*inners[:-1], pj, ov, olo)
        return _RegisterBlock(named, outer, reg, pi, head_red, tail)
    if plan.mode == "dot":
        sch.reorder(*outer, *head_red, *inners, ov, ol, *tail)
    else:
        sch.reorder(*outer, *head_red, *tail, *inners, ov, ol)
    # One loop over the block's accumulator vectors (positions x channel vectors), fully
    # unrolled. A single loop matters for tuning: decompose_reduction drops loops of extent 1,
    # and the template must yield the same loop structure for every decision (see TileSpace).
    reg = sch.fuse(*inners, ov)
    return _RegisterBlock(named, outer, reg, ol, head_red, tail, chunk)


def _epilogue_after_block(sch: s_tir.Schedule, out, outer: list, plan: TilePlan) -> None:
    """Epilogue right after each register block (inside the ``outer`` loops): channel
    vectors, tile positions unrolled."""
    sch.reverse_compute_at(out, outer[-1], preserve_unit_loops=True)
    e_loops = sch.get_loops(out)[len(outer) :]
    e_o = e_loops[-1]
    unrolled = [_fuse(sch, e_loops[:-1])]
    # Split when a block can hold more than one vector of real channels, or the channels end
    # inside a vector (a structural fact of the workload, not of the decisions). The second:
    # 72 channels in 16-lane blocks, int8 with a uint8 output, ran the requantizing epilogue
    # per lane (depthwise 3x3 at 56 x 56, one thread, this host: 231 -> 106 us split;
    # docs/runs/s36/kt_epilogue.txt).
    n_out = int(sch.get(out).iter_vars[-1].dom.extent)
    if min(n_out, plan.ocb) > plan.lanes or n_out % plan.lanes:
        # A channel count that is not a multiple of the block (e.g. 24 of 32) guards the store
        # with a predicate, and a predicate that depends on the vector lane makes VectorizeLoop
        # scalarize the epilogue. So the vectors are as wide as the largest power of two
        # dividing the channel count, at least 8 lanes (:func:`_store_width`: 8 for 24 or 58
        # channels), and partitioning the loop over them drops the vectors past the edge and
        # runs the one straddling it lane by lane. Without a ragged edge both are no-ops.
        width = _store_width(n_out, plan.lanes)
        e_ov, e_o = sch.split(e_o, [None, width])
        sch.annotate(e_ov, "pragma_loop_partition_hint", 1)
        if n_out % plan.ocb == 0:
            # With a ragged last block (160 channels in blocks of 48) the partition's extent
            # depends on the parallel block index, and TVM cannot unroll a non-constant loop.
            unrolled.append(e_ov)
    sch.vectorize(e_o)
    for lp in unrolled:
        sch.unroll(lp)


def _store_width(n_out: int, lanes: int) -> int:
    """Lanes of the epilogue's vectors over ``n_out`` channels: the widest power of two that
    divides the count (no vector straddles the edge), but at least 8 (capped at ``lanes``).
    Below 8 the stores got too narrow: 58 channels (ShuffleNetV2) went out in 2-lane vectors;
    with 8 lanes the loop partition runs the one straddling vector lane by lane and the rest
    whole. int8 with a uint8 output, skylake-avx512, one thread, 2 / 8-lane vectors: 1x1
    58 -> 58 at 28 x 28 55.4 / 31.8 us, depthwise 3x3 58 46.9 / 27.3 us, 1x1 24 -> 58 at
    56 x 56 174.2 / 70.0 us, 1x1 116 -> 116 at 14 x 14 (4 lanes) 29.9 / 25.6 us; 16 lanes
    ran the depthwise slower (39.7 us; docs/runs/s36/store_width.txt)."""
    return min(lanes, max(n_out & -n_out, 8))


def _epilogue_after_chunks(sch: s_tir.Schedule, out, par_loops: list, plan: TilePlan) -> None:
    """``TilePlan.kchunk``: the epilogue once per task, after its last chunk, over the task's
    whole output region (inside the parallel loops, or at the root without them): its channel
    loop vectorized as in :func:`_epilogue_after_block`, the rest loops."""
    if par_loops:
        sch.reverse_compute_at(out, par_loops[-1], preserve_unit_loops=True)
    e_o = sch.get_loops(out)[-1]
    n_out = int(sch.get(out).iter_vars[-1].dom.extent)
    width = _store_width(n_out, plan.lanes)
    if n_out > width:
        e_ov, e_o = sch.split(e_o, [None, width])
        sch.annotate(e_ov, "pragma_loop_partition_hint", 1)
    sch.vectorize(e_o)


def _parallel_loop(sch: s_tir.Schedule, pad, block: _RegisterBlock, plan: TilePlan,
                   npar: int) -> int:  # fmt: skip
    """Fuse the leading ``npar`` outer loops into the parallel loop, compute the padded input
    copy once per parallel iteration and place the decode-once stage, if any (see
    :func:`_decode_stage`). Returns the outer loops added (1 if the parallel loop was split
    into one chunk per thread, else 0)."""
    loops = [block.named[nm] for nm in plan.order[:npar]]
    dec = optional_block(sch, "wdec")
    if dec is not None and plan.decode_block and npar == 1:
        _block_decode(sch, pad, dec, loops[0], plan)
        return 0
    chunks = _thread_chunks(sch, loops, plan) if dec is not None else None
    fused, task = chunks or ((_fuse(sch, loops),) * 2 if npar else (None, None))
    if pad is not None and plan.order[0] == "o":
        # Every output-channel task reads all of the padded copy: made once, at the root.
        task = None
    if pad is not None:
        if task is not None:
            sch.compute_at(pad, task, preserve_unit_loops=True)
        p_loops = sch.get_loops(pad)[(2 if chunks else 1) if task is not None else 0 :]
        _vectorize_pad_channels(sch, pad, p_loops[-1], plan.lanes)
    if dec is not None:
        _decode_stage(sch, dec, plan, fused if chunks else None)
    # Loop annotations need compact dataflow, i.e. must precede decompose_reduction.
    if fused is not None:
        sch.parallel(fused)
    return int(chunks is not None)


def _block_decode(sch: s_tir.Schedule, pad, dec, o_loop, plan: TilePlan) -> None:
    """``TilePlan.decode_block``: the decode under the parallel output-channel block loop
    (one block's weights per iteration, into a block-sized scratch), the padded copy at the
    root (every block reads all of it)."""
    if pad is not None:
        _vectorize_pad_channels(sch, pad, sch.get_loops(pad)[-1], plan.lanes)
    _decode_stage(sch, dec, plan, o_loop)
    sch.parallel(o_loop)


def thread_split_extent(extents: list[int], threads: int) -> int | None:
    """Index of the loop of the parallel prefix (``extents``, outermost first) that
    :func:`_thread_chunks` splits into ``threads`` chunks: the first one longer than 1, if
    ``threads`` divides it (else None: no per-thread chunks)."""
    lead = next((i for i, e in enumerate(extents) if e > 1), None)
    if threads < 2 or lead is None or extents[lead] % threads:
        return None
    return lead


def _thread_chunks(sch: s_tir.Schedule, loops: list, plan: TilePlan):
    """(thread loop, task loop) for a per-thread decode (``plan.decode_threads``): the first
    non-unit loop of the parallel prefix split into one chunk per thread, the loops before it
    and the chunk index fused into the thread loop, the rest into each thread's serial task
    loop; None if not planned or not divisible. The split is on a loop, not on the fused
    parallel loop: tensorize (blockize) rejected the bindings of a split fused loop."""
    lead = thread_split_extent([_extent(sch, lp) for lp in loops], plan.decode_threads)
    if lead is None:
        return None
    thread, rest = sch.split(loops[lead], [plan.decode_threads, None])
    return _fuse(sch, [*loops[:lead], thread]), _fuse(sch, [rest, *loops[lead + 1 :]])


def _vectorize_pad_channels(sch: s_tir.Schedule, pad, loop, lanes: int) -> None:
    """Vectorize the padded copy's channel loop in whole machine vectors: a channel count that
    is not a multiple of the vector (e.g. 144 uint8 channels on 64-byte vectors) vectorized as
    one odd-width vector became a per-byte copy (MobileNetV2's 144-channel depthwise layer at
    56 x 56, int8 batch 1, Zen 4: 0.44 of 0.45 ms; scripts/bench_dw_tiles.py), so such a loop
    is split into the widest power-of-two vectors dividing it."""
    extent = int(sch.get(pad).iter_vars[-1].dom.extent)
    if extent <= 1:
        return
    elems = lanes * 32 // write_bits(sch, pad)  # elements per vector
    if extent % elems and extent > elems:
        _, loop = sch.split(loop, [None, extent & -extent])
    sch.vectorize(loop)


def write_bits(sch: s_tir.Schedule, block) -> int:
    """Bits of one element of the buffer ``block`` writes."""
    return DataType(str(sch.get(block).writes[0].source.dtype)).bits


def _vectorize_block(sch: s_tir.Schedule, acc, block: _RegisterBlock, plan: TilePlan,
                     n_outer: int) -> None:  # fmt: skip
    """Vector lanes and unrolled accumulators, the accumulator initialization split out of the
    reduction, and the int8 dot instruction tensorized in "dot" mode."""
    if plan.mode != "dot":
        sch.vectorize(block.lanes)
        for lp in [*block.tail, block.reg]:
            sch.unroll(lp)
        for lp in block.head_red[len(block.head_red) - plan.unrolled_taps :]:
            sch.unroll(lp)
    if block.chunk is not None:  # zeroed once per task, before its first chunk
        init = sch.decompose_reduction(acc, block.chunk)
        sch.vectorize(sch.get_loops(init)[-1])
        return
    init = sch.decompose_reduction(acc, (block.head_red + block.tail)[0])
    i_loops = sch.get_loops(init)[n_outer:]  # [reg, ol], or [ol] for a one-vector block
    if plan.pairs:  # [reg, position, channel]: one vector per 2 x 2 tile
        sch.transform_layout(acc, ("write", 0), _pair_tiles(len(plan.tiles)))
        i_loops = [*i_loops[:-2], sch.fuse(*i_loops[-2:])]
    sch.vectorize(i_loops[-1])
    for lp in i_loops[:-1]:
        sch.unroll(lp)
    if plan.mode == "dot":
        sch.tensorize(block.lanes, plan.intrin)
        sch.unroll(block.reg)


def weight_stream_terms() -> bool:
    """``AIQ_WEIGHT_STREAM``, checked: whether the planner prices float32 weight panels
    streamed from beyond L2 where they exceed it (``conv2d._chunk_options``,
    ``conv2d._cycled_weights_stream``); default on. ``0`` plans every layer as before those
    terms existed (comparisons)."""
    env = os.environ.get("AIQ_WEIGHT_STREAM", "")
    if env not in ("", "0"):
        raise ValueError(f"AIQ_WEIGHT_STREAM must be 0 (or unset), got {env!r}")
    return env != "0"


def unroll_taps() -> bool:
    """``AIQ_DW_UNROLL_TAPS``, checked: whether depthwise blocks unroll their taps (default
    on; ``0`` keeps them loops, session 27's kernels, for comparisons)."""
    env = os.environ.get("AIQ_DW_UNROLL_TAPS", "")
    if env not in ("", "0", "1"):
        raise ValueError(f"AIQ_DW_UNROLL_TAPS must be 0 or 1 (or unset), got {env!r}")
    return env != "0"


def dw_unrolled_taps(kh: int, kw: int, inline_border: bool) -> int:
    """How many of a depthwise block's tap loops are unrolled (``TilePlan.unrolled_taps``).

    Unrolled, each tap's input column and its bounds check are constants inside the block:
    LLVM loads (and, for uint8 inputs, widens) an input vector once for all the taps that read
    it and folds the column checks of inline borders. Both loops are unrolled, except the
    ``kh`` loop of windows over 25 taps that read a padded copy, where it ran 0.94x (7x7 fp32
    at 56 x 56 batch 8: 1.244 ms against 1.166 ms with loops; ``kw`` alone 0.98x in a second
    run, 1.220 against 1.202 ms; docs/runs/s28/dw_unroll.txt).
    Kernels alone, both unrolled against loops, same tiles and outputs, this host, two
    threads (docs/runs/s28/dw_unroll.txt): fp32 1.07-1.31x on 3x3 and 5x5 (7x7 read inline
    1.68-1.87x); int8 0.98-1.50x (with :func:`conv2d._border_modes`'s inline 3x3)."""
    if not unroll_taps():
        return 0
    return 2 if inline_border or kh * kw <= 25 else 1


def _pair_tiles(nsp: int):
    """Index map of the 2 x 2 accumulator tiles: ``(.., pos, ch) -> (.., pos // 2, ch // 2,
    pos % 2, ch % 2)`` over the last spatial axis (``pos``) and the channels."""

    def tiles(*idx):
        *lead, pos, ch = idx
        return (*lead, pos // 2, ch // 2, pos % 2, ch % 2)

    return tirx.IndexMap.from_func(tiles, ndim=nsp + 1, index_dtype="int32")


def schedule_elementwise(
    func: tirx.PrimFunc, block: str, *, lanes: int, min_parallel: int = 16384
) -> tirx.PrimFunc:
    """Vectorize an elementwise block along contiguous rows; parallel chunks for large tensors.

    Vectors stay inside a row of the two innermost dimensions (``W * C`` of an NHWC tensor):
    fusing every dimension instead makes a vector straddle rows whose length is not a power of
    two (C = 3, 24, 96, 144, ...), and TVM then lowers its accesses to per-lane div/mod
    gathers, 10-30x slower. The vector width is the divisor of the row length ``<= 4 * lanes``
    that is preferably a multiple of ``lanes`` (the target's 32-bit lanes: whole registers),
    so no predicate or scalar tail is needed. Below ``min_parallel`` elements the kernel stays
    on one thread: the parallel launch would cost more than the work.
    """
    sch = s_tir.Schedule(func)
    b = sch.get_sblock(block)
    loops = sch.get_loops(b)
    total = 1
    for lp in loops:
        total *= _extent(sch, lp)
    row = _fuse(sch, loops[-2:])
    ext = _extent(sch, row)
    vec = max((d for d in range(1, min(4 * lanes, ext) + 1) if ext % d == 0),
              key=lambda d: (d % lanes == 0, d))  # fmt: skip
    outer, inner = _split_exact(sch, row, vec)
    if vec > 1:
        sch.vectorize(inner)
    elif outer is None:
        outer = inner
    par = [*loops[:-2], *([outer] if outer is not None else [])]
    if par and total >= min_parallel:
        sch.parallel(_fuse(sch, par))
    return sch.mod["main"]


# ---------------------------------------------------------------------------------------------
# Planner: pick register-block shapes with a small throughput model.
# ---------------------------------------------------------------------------------------------

def step_cycles(mb: int, ocv: int, fmt, mode: str, tp) -> float:
    """Cycles of one reduction step (one channel group) of an ``mb x ocv``-vector register
    block.

    ``mode`` is ``"bcast"`` (activation broadcast folded into the multiply), ``"dot"`` (a
    tensorized int8 dot block with explicit 4-byte broadcasts, which also occupy a vector
    pipe) or ``"dw"`` (one activation vector per multiply). ``fmt`` (a ``WeightFormat``) gives
    the multiply-class ops per accumulator, the unpack ops per weight vector and the
    accumulator's dependency latency per step; ``tp`` (an ``isa.Throughput``) the core's
    issue rates.
    """
    ops = mb * ocv * fmt.dot_ops
    bcasts = mb * ocv if mode == "dw" else mb * (fmt.bcast_ops if mode == "dot" else fmt.group)
    loads = ocv * fmt.weight_loads + bcasts
    vec = ops + tp.unpack_weight * ocv * fmt.unpack_ops + (bcasts if mode == "dot" else 0)
    return max(vec / tp.vector_ops_per_cycle, loads / tp.loads_per_cycle, fmt.acc_latency) + 0.5


# Decode-once int4 (``WeightFormat.packed``): per int8 scratch vector a half-vector load,
# shift, mask, subtract and a store, issued around 2 cycles; per call the scratch's workspace
# allocation about 0.1 us (Zen 4: a 1x1 layer with 6 KB of weights at 128 positions ran 0.1 us
# slower decoded than int8).
DECODE_VECTOR_CYCLES = 2.0
DECODE_CALL_CYCLES = 500.0
# The per-block decode (``TilePlan.decode_block``) ran 40-52 us per call slower than the same
# int8 kernel with the same loop order (Zen 4, one thread, batch 1: 3x3 512 -> 512 at 7 x 7,
# 1x1/2 1024 -> 2048 at 14 x 14; docs/runs/int4_block/exp_order.py): 3-6 cycles per scratch
# vector at 2.6-3.7 GHz, not the 2 of the issue count (a block's decode stores its scratch
# between two register-block sweeps that then read it back). 5 keeps those layers at batch 1
# on the in-loop form, which measured faster there, and the batch-8 ones on the block decode.
DECODE_BLOCK_VECTOR_CYCLES = 5.0
# Smaller scratches are decoded by one thread: a parallel launch (0.6 us more on that layer)
# costs more than the work.
DECODE_PARALLEL_BYTES = 64 << 10
# A scratch shared by the threads (decoded at the root, before the parallel loop): per call,
# and per byte another core wrote, as a thread's blocks read it back. Fitted to two layers at
# two threads on Zen 4 (scripts/bench_int4_decode.py, batch 1): the depthwise 960-channel
# layer at 7 x 7 (9 KB scratch) ran 4-5 us and 3x3 256 -> 256 at 14 x 14 (590 KB) 40 us slower
# decoded at the root than int8.
SHARED_SCRATCH_CALL_CYCLES = 12000.0
SHARED_SCRATCH_BYTE_CYCLES = 0.25
# Share of a core's L2 (``TargetCaps.l2_bytes``) a decode scratch may fill and stay there.
# Above it the scratch's writes and the register blocks' reads go to L3: the decode then
# measured 3-9 cycles per 64-byte vector (Zen 4, two threads, batch 8, each thread decoding
# the whole 1.2 / 2.4 MB scratch of ResNet's 3x3/2 256 -> 512 and 3x3 512 -> 512 layers at
# 14 x 14 / 7 x 7: 0.99x / 0.96x of int8, against 0.92x / 0.91x unpacking in the loop;
# docs/runs/int4_b8), so such a scratch pays where many positions share each weight (batch
# 8) and not at batch 1 (49 positions: the 2.4 MB one ran 0.73x of int8 on haswell code,
# 1 MiB of 1x1 2048 -> 512 0.96x against 1.35x on skylake-avx512 code, both decoded;
# scripts/bench_int4_decode.py). 6 (not the per-block decode's 5) leaves ties to it. One
# output-channel block's scratch (``TilePlan.decode_block``) must fit.
SCRATCH_L2_SHARE = 0.75
SPILLED_DECODE_VECTOR_CYCLES = 6.0
# A target whose L2 is unknown is sized like the 1 MiB L2 the share was measured with.
ASSUMED_L2_BYTES = 1 << 20


def scratch_limit(l2_bytes: int) -> float:
    """Largest decode scratch that stays in a core's L2 of ``l2_bytes`` (0: unknown)."""
    return SCRATCH_L2_SHARE * (l2_bytes or ASSUMED_L2_BYTES)

# Added to a per-block decode whose block scratch exceeds the limit: never chosen over a
# format without a scratch, while a forced decode (``decode_once=True``) still ranks its
# plans by their cost.
SCRATCH_SPILL_CYCLES = 1e12


def decode_cycles(scratch_bytes: int, lanes: int, threads: int, per_thread: bool = False,
                  split: bool = False, block: int = 0, l2_bytes: int = 0) -> float:
    """Modelled wall cycles of decoding ``scratch_bytes`` int4 weights into the int8 scratch
    of a decode-once kernel, once per call: a scratch above :func:`scratch_limit` of
    ``l2_bytes`` (a core's L2) at :data:`SPILLED_DECODE_VECTOR_CYCLES` per vector, a block
    scratch above it not at all (:data:`SCRATCH_SPILL_CYCLES`).

    ``per_thread``: each thread decodes into its own scratch inside the parallel loop
    (``TilePlan.decode_threads``): the whole scratch, or its share of the output-channel
    blocks when the parallel loop leads with them (``split``). ``block``: the bytes of one
    output-channel block's scratch (``TilePlan.decode_block``), the one that must fit."""
    shared = 0.0
    if per_thread:
        scratch_bytes = -(-scratch_bytes // threads) if split else scratch_bytes
        share = 1
    else:
        share = threads if scratch_bytes >= DECODE_PARALLEL_BYTES else 1
        # the other threads read back the part of the scratch another core wrote
        if threads > 1:
            shared = (SHARED_SCRATCH_CALL_CYCLES
                      + SHARED_SCRATCH_BYTE_CYCLES * scratch_bytes * (threads - 1) / threads)
    spills = (block or scratch_bytes) > scratch_limit(l2_bytes)
    if block:
        per_vector = DECODE_BLOCK_VECTOR_CYCLES
    else:
        per_vector = SPILLED_DECODE_VECTOR_CYCLES if spills else DECODE_VECTOR_CYCLES
    work = scratch_bytes / (4 * lanes) * per_vector / share
    spill = SCRATCH_SPILL_CYCLES if block and spills else 0.0
    return DECODE_CALL_CYCLES + work + shared + spill


TASKS_PER_THREAD = 4  # parallel iterations per thread when the tile loops can be split freely
# Register blocks (and Winograd transform rows) of at least this many bytes are priced or
# bounded as heap buffers: TVM's own TIR pipeline gives smaller constant-size CPU buffers the
# stack. The "aiq_tvm" TIR pipeline (passes/stack_small_buffers.py) keeps up to 4 KiB there;
# raising this bound to match changed no whole-model time (ResNet-20 / MobileNetV2 int8 at
# batch 16 on skylake-avx512 0.992x / 1.022x, ResNet-50 FP32 batch 8 0.998x, ResNet-50 int8
# batch 1 1.008x, MobileNetV2 FP32 batch 8 1.001x; docs/runs/s46/console_records.txt).
STACK_ACC_BYTES = 1024
HEAP_ACC_CYCLES = 1.0  # per accumulator vector and tile: dead init store + epilogue reload


def par_prefix_tasks(extents: list[int], min_tasks: int) -> int:
    """Iterations of the shortest prefix of ``extents`` reaching ``min_tasks`` (see
    ``TilePlan.min_tasks``)."""
    tasks = 1
    for e in extents:
        tasks *= e
        if tasks >= min_tasks:
            break
    return tasks


def balance(tasks: int, threads: int) -> float:
    """Parallel efficiency of ``tasks`` equal chunks statically split over ``threads``."""
    if tasks <= 0:
        return 0.0
    return tasks / (-(-tasks // threads) * threads)


def divisors(n: int) -> list[int]:
    """Divisors of ``n`` in increasing order."""
    return [d for d in range(1, n + 1) if n % d == 0]
