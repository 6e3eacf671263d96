"""LimitVectorWidth: split vectorized loops that are far wider than a vector register.

TVM lowers a loop ``T.vectorized(n)`` to ``n``-lane LLVM vectors, whatever ``n`` is. Kernels
that vectorize a whole channel axis (the padded input copy of a conv over 512 or 2048
channels) so produce ``<512 x float>`` operations, and LLVM's backend takes superlinear time
to legalize them into registers: at ``-O3`` the JIT of ResNet-50's FP32 kernels took 371 s,
and 4.3 s with those loops split into 16-lane vectors, with unchanged run time (the split
loop issues the same register-wide instructions).

For every PrimFunc, each vectorized loop whose lanes times the widest element written by its
block exceed ``max_bits`` is split into a serial outer loop and a vectorized inner loop of
the largest power-of-two lane count that divides the extent and fits ``max_bits``. Loops with
no such divisor of at least ``min_lanes`` lanes (an odd extent) keep their width: a ragged
split would put a predicate on every lane, which TVM scalarizes.
"""

from __future__ import annotations

import warnings

import tvm
from tvm import s_tir, tirx

__all__ = ["LimitVectorWidth", "UninspectedFunctionWarning", "limit_vector_width"]


class UninspectedFunctionWarning(UserWarning):
    """A PrimFunc the pass could not open as a schedule kept its loops unchanged."""


def _blocks(sch: s_tir.Schedule, parent) -> list:
    out = []
    for blk in sch.get_child_blocks(parent):
        out.append(blk)
        out += _blocks(sch, blk)
    return out


def _written_bits(sch: s_tir.Schedule, block) -> int:
    return max((tvm.DataType(r.source.dtype).bits for r in sch.get(block).writes), default=0)


def _lanes(extent: int, bits: int, max_bits: int) -> int:
    """Largest power of two dividing ``extent`` with ``lanes * bits <= max_bits``."""
    lanes = extent & -extent
    while lanes * bits > max_bits:
        lanes //= 2
    return lanes


def limit_vector_width(func: tirx.PrimFunc, max_bits: int = 512, min_lanes: int = 4
                       ) -> tuple[tirx.PrimFunc, int]:
    """``func`` with its over-wide vectorized loops split, and how many loops were split."""
    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    split = 0
    for blk in _blocks(sch, sch.get_sblock("root")):
        bits = _written_bits(sch, blk)
        for loop in sch.get_loops(blk):
            node = sch.get(loop)
            if node.kind != tirx.ForKind.VECTORIZED or not isinstance(node.extent, tirx.IntImm):
                continue
            extent = int(node.extent)
            if bits == 0 or extent * bits <= max_bits:
                continue
            lanes = _lanes(extent, bits, max_bits)
            if lanes < min_lanes:
                continue
            _, inner = sch.split(loop, [None, lanes])
            sch.vectorize(inner)
            split += 1
    return (sch.mod["main"], split) if split else (func, 0)


@tvm.transform.module_pass(opt_level=0, name="LimitVectorWidth")
class LimitVectorWidth:
    """Split vectorized loops wider than ``max_bits`` (see the module docstring).

    Parameters
    ----------
    max_bits : int
        Widest vector a loop may produce (default 512: one AVX-512 register, two AVX2 ones).
    min_lanes : int
        Narrowest inner vector a split may leave; extents without a power-of-two divisor of
        at least this many lanes are left as they are.
    """

    def __init__(self, max_bits: int = 512, min_lanes: int = 4):
        for name, value in (("max_bits", max_bits), ("min_lanes", min_lanes)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"LimitVectorWidth: {name} must be a positive int, got "
                                 f"{value!r}")
        self.max_bits = max_bits
        self.min_lanes = min_lanes
        self.split = 0  # loops split by the last run

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        out = tvm.IRModule({gv: f for gv, f in mod.functions_items()}, attrs=mod.attrs)
        self.split = 0
        for gv, func in mod.functions_items():
            if not isinstance(func, tirx.PrimFunc):
                continue
            try:
                new, n = limit_vector_width(func, self.max_bits, self.min_lanes)
            except s_tir.ScheduleError as err:
                warnings.warn(f"LimitVectorWidth left {gv.name_hint!r} unchanged (not a "
                              f"schedulable PrimFunc: {str(err).strip().splitlines()[0]})",
                              UninspectedFunctionWarning, stacklevel=2)
                continue
            if n:
                out[gv] = new
                self.split += n
        return out
