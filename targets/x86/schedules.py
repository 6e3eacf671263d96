"""``tvm.s_tir.Schedule`` recipes for the x86 kernels.

All conv/dense kernels share one TE structure (see ``conv2d.py`` / ``dense.py``):

* optional ``pad`` block: a zero-point/zero padded (and channel-padded) copy of the input,
* ``acc`` block: the reduction into an int32/float32 accumulator over padded output channels,
* ``out`` block: the fused epilogue (dequantize, bias, residual, activation) into ``y``.

:func:`schedule_tiled` tiles ``acc`` into register blocks of (spatial tile) x (``ocb`` output
channels): reduction loops outermost, the tile's positions and 16-lane channel vectors unrolled
innermost (broadcast-FMA, or a tensorized VNNI 16x4 / 16x8 block), the accumulators in a small
stack buffer that LLVM promotes to zmm registers. ``out`` runs right after each block on the
still-hot accumulators, and ``pad`` is computed once per parallel iteration (an image or a group
of output rows), so the inner loop never branches on borders.

:func:`schedule_elementwise` flattens an elementwise kernel into parallel vector chunks.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import s_tir, tirx

from .common import VEC


@dataclass(frozen=True)
class TilePlan:
    """How :func:`schedule_tiled` blocks one kernel.

    Attributes
    ----------
    tiles : tuple of int
        Tile extent of every spatial output loop of ``out`` (e.g. (n, oh, ow) or (n,)). The
        product is the number of register-blocked output positions.
    ocb : int
        Output channels per tile (a multiple of 16; the packed weight layout uses it too).
    mode : str
        ``"bcast"`` (broadcast one input value, FMA into 16-lane channel vectors),
        ``"vnni"`` (tensorize 16x4 blocks with ``intrin``) or ``"dw"`` (depthwise: input and
        weight are both channel vectors).
    order : tuple of str
        Order of the outer tile loops: ``"s<i>"`` for spatial dim ``i`` and ``"o"`` for the
        output-channel block. Loops that need no split are skipped.
    par : tuple of str
        Outer loops fused into the parallel loop; they must lead ``order``. The ``pad`` block is
        computed once per iteration of that loop.
    intrin : str or None
        Tensor intrinsic name for ``mode == "vnni"``.
    reduce_names : tuple of str
        Names of the reduction axes of ``acc`` in order.
    inner_reduce : str or None
        Reduction axis that stays inside the register block (the 4-channel VNNI group, which is
        tensorized, or the nibble position of packed int4 weights, which is unrolled).
    min_tasks : int
        Without a padded copy: parallelize the shortest prefix of ``par`` (in ``order``) with at
        least this many iterations and run the remaining tile loops serially inside. Per-task
        buffers (the accumulator) are allocated once per parallel iteration, so tiny tiles must
        not each be a parallel iteration.
    """

    tiles: tuple[int, ...]
    ocb: int
    mode: str
    order: tuple[str, ...]
    par: tuple[str, ...]
    intrin: str | None = None
    reduce_names: tuple[str, ...] = ()
    inner_reduce: str | None = None
    min_tasks: int = 0

    def describe(self, kind: str) -> str:
        """Short schedule tag for ``Kernel.info["schedule"]``."""
        tile = "x".join(str(t) for t in self.tiles)
        return f"{kind}_{self.mode}_oc{self.ocb}_tile{tile}"


def _extent(sch: s_tir.Schedule, loop) -> int:
    return int(sch.get(loop).extent)


def _split_exact(sch, loop, factor: int):
    """Split ``loop`` by ``factor``, or return (None, loop) when ``factor`` covers it."""
    if factor >= _extent(sch, loop):
        return None, loop
    return sch.split(loop, [None, factor])


def _fuse(sch, loops):
    return sch.fuse(*loops) if len(loops) > 1 else loops[0]


def schedule_tiled(func: tirx.PrimFunc, plan: TilePlan) -> tirx.PrimFunc:
    """Register-block a pad/acc/out kernel; see the module docstring.

    ``acc`` is the anchor: its output-channel extent is a multiple of ``plan.ocb`` and its
    spatial extents are multiples of ``plan.tiles``, so the register block never carries a
    predicate (which would block tensorize/vectorize); ``out`` follows with
    ``reverse_compute_at`` and absorbs any ragged edge.

    Parameters
    ----------
    func : tirx.PrimFunc
        Unscheduled kernel with blocks ``acc``, ``out`` and optionally ``pad``.
    plan : TilePlan
        Tiling decisions.

    Returns
    -------
    tirx.PrimFunc
        The scheduled function.
    """
    sch = s_tir.Schedule(func)
    out = sch.get_sblock("out")
    acc = sch.get_sblock("acc")
    try:
        pad = sch.get_sblock("pad")
    except Exception:  # noqa: BLE001 - TVM raises a generic error for a missing block
        pad = None
    # The accumulator keeps the default "global" scope: TVM 0.27 lowers every "local" buffer to
    # a heap workspace, while a small "global" one becomes a stack alloca that LLVM promotes to
    # zmm registers.

    nsp = len(plan.tiles)
    loops = sch.get_loops(acc)
    spatial, o = loops[:nsp], loops[nsp]
    reds = dict(zip(plan.reduce_names, loops[nsp + 1 :], strict=True))
    named, inners = {}, []
    for i, (lp, t) in enumerate(zip(spatial, plan.tiles, strict=True)):
        lo, li = _split_exact(sch, lp, t)
        if lo is not None:
            named[f"s{i}"] = lo
        inners.append(li)
    ob, oi = _split_exact(sch, o, plan.ocb)
    if ob is not None:
        named["o"] = ob
    ov, ol = sch.split(oi, [None, VEC])
    order = [nm for nm in plan.order if nm in named]
    outer = [named[nm] for nm in order]
    inner_red = reds.get(plan.inner_reduce) if plan.inner_reduce else None
    head_red = [reds[nm] for nm in plan.reduce_names if nm != plan.inner_reduce]
    tail = [inner_red] if inner_red is not None else []
    if plan.mode == "vnni":
        sch.reorder(*outer, *head_red, *inners, ov, ol, *tail)
    else:
        sch.reorder(*outer, *head_red, *tail, *inners, ov, ol)
    m = _fuse(sch, inners)
    reg = [lp for lp in (m, ov) if _extent(sch, lp) > 1]

    # Epilogue right after each register block: 16-lane vectors, tile positions unrolled.
    if outer:
        sch.reverse_compute_at(out, outer[-1], preserve_unit_loops=False)
    e_loops = sch.get_loops(out)[len(outer) :]
    e_o = e_loops[-1]
    e_sp = [lp for lp in e_loops[:-1] if _extent(sch, lp) > 1]
    if _extent(sch, e_o) > VEC:
        e_ov, e_ol = sch.split(e_o, [None, VEC])
    else:
        e_ov, e_ol = None, e_o
    sch.vectorize(e_ol)
    for lp in ([_fuse(sch, e_sp)] if e_sp else []) + ([e_ov] if e_ov is not None else []):
        if _extent(sch, lp) <= 32:
            sch.unroll(lp)

    # Parallel loop; the padded input copy is computed once per parallel iteration.
    par = [named[nm] for nm in order if nm in plan.par]  # plan.par leads plan.order
    if plan.min_tasks:
        ext = [_extent(sch, lp) for lp in par]
        tasks, keep = 1, len(par)
        for i, e in enumerate(ext):
            tasks *= e
            if tasks >= plan.min_tasks:
                keep = i + 1
                break
        par = par[:keep]
    fused = _fuse(sch, par) if par else None
    n_outer = len(outer) - max(len(par) - 1, 0)  # outer loops left after the fuse
    if pad is not None:
        if fused is not None:
            sch.compute_at(pad, fused, preserve_unit_loops=False)
        p_loops = sch.get_loops(pad)[1 if fused is not None else 0 :]
        if p_loops and _extent(sch, p_loops[-1]) > 1:
            sch.vectorize(p_loops[-1])

    # Loop annotations need compact dataflow, i.e. must precede decompose_reduction.
    if fused is not None:
        sch.parallel(fused)
    if plan.mode != "vnni":
        sch.vectorize(ol)
        for lp in tail + reg:
            sch.unroll(lp)
    init = sch.decompose_reduction(acc, (head_red + tail)[0])
    i_loops = sch.get_loops(init)[n_outer:]
    sch.vectorize(i_loops[-1])
    for lp in i_loops[:-1]:
        if _extent(sch, lp) > 1:
            sch.unroll(lp)
    if plan.mode == "vnni":
        sch.tensorize(ol, plan.intrin)
        for lp in reg:
            sch.unroll(lp)
    return sch.mod["main"]


def schedule_elementwise(
    func: tirx.PrimFunc, block: str, *, lanes: int = 64, min_parallel: int = 16384
) -> tirx.PrimFunc:
    """Flatten an elementwise block into vector lanes and (for large tensors) parallel chunks.

    The vector width is the largest power of two ``<= lanes`` dividing the element count, so no
    predicate (and no scalar tail) is needed. Below ``min_parallel`` elements the kernel stays
    on one thread: the parallel launch would cost more than the work.
    """
    sch = s_tir.Schedule(func)
    b = sch.get_sblock(block)
    fused = _fuse(sch, sch.get_loops(b))
    total = _extent(sch, fused)
    vec = lanes
    while vec > 1 and total % vec:
        vec //= 2
    outer, inner = _split_exact(sch, fused, vec)
    if vec > 1:
        sch.vectorize(inner)
    elif outer is None:
        outer = inner
    if outer is not None and total >= min_parallel:
        sch.parallel(outer)
    return sch.mod["main"]


# ---------------------------------------------------------------------------------------------
# Planner: pick register-block shapes with a small throughput model.
# ---------------------------------------------------------------------------------------------

# Throughput model of one core (calibrated on the 2-core EPYC this library was tuned on).
FMA_PER_CYCLE = 2.0  # 512-bit FMA / vpdpbusd per cycle
LOADS_PER_CYCLE = 2.0  # vector loads incl. embedded / explicit broadcasts
FMA_LATENCY = 4.0  # cycles; every accumulator chain advances once per FMA
UNPACK_WEIGHT = 0.5  # unpack ops partly issue on the vector pipes the FMAs do not use
EPI_CYCLES = 2.0  # per 16-lane output vector of the fused epilogue (incl. the store)
PAD_PIXEL_CYCLES = 1.5  # per padded-copy pixel (border test + copy of one 64-byte line)


def step_cycles(mb: int, ocv: int, unpack_ops: float, group: int, mode: str) -> float:
    """Cycles of one reduction step (one channel group) of an ``mb x (16*ocv)`` register block.

    ``mode`` is ``"bcast"`` (activation broadcast folded into the FMA as a memory operand),
    ``"vnni"`` (explicit ``vpbroadcastd`` per 4 channels, which also occupies a vector pipe)
    or ``"dw"`` (one activation vector per FMA). ``unpack_ops`` counts the dequantization ops
    per weight vector and step.
    """
    per_acc = group // 4 if mode == "vnni" else group  # FMAs per accumulator and step
    fma = mb * ocv * per_acc
    bcasts = mb * per_acc if mode != "dw" else mb * ocv
    loads = ocv + bcasts
    vec = fma + UNPACK_WEIGHT * ocv * unpack_ops + (bcasts if mode == "vnni" else 0)
    return max(vec / FMA_PER_CYCLE, loads / LOADS_PER_CYCLE, FMA_LATENCY * per_acc) + 0.5


TASKS_PER_THREAD = 4  # parallel iterations per thread when the tile loops can be split freely
STACK_ACC_BYTES = 1024  # TVM puts smaller constant-size CPU buffers on the stack
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
