"""Software prefetch of the next weight block.

Many kernels run a task as a sequence of weight blocks, each read by several passes over
output positions: a direct or 1x1 conv whose parallel loop runs over output-channel blocks
(every pass is a row of output positions), or a Winograd GEMM whose task walks the (tile
element, channel block) panels of its transformed weights. The first pass over a block reads
it from memory and the later ones from the cache. In a whole inference the weights are not
cached, so the first pass waits on memory at the compute's pace, far beyond what one core
streams, and the later passes leave the memory idle. Hardware prefetchers do not help: they
run a few lines ahead of the demand stream, and the stream is the burst.

This rewrite spreads the read of the **next** block over the current block's later passes:
the innermost weight loop is split, and each outer iteration prefetches a few lines of the
next block, at an address advancing evenly through it. ResNet-50's 1x1 conv 2048 -> 512 at
7 x 7 (batch 1, 2 threads, Intel host, session 24, docs/runs/s24_prefetch_kernel.py) ran
427 us with a cold cache without it, 359 us with it, and 333-344 us hot.

Tasks that walk **every** block in each pass (rows first: a task of output rows runs all the
output-channel blocks for its rows, each block's weights then read from the L2 by the other
passes) read all the weights from memory in their thread's first pass, block after block.
There the next block's lines are prefetched during the current block's reduction, in that
first pass only (:data:`ROWS_FIRST_MIN_BYTES` of weights and up, whatever the L2 holds: in a
whole inference the other layers have evicted them). The other passes run the loop as it was:
the pass loop holds both versions under a test of the pass, since with a prefetch in the
reduction loop LLVM stores the register block's accumulators on every iteration (about
twice a 1x1 conv's time on 28 x 28 rows). ResNet-50's 1x1 convs on 14 x 14 maps (1 MB of
fp32 weights, rows first on the Intel host's 2 MiB L2) ran 1.11-1.16x faster alone with a
cold cache, unchanged hot, and 1.11-1.21x faster inside whole inferences (session 34,
docs/performance_224.md, docs/runs/s34/rows_prefetch_*.txt).

The rewrite reads the scheduled loop nest, so it applies to default, tuned and database
schedules alike. It needs loops that move through the weights (the blocks: the parallel loop,
unless its tasks are images or rows that all read every block, and serial loops under it),
then 2 to :data:`MAX_PASSES` passes that do not, then the block's own loops; it prefetches the
lines from the next block's first element to its last. Any other structure is returned
unchanged.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import tvm
from tvm import s_tir, tirx
from tvm.s_tir.stmt import SBlock, SBlockRealize
from tvm.sym import Analyzer, IntervalSet

from aiq_tvm._ir import tir_children as _children
from aiq_tvm._ir import tir_substitute

from .schedules import divisors

CACHE_LINE_BYTES = 64
# prefetcht1: into L2 and outward, not L1 (the next block would evict the current one's
# working set from a 48 KB L1).
PREFETCH_LOCALITY = 2
ENV_SWITCH = "AIQ_WEIGHT_PREFETCH"
_SHIFT = 16
MAX_INNER = 64
# Many passes hide the first one's memory wait already: a 1x1 conv 2048 -> 512 at 7 x 7,
# batch 8 (56 passes), ran 1-3 % slower hot with the prefetch and no faster cold.
MAX_PASSES = 16
# Weights up to this share of a core's L2 stay cached (as the planner's row split assumes).
L2_SHARE = 0.75
# Rows-first tasks (see the module docstring) from this many bytes of weights: ResNet-50's
# 1x1 convs on 28 x 28 maps (256 KB) ran as fast with it as without, alone and cold; smaller
# layers (ResNet-20's, at most 147 KB) were not measured.
ROWS_FIRST_MIN_BYTES = 256 * 1024
# Lines a rows-first pass prefetches per reduction step (at most): the next block's lines
# spread over the whole of the current block's reduction, not one burst.
ROWS_FIRST_LINES = 2
# Prefetches of one group written out one by one up to this many; a larger group (few passes
# to spread a big block over: SKNet's dilated 3x3 Winograd GEMM at 8 x 8, 256 lines per
# group) is a loop over its lines. The 256 calls of that kernel took LLVM 232 s to compile,
# its first 200 of them 0.5 s; ResNet-50's largest groups have 86 lines (written out).
MAX_UNROLLED_PREFETCHES = 128


@dataclass(frozen=True)
class _Nest:
    """One task's loops around the accumulation, outermost first, and where its weights are.

    ``blocks`` (the parallel loop first, where it moves through the weights) select the
    block, ``passes`` run over output positions without moving in the weights,
    ``weight_loops`` walk the block."""

    blocks: list
    passes: list
    weight_loops: list
    start: tirx.PrimExpr  # the block's first element (flat), in the loop variables
    span: int  # elements from the block's first to its last
    # Blocks innermost (the next block is read right after this one): whether this pass is
    # the first of its thread, the one that reads the weights from beyond the L2.
    first_pass: tirx.PrimExpr | None = None

    @property
    def rows_first(self) -> bool:
        return self.first_pass is not None


def prefetch_enabled() -> bool:
    """``AIQ_WEIGHT_PREFETCH=0`` turns the rewrite off (comparisons); anything else but 1 is
    an error."""
    env = os.environ.get(ENV_SWITCH, "")
    if env not in ("", "0", "1"):
        raise ValueError(f"{ENV_SWITCH} must be 0 or 1, got {env!r}")
    return env != "0"


def prefetch_next_weight_block(func: tirx.PrimFunc, l2_bytes: int, threads: int = 1,
                               weight: str = "weight") -> tuple[tirx.PrimFunc, int]:
    """``func`` with the next weight block prefetched during the current block's later passes
    (or, for rows-first tasks, during the current block in each thread's first pass: tasks
    are split over ``threads``), and the lines each prefetch group fetches (0: ``func``
    unchanged; ``Kernel.info["weight_prefetch"]``).

    Unchanged where the structure does not match, or where all the weights fit
    :data:`L2_SHARE` of a core's L2 (``l2_bytes``; 0: unknown, no such limit): they stay
    cached between the tasks and the calls, and the prefetch would only add its instructions
    (ResNet-20 FP32 at batch 16, 10-40 KB per layer, ran 0.91x the speed with it at 90bebde).
    Rows-first tasks are rewritten whatever the L2 holds, from :data:`ROWS_FIRST_MIN_BYTES`
    of weights (their first pass reads them from beyond the L2 in a whole inference)."""
    if not prefetch_enabled():
        return func, 0
    buf = next((b for b in func.params if getattr(b, "name", None) == weight), None)
    if buf is None:
        return func, 0
    nbytes = math.prod(int(d) for d in buf.shape) * tvm.DataType(buf.dtype).bits // 8
    cached = bool(l2_bytes) and nbytes <= L2_SHARE * l2_bytes
    rows_first = threads if nbytes >= ROWS_FIRST_MIN_BYTES else 0
    nest = _find_nest(func.body, buf, rows_first)
    if nest is None or (cached and not nest.rows_first):
        return func, 0
    split, per_group = _prefetch_loop(nest, buf)
    func = func.with_body(_replace(func.body, nest.weight_loops[-1], split))
    if nest.rows_first:  # the original loop is kept beside the split one: one definition each
        func = _ssa(func)
    return func, per_group


# ---------------------------------------------------------------------------------------------
# Finding the task's loop nest
# ---------------------------------------------------------------------------------------------


def _paths_to_blocks(stmt, path=()):
    """(loops from the root, SBlockRealize) of every block under ``stmt``."""
    if isinstance(stmt, SBlockRealize):
        yield path, stmt
    loops = path + (stmt,) if isinstance(stmt, tirx.For) else path
    for child in _children(stmt):
        yield from _paths_to_blocks(child, loops)


def _weight_region(block: SBlock, buf):
    return next((r.region for r in block.reads if r.source.same_as(buf)), None)


def _extent(loop: tirx.For) -> int | None:
    return int(loop.extent) if isinstance(loop.extent, tirx.IntImm) else None


def _find_nest(body, buf, rows_first_threads: int = 0) -> _Nest | None:
    """The task nest of the first block reading ``buf`` that matches a pattern; rows-first
    tasks only if ``rows_first_threads`` (the threads the parallel loop is split over)."""
    for loops, realize in _paths_to_blocks(body):
        region = _weight_region(realize.block, buf)
        if region is not None and all(_extent(lp) for lp in loops):
            nest = _task_nest(loops, realize, region, buf, rows_first_threads)
            if nest is not None:
                return nest
    return None


def _flat_range(loops, realize, region, buf) -> tuple[Analyzer, tirx.PrimExpr, tirx.PrimExpr]:
    """(analyzer with the loops' ranges, flat index of the region's first element, of its
    last) in the loop variables."""
    ana = Analyzer()
    for lp in loops:
        ana.bind(lp.loop_var, tvm.ir.Range.from_min_extent(lp.min, lp.extent))
    for iv, value in zip(realize.block.iter_vars, realize.iter_values, strict=True):
        ana.bind(iv.var, value)
    first = last = tirx.const(0, "int64")
    stride = 1
    for dim, rng in zip(reversed(list(buf.shape)), reversed(list(region)), strict=True):
        lo = tirx.Cast("int64", ana.simplify(rng.min))
        first = first + lo * stride
        last = last + (lo + tirx.Cast("int64", rng.extent) - 1) * stride
        stride *= int(dim)
    return ana, ana.simplify(first), ana.simplify(last)


def _split_loops(chain, flat_vars) -> tuple[list, list, list] | None:
    """(blocks, passes, weight loops) of the task's loops: weight-moving loops, then loops
    that leave the weights in place, then weight-moving loops again; ``None`` otherwise."""
    groups: list[list] = [[], [], []]
    stage = 0
    for lp in chain:
        if _extent(lp) == 1:
            continue
        moves = lp.loop_var in flat_vars
        if stage == 0 and not moves:
            stage = 1
        elif stage == 1 and moves:
            stage = 2
        elif stage == 2 and not moves:
            return None  # a pass inside the block's own loops: not the pattern
        groups[stage].append(lp)
    return tuple(groups) if all(groups) else None


def _output_vars(realize, ana: Analyzer) -> set:
    """Loop variables the block's written region moves with (its output positions and
    channels, not the reduction); ``ana`` binds the block's iterators (:func:`_flat_range`)."""
    return _vars_of([ana.simplify(rng.min) for w in realize.block.writes for rng in w.region])


