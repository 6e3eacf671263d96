"""ScheduleGlue: give TVM's unscheduled CPU kernels a parallel, vectorizable loop nest.

TVM 0.27's CPU pipeline schedules nothing, so every fused elementwise kernel (residual add +
relu + quantize, pooling, layout copies) runs as one single-threaded loop nest.  For each
PrimFunc not marked ``tirx.is_scheduled``: inline producer blocks into their consumers where
TIR allows it, then for each remaining block fuse its spatial loops, split off a 16-wide inner
loop when the extent allows (LLVM vectorizes it) and run the outer loop in parallel.
Functions the rules cannot handle are left unchanged.
"""

from __future__ import annotations

import tvm
from tvm import s_tir, tirx

__all__ = ["ScheduleGlue"]

_SCHEDULED = ("tirx.is_scheduled", "tir.is_scheduled")
_MIN_PARALLEL = 2048  # below this many iterations a parallel launch costs more than it saves


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
    spatial = loops[:n_spatial]
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


def schedule_glue_func(func: tirx.PrimFunc, lanes: int = 16) -> tirx.PrimFunc:
    """Schedule one PrimFunc (returns it unchanged if the rules do not apply)."""
    try:
        sch = s_tir.Schedule(tvm.IRModule({"main": func}))
        blocks = sch.get_child_blocks(sch.get_sblock("root")) if _has_root(sch) else []
        for blk in blocks[:-1]:
            try:
                sch.compute_inline(blk)
            except Exception:  # noqa: BLE001 - not inlinable (e.g. reduction); keep it
                pass
        root_blocks = sch.get_child_blocks(sch.get_sblock("root"))
        for blk in root_blocks:
            _schedule_block(sch, blk, lanes)
        return sch.mod["main"].with_attr("tirx.is_scheduled", True)
    except Exception:  # noqa: BLE001 - any failure: keep TVM's default code
        return func


def _has_root(sch) -> bool:
    try:
        sch.get_sblock("root")
        return True
    except Exception:  # noqa: BLE001
        return False


@tvm.transform.module_pass(opt_level=0, name="ScheduleGlue")
class ScheduleGlue:
    """Parallelize and vectorize unscheduled PrimFuncs (see the module docstring)."""

    def __init__(self, target=None, lanes: int = 16):
        self.target = target
        self.lanes = lanes

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        out = tvm.IRModule({gv: f for gv, f in mod.functions_items()}, attrs=mod.attrs)
        for gv, func in mod.functions_items():
            if isinstance(func, tirx.PrimFunc) and not _is_scheduled(func):
                out[gv] = schedule_glue_func(func, self.lanes)
        return out
