"""SplitAtLayers: cut a switchable ``main`` into segments that can be run one after another.

An exhaustive evaluation runs every plan of a few groups of layers.  Plans that agree on the
first groups compute the same activations up to there, so an evaluator that can stop after a
group and resume from its activations computes each prefix once.  This pass cuts
:class:`~aiq_tvm.passes.SelectPrecisionAtRuntime`'s ``main`` before the switch of each layer
in ``cuts`` into functions ``aiq_segment_0`` ... ``aiq_segment_<len(cuts)>``: segment ``j``
takes the tensors live where it starts (segment 0: ``main``'s inputs) and ``aiq_select``,
and returns a tuple of the tensors live where it ends (the last one: ``main``'s result).

It runs after ``ToNonDataflow`` and before ``CallTIRRewrite``: every kernel is already fused
and scheduled, so the segments call exactly ``main``'s kernels on exactly its tensors, and a
plan run segment by segment gives ``main``'s logits bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import tvm
from tvm import relax
from tvm.relax.utils import copy_with_new_vars

from .select_precision_at_runtime import SELECT_PARAM

__all__ = ["SplitAtLayers", "segment_name"]


def segment_name(j: int) -> str:
    return f"aiq_segment_{j}"


@tvm.transform.module_pass(opt_level=0, name="SplitAtLayers")
class SplitAtLayers:
    """Replace ``main`` by segment functions cut before the switches of the layers ``cuts``
    (names from the module's ``aiq.select_layers``, in that order)."""

    def __init__(self, cuts: Sequence[str], func_name: str = "main"):
        self.cuts = list(cuts)
        self.func_name = func_name

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        func = mod[self.func_name]
        if any(isinstance(b, relax.DataflowBlock) for b in func.body.blocks):
            raise ValueError("SplitAtLayers runs on non-dataflow functions (after ToNonDataflow)")
        select = next((p for p in func.params if p.name == SELECT_PARAM), None)
        if select is None or "aiq.select_layers" not in mod.attrs:
            raise ValueError("no aiq_select switch to split at; run SelectPrecisionAtRuntime")
        layers = [str(n) for n in mod.attrs["aiq.select_layers"]]
        unknown = [n for n in self.cuts if n not in layers]
        if unknown:
            raise ValueError(f"cuts name layers without a switch: {unknown}")
        bindings = [b for block in func.body.blocks for b in block.bindings]
        positions = _cut_positions(bindings, select, [layers.index(n) for n in self.cuts])
        bounds = [0, *positions, len(bindings)]
        inputs = [p for p in func.params if not p.same_as(select)]
        out = tvm.IRModule({gv: f for gv, f in mod.functions_items()
                            if gv.name_hint != self.func_name}, attrs=mod.attrs)
        for j in range(len(bounds) - 1):
            live_in = inputs if j == 0 else _live_at(bindings, inputs, func.body.body, bounds[j])
            last = j == len(bounds) - 2
            result = func.body.body if last else relax.Tuple(
                _live_at(bindings, inputs, func.body.body, bounds[j + 1]))
            seg = relax.Function(
                [*live_in, select],
                relax.SeqExpr([relax.BindingBlock(bindings[bounds[j]:bounds[j + 1]])], result),
                func.ret_ty if last else relax.TupleType([v.ty for v in result.fields]))
            # main's variables are shared by the segments here: each gets its own copies
            out[relax.GlobalVar(segment_name(j))] = copy_with_new_vars(seg)
        return out


def _reads_select_entry(value, select, index: int) -> bool:
    """``value`` is the switch's ``take(aiq_select, index)`` (a TIR call after legalization)."""
    if not isinstance(value, relax.Call):
        return False
    args = list(value.args)
    if value.op.same_as(tvm.ir.Op.get("relax.call_tir")) and isinstance(args[1], relax.Tuple):
        args = list(args[1].fields)
    consts = [a.value.numpy() for a in args if isinstance(a, tvm.ir.Constant)]
    return (any(a.same_as(select) for a in args)
            and any(c.ndim == 0 and int(c) == index for c in consts))


def _cut_positions(bindings, select, indices: list[int]) -> list[int]:
    """Where each cut goes: at the top-level read of the layer's ``aiq_select`` entry, which
    starts its switch (the reads of later candidates sit inside the switch's branches)."""
    positions = []
    for index in indices:
        start = positions[-1] + 1 if positions else 0
        pos = next((k for k in range(start, len(bindings))
                    if _reads_select_entry(bindings[k].value, select, index)), None)
        if pos is None:
            raise ValueError(f"no switch on aiq_select[{index}] after the previous cut; cuts "
                             "must follow the layers' order and name layers with 2+ candidates")
        positions.append(pos)
    return positions


def _live_at(bindings, inputs, result, position: int) -> list[relax.Var]:
    """The variables defined before ``position`` (or inputs) that are used at or after it."""
    used = set()
    for b in bindings[position:]:
        used.update(relax.analysis.free_vars(b.value))
    used.update(relax.analysis.free_vars(result))
    defined = [*inputs, *(b.var for b in bindings[:position])]
    return [v for v in defined if v in used]
