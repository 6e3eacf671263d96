"""Software prefetch of the next output-channel block's weights.

A kernel whose parallel loop runs over output-channel blocks (each task reads one block of
the packed weights and computes every output position of it) reads its block from memory in
its first pass over the positions and from the cache in the others. In a whole inference the
weights are not cached, so the first pass waits on memory at the compute's pace, far beyond
what one core streams, and the later passes leave the memory idle. Hardware prefetchers do
not help: they run a few lines ahead of the demand stream, and the stream is the burst.

This rewrite spreads the read of the **next** block over the current block's later passes:
every iteration of the innermost serial loop of those passes issues one prefetch (or more, so
that the whole block is covered), at an address advancing linearly through the next block.
ResNet-50's 1x1 conv 2048 -> 512 at 7 x 7 (batch 1, 2 threads, Intel host, session 24) ran
513 us with a cold cache without it, 405 us with it, and 369 us hot either way.

The rewrite reads the scheduled loop nest, so it applies to default, tuned and database
schedules alike: a parallel loop whose extent is the weight's block count and whose variable
selects the weight block, serial loops over output positions (the passes), and inside them
serial loops over the block's weights. Any other structure is returned unchanged.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import tvm
from tvm import tirx
from tvm.s_tir.stmt import SBlock, SBlockRealize

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


@dataclass(frozen=True)
class _Nest:
    """The loops of one output-channel task, outermost first."""

    parallel: tirx.For
    passes: list  # serial loops over output positions (weight-invariant), extent > 1
    weight_loops: list  # serial loops over the block's weights, extent > 1


def prefetch_enabled() -> bool:
    """``AIQ_WEIGHT_PREFETCH=0`` turns the rewrite off (comparisons); anything else but 1 is
    an error."""
    env = os.environ.get(ENV_SWITCH, "")
    if env not in ("", "0", "1"):
        raise ValueError(f"{ENV_SWITCH} must be 0 or 1, got {env!r}")
    return env != "0"


def prefetch_next_weight_block(func: tirx.PrimFunc, weight: str = "weight"
                               ) -> tuple[tirx.PrimFunc, int]:  # fmt: skip
    """``func`` with the next weight block prefetched during the current block's later passes,
    and the prefetches issued per iteration (0: structure not matched, ``func`` unchanged)."""
    if not prefetch_enabled():
        return func, 0
    buf = next((b for b in func.params if getattr(b, "name", None) == weight), None)
    if buf is None or len(buf.shape) < 2:
        return func, 0
    nest = _find_nest(func.body, buf)
    if nest is None:
        return func, 0
    split, per_group = _prefetch_loop(nest, buf)
    return func.with_body(_replace(func.body, nest.weight_loops[-1], split)), per_group


# ---------------------------------------------------------------------------------------------
# Finding the task's loop nest
# ---------------------------------------------------------------------------------------------


def _children(stmt) -> list:
    if isinstance(stmt, SBlockRealize):
        return [stmt.block]
    if isinstance(stmt, SBlock):
        return [s for s in (stmt.init, stmt.body) if s is not None]
    if isinstance(stmt, tirx.SeqStmt):
        return list(stmt.seq)
    if isinstance(stmt, tirx.IfThenElse):
        return [s for s in (stmt.then_case, stmt.else_case) if s is not None]
    if isinstance(stmt, (tirx.For, tirx.AttrStmt, tirx.LetStmt)):
        return [stmt.body]
    return []


def _paths_to_blocks(stmt, path=()):
    """(loops from the root, SBlockRealize) of every block under ``stmt``."""
    if isinstance(stmt, SBlockRealize):
        yield path, stmt
    loops = path + (stmt,) if isinstance(stmt, tirx.For) else path
    for child in _children(stmt):
        yield from _paths_to_blocks(child, loops)


def _weight_region(block: SBlock, buf: tirx.Buffer):
    return next((r.region for r in block.reads if r.source.same_as(buf)), None)


def _vars_of(exprs) -> set:
    out = set()
    for e in exprs:
        out.update(v for v in tirx.analysis.undefined_vars(e))
    return out


def _loop_vars_feeding(realize: SBlockRealize, region) -> set:
    """Loop variables the weight region's start depends on, through the block's bindings."""
    block = realize.block
    bound = {iv.var: val for iv, val in zip(block.iter_vars, realize.iter_values, strict=True)}
    region_vars = _vars_of([r.min for r in region])
    fed = set()
    for v in region_vars:
        fed |= _vars_of([bound[v]]) if v in bound else {v}
    return fed


def _find_nest(body, buf: tirx.Buffer) -> _Nest | None:
    for loops, realize in _paths_to_blocks(body):
        region = _weight_region(realize.block, buf)
        if region is None or not realize.block.reads:
            continue
        nest = _task_nest(loops, realize, region, buf)
        if nest is not None:
            return nest
    return None


def _extent(loop: tirx.For) -> int | None:
    return int(loop.extent) if isinstance(loop.extent, tirx.IntImm) else None


def _task_nest(loops, realize, region, buf) -> _Nest | None:
    par = [i for i, lp in enumerate(loops) if lp.kind == tirx.ForKind.PARALLEL]
    if len(par) != 1 or _extent(loops[par[0]]) != int(buf.shape[0]):
        return None
    fed = _loop_vars_feeding(realize, region)
    parallel = loops[par[0]]
    if parallel.loop_var not in fed:
        return None
    # Serial loops of the task down to the register block (unrolled / vectorized loops).
    serial = []
    for lp in loops[par[0] + 1:]:
        if lp.kind != tirx.ForKind.SERIAL:
            break
        serial.append(lp)
    if not serial:
        return None
    varying = [lp.loop_var in fed for lp in serial]
    passes, weight_loops = [], []
    for lp, v in zip(serial, varying, strict=True):
        if _extent(lp) is None:
            return None
        if _extent(lp) == 1:
            continue
        if v:
            weight_loops.append(lp)
        elif weight_loops:
            return None  # a pass loop inside the weight loops: not the pattern
        else:
            passes.append(lp)
    n_pass = math.prod(_extent(lp) for lp in passes)
    if not weight_loops or not 2 <= n_pass <= MAX_PASSES:
        return None
    return _Nest(parallel, passes, weight_loops)


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


def pacing(block_lines: int, groups: int) -> tuple[int, int]:
    """(scale, lines per group): group ``g`` prefetches lines ``(g * scale >> 16) + j`` for
    ``j < per_group``, i.e. ``floor(g * block_lines / groups)`` on, as a multiply and a shift
    (a 64-bit division in the loop doubled a small fp32 register block's time)."""
    return round(block_lines * (1 << _SHIFT) / groups), math.ceil(block_lines / groups)


def _prefetch_loop(nest: _Nest, buf) -> tuple[tirx.For, int]:
    """The innermost weight loop split in two, the next block's lines prefetched at the top of
    each outer iteration, paced evenly over the passes after the first; and the prefetches
    per group.

    The accumulation loop itself stays free of the prefetch: with a prefetch call inside it,
    LLVM stored an int8 register block's 21 accumulators to the stack on every iteration
    (2.1x the time)."""
    block_elems = math.prod(int(d) for d in buf.shape[1:])
    elem_bytes = max(tvm.DataType(buf.dtype).bits // 8, 1)
    line_elems = CACHE_LINE_BYTES // elem_bytes
    block_lines = math.ceil(block_elems / line_elems)
    loop = nest.weight_loops[-1]
    inner = _inner_extent(_extent(loop))
    outer_var = tirx.Var(f"{loop.loop_var.name}_pf", "int32")
    inner_var = tirx.Var(f"{loop.loop_var.name}_in", "int32")
    outer = nest.weight_loops[:-1]
    groups = (math.prod(_extent(lp) for lp in nest.passes) - 1) * math.prod(
        _extent(lp) for lp in outer) * (_extent(loop) // inner)
    scale, per_group = pacing(block_lines, groups)
    group = (_linear(nest.passes) - 1) * math.prod(_extent(lp) for lp in outer)
    group = (group + _linear(outer)) * (_extent(loop) // inner) + tirx.Cast("int64", outer_var)
    line = tirx.shift_right(group * scale, _SHIFT)
    nxt = tirx.min(nest.parallel.loop_var + 1, int(buf.shape[0]) - 1)
    zeros = [0] * (len(buf.shape) - 2)
    calls = []
    for j in range(per_group):
        index = tirx.Cast("int32", (line + j) * line_elems)
        load = tirx.BufferLoad(buf, [nxt, *zeros, index])
        call = tirx.call_llvm_intrin("void", "llvm.prefetch.p0", tirx.address_of(load),
                                     0, PREFETCH_LOCALITY, 1)  # fmt: skip
        calls.append(tirx.Evaluate(call))
    first_pass = _linear(nest.passes) == 0
    fetch = tirx.IfThenElse(tirx.Not(first_pass),
                            calls[0] if len(calls) == 1 else tirx.SeqStmt(calls), None)
    bind = tirx.LetStmt(loop.loop_var, outer_var * inner + inner_var)
    inner_loop = tirx.For(inner_var, 0, inner, tirx.ForKind.SERIAL,
                          tirx.SeqStmt([bind, loop.body]))  # fmt: skip
    split = tirx.For(outer_var, 0, _extent(loop) // inner, tirx.ForKind.SERIAL,
                     tirx.SeqStmt([fetch, inner_loop]), None, loop.annotations)  # fmt: skip
    return split, per_group


def _replace(stmt, old: tirx.Stmt, new: tirx.Stmt):
    """``stmt`` with the statement ``old`` replaced by ``new`` (nodes rebuilt along the way)."""
    if stmt.same_as(old):
        return new
    if isinstance(stmt, SBlockRealize):
        return SBlockRealize(list(stmt.iter_values), stmt.predicate,
                             _replace(stmt.block, old, new))  # fmt: skip
    if isinstance(stmt, SBlock):
        return SBlock(list(stmt.iter_vars), list(stmt.reads), list(stmt.writes),
                      stmt.name_hint, _replace(stmt.body, old, new), stmt.init,
                      list(stmt.alloc_buffers), list(stmt.match_buffers),
                      stmt.annotations)  # fmt: skip
    if isinstance(stmt, tirx.SeqStmt):
        return tirx.SeqStmt([_replace(s, old, new) for s in stmt.seq])
    if isinstance(stmt, tirx.For):
        return tirx.For(stmt.loop_var, stmt.min, stmt.extent, stmt.kind,
                        _replace(stmt.body, old, new), stmt.thread_binding,
                        stmt.annotations)  # fmt: skip
    if isinstance(stmt, tirx.IfThenElse):
        return tirx.IfThenElse(stmt.condition, _replace(stmt.then_case, old, new),
                               stmt.else_case)  # fmt: skip
    return stmt