def _split_rows_first(chain, flat_vars, out_vars) -> tuple[list, list, list] | None:
    """(passes, blocks, weight loops) of a task that walks every block in each pass: loops
    that leave the weights in place, then loops moving weights and outputs (the blocks), then
    loops moving the weights alone (the block's reduction); ``None`` otherwise."""
    groups: list[list] = [[], [], []]
    stage = 0
    for lp in chain:
        if _extent(lp) == 1:
            continue
        var = lp.loop_var
        kind = 0 if var not in flat_vars else (1 if var in out_vars else 2)
        if kind < stage:
            return None
        stage = kind
        groups[kind].append(lp)
    return tuple(groups) if groups[1] and groups[2] else None


def _matches_buffers(stmt) -> bool:
    """Whether a block under ``stmt`` matches buffers (a tensorized dot product): the rows-first
    rewrite keeps two copies of the loop, and TVM's SSA renaming leaves a copied match
    constraint unprovable, so those kernels are left alone."""
    if isinstance(stmt, SBlock) and len(stmt.match_buffers):
        return True
    return any(_matches_buffers(child) for child in _children(stmt))


def _thread_first_pass(task: tirx.For, passes: list, threads: int) -> tirx.PrimExpr:
    """Whether the current pass is the first of its thread: TVM's parallel launch gives each
    of ``threads`` a contiguous run of ``ceil(extent / threads)`` tasks."""
    run = -(-_extent(task) // threads)
    return tirx.all(task.loop_var % run == 0, _linear(passes) == 0)


def _task_nest(loops, realize, region, buf, rows_first_threads: int = 0) -> _Nest | None:
    par = [i for i, lp in enumerate(loops) if lp.kind == tirx.ForKind.PARALLEL]
    if len(par) != 1:
        return None
    chain = [loops[par[0]]]
    for lp in loops[par[0] + 1:]:
        if lp.kind != tirx.ForKind.SERIAL:
            break
        chain.append(lp)
    ana, first, last = _flat_range(loops, realize, region, buf)
    moving = _vars_of([first])
    task = chain[0]
    if task.loop_var not in moving:
        chain = chain[1:]  # tasks of other images or rows: the task's own loops walk the blocks
    split = _split_loops(chain, moving)
    first_pass = None
    if split is not None:
        blocks, passes, weight_loops = split
        if not 2 <= math.prod(_extent(lp) for lp in passes) <= MAX_PASSES:
            return None
    elif rows_first_threads and task.loop_var not in moving:
        split = _split_rows_first(chain, moving, _output_vars(realize, ana))
        if split is None or _matches_buffers(split[2][-1]):
            return None
        passes, blocks, weight_loops = split
        first_pass = _thread_first_pass(task, passes, rows_first_threads)
    else:
        return None
    inner = set(loops[loops.index(weight_loops[0]):])  # the block's loops, register block too
    dom = {lp.loop_var: IntervalSet(lp.min, lp.min + lp.extent - 1) for lp in inner}
    lo, hi = ana.int_set(first, dom).min_value, ana.int_set(last, dom).max_value
    span = ana.simplify(hi - lo + 1)
    if not isinstance(span, tirx.IntImm) or int(span) < 1:
        return None
    return _Nest(blocks, passes, weight_loops, ana.simplify(lo), int(span), first_pass)


def _vars_of(exprs) -> set:
    out = set()
    for e in exprs:
        out.update(tirx.analysis.undefined_vars(e))
    return out


# ---------------------------------------------------------------------------------------------
# The prefetch statement and the rewrite
# ---------------------------------------------------------------------------------------------


def _linear(loops) -> tirx.PrimExpr:
    idx = tirx.const(0, "int64")
    for lp in loops:
        idx = idx * _extent(lp) + tirx.Cast("int64", lp.loop_var)
    return idx


def _inner_extent(extent: int) -> int:
    """Iterations of the innermost weight loop between two prefetch groups: its largest
    divisor up to :data:`MAX_INNER`."""
    return max(d for d in range(1, min(extent, MAX_INNER) + 1) if extent % d == 0)


def _rows_first_inner(extent: int, steps: int, lines: int) -> int:
    """Iterations of the innermost weight loop between two prefetch groups of a task walking
    the blocks innermost: its largest divisor that keeps a group to
    :data:`ROWS_FIRST_LINES` lines (``steps``: outer weight iterations per block)."""
    return max(d for d in divisors(extent)
               if math.ceil(lines / (steps * extent // d)) <= ROWS_FIRST_LINES or d == 1)


def pacing(block_lines: int, groups: int) -> tuple[int, int]:
    """(scale, lines per group): group ``g`` prefetches lines ``(g * scale >> 16) + j`` for
    ``j < per_group``, i.e. ``floor(g * block_lines / groups)`` on, as a multiply and a shift
    (a 64-bit division in the loop doubled a small fp32 register block's time)."""
    return round(block_lines * (1 << _SHIFT) / groups), math.ceil(block_lines / groups)


def _next_block_start(nest: _Nest) -> tuple[list, tirx.PrimExpr]:
    """(let statements, flat index of the next block's first element): the block the task's
    block loops reach next (the parallel loop's next iteration after the serial ones wrap; the
    last block prefetches itself)."""
    extents = [_extent(lp) for lp in nest.blocks]
    nxt = tirx.min(_linear(nest.blocks) + 1, math.prod(extents) - 1)
    ana, lets = Analyzer(), []
    for i, lp in enumerate(nest.blocks):
        var = tirx.Var(f"{lp.loop_var.name}_next", "int32")
        below = math.prod(extents[i + 1:])
        lets.append(tirx.LetStmt(var, tirx.Cast("int32", nxt // below % extents[i])))
        ana.bind(lp.loop_var, var)
    return lets, ana.simplify(nest.start)


def _prefetch_loop(nest: _Nest, buf) -> tuple[tirx.For, int]:
    """The innermost weight loop split in two, the next block's lines prefetched at the top of
    each outer iteration, paced evenly over the passes after the first (rows first: over the
    block's own reduction, in the thread's first pass; the loop as it was in the other
    passes); and the prefetches per group.

    The accumulation loop itself stays free of the prefetch: with a prefetch call inside it,
    LLVM stored an int8 register block's 21 accumulators to the stack on every iteration
    (about twice the kernel's time in an ad-hoc run of session 24). A rows-first first pass
    may prefetch at every reduction step (:data:`ROWS_FIRST_LINES`) and pays those stores, once
    per thread and call."""
    line_elems = CACHE_LINE_BYTES // max(tvm.DataType(buf.dtype).bits // 8, 1)
    lines = math.ceil(nest.span / line_elems)
    loop = nest.weight_loops[-1]
    outer = nest.weight_loops[:-1]
    # Blocks innermost: the next block's lines spread over this block's own weight loops
    # (in the thread's first pass). Otherwise over the later passes (the first one reads the
    # block itself).
    pacing_passes = 1 if nest.rows_first else math.prod(_extent(lp) for lp in nest.passes) - 1
    steps = pacing_passes * math.prod(_extent(lp) for lp in outer)
    inner = (_rows_first_inner(_extent(loop), steps, lines) if nest.rows_first
             else _inner_extent(_extent(loop)))  # fmt: skip
    outer_var = tirx.Var(f"{loop.loop_var.name}_pf", "int32")
    inner_var = tirx.Var(f"{loop.loop_var.name}_in", "int32")
    scale, per_group = pacing(lines, steps * (_extent(loop) // inner))
    group = tirx.const(0, "int64") if nest.rows_first else _linear(nest.passes) - 1
    group = group * math.prod(_extent(lp) for lp in outer)
    group = (group + _linear(outer)) * (_extent(loop) // inner) + tirx.Cast("int64", outer_var)
    groups = steps * (_extent(loop) // inner)
    # Where each group takes the same whole number of lines, a plain multiply (no shift).
    line = (group * (lines // groups) if lines % groups == 0
            else tirx.shift_right(group * scale, _SHIFT))  # fmt: skip
    lets, start = _next_block_start(nest)
    zeros = [0] * (len(buf.shape) - 1)

    def prefetch(j):
        index = tirx.Cast("int32", start + (line + j) * line_elems)
        return tirx.Evaluate(tirx.call_llvm_intrin(
            "void", "llvm.prefetch.p0", tirx.address_of(tirx.BufferLoad(buf, [*zeros, index])),
            0, PREFETCH_LOCALITY, 1))  # fmt: skip

    if per_group <= MAX_UNROLLED_PREFETCHES:
        calls = [prefetch(j) for j in range(per_group)]
    else:
        j = tirx.Var(f"{loop.loop_var.name}_line", "int32")
        calls = [tirx.For(j, 0, per_group, tirx.ForKind.SERIAL,
                          prefetch(tirx.Cast("int64", j)))]  # fmt: skip
    fetch = tirx.SeqStmt([*lets, *calls])
    if not nest.rows_first:
        fetch = tirx.IfThenElse(tirx.Not(_linear(nest.passes) == 0), fetch, None)
    bind = tirx.LetStmt(loop.loop_var, outer_var * inner + inner_var)
    inner_loop = tirx.For(inner_var, 0, inner, tirx.ForKind.SERIAL,
                          tirx.SeqStmt([bind, loop.body]))  # fmt: skip
    split = tirx.For(outer_var, 0, _extent(loop) // inner, tirx.ForKind.SERIAL,
                     tirx.SeqStmt([fetch, inner_loop]), None, loop.annotations)  # fmt: skip
    if nest.rows_first:
        # Only a thread's first pass reads the weights from beyond the L2; the other passes
        # keep the loop as it was (with the prefetch in it, LLVM stores the accumulators at
        # each of its iterations).
        split = tirx.IfThenElse(nest.first_pass, split, loop)
    return split, per_group


def _ssa(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """``func`` with every variable defined once (TVM's ConvertSSA renames the repeats)."""
    return s_tir.transform.ConvertSSA()(tvm.IRModule({"main": func}))["main"]


def _replace(stmt, old: tirx.Stmt, new: tirx.Stmt):
    """``stmt`` with the statement ``old`` replaced by ``new``: the nodes on the way down to it
    rebuilt, every other node kept."""
    return tir_substitute(stmt, lambda node: new if node.same_as(old) else None)
