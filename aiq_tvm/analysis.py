"""Per-layer costs of an annotated Relax module, counted by TVM.

For every AIQ layer (and every conv/matmul left unsupported) the FLOPs are
``tvm.s_tir.analysis.estimate_tir_flops`` of the PrimFunc that ``LegalizeOps`` produces for
that call site's conv2d/matmul alone (bias and activation are not counted); element counts
come from the static shapes.  The result is a pure-Python :class:`~aiq_tvm.cost.CostModel`.
"""

from __future__ import annotations

import math

import tvm
from tvm import relax
from tvm.s_tir.analysis import estimate_tir_flops

from ._ir import is_op
from .cost import CostModel, LayerCost
from .passes import (
    LAYER_OPS,
    LayerEntry,
    binding_name_hints,
    is_layer_function,
    layer_readers,
    layer_table,
    parse_layer,
)

__all__ = ["cost_model", "call_flops"]

_FLOPS_CACHE: dict[str, int] = {}


def call_flops(call: relax.Call) -> int:
    """FLOPs TVM estimates for one op call, legalized on its own.

    The call's operands become parameters of a one-op function with the same static types;
    results are cached by the call's printed signature.
    """
    params = [relax.Var(f"a{i}", arg.ty) for i, arg in enumerate(call.args)]
    bb = relax.BlockBuilder()
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(relax.Call(call.op, params, call.attrs, call.ty_args))
        bb.emit_func_output(out)
    mod = bb.get()
    key = mod.script(show_meta=False)
    if key not in _FLOPS_CACHE:
        legal = relax.transform.LegalizeOps()(mod)
        prims = [f for _, f in legal.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
        if len(prims) != 1:
            raise ValueError(f"{call.op.name} legalized to {len(prims)} PrimFuncs, expected 1")
        _FLOPS_CACHE[key] = int(estimate_tir_flops(tvm.IRModule({"main": prims[0]})))
    return _FLOPS_CACHE[key]


def _numel(shape) -> int:
    return math.prod(int(d) for d in shape)


def _root_call(func: relax.Function) -> relax.Call:
    for val in relax.analysis.get_var2val(func).values():
        if is_op(val, LAYER_OPS):
            return val
    raise ValueError("composite has no conv2d/matmul")


def _residual_sources(readers: dict) -> dict[str, str]:
    """Layer -> the layer whose output it adds as its fused residual."""
    return {c: p for p, r in readers.items() if r is not None for c in r.residual}


def _layer_cost(mod: tvm.IRModule, e: LayerEntry, readers: dict, sources: dict) -> LayerCost:
    """The cost entry of one layer (AIQ composite) or unsupported weighted op."""
    if e.is_layer:
        func = mod[e.gv]
        if not is_layer_function(func):
            raise ValueError(f"{e.gv} is not an AIQ composite")
        info = parse_layer(func)
        root = _root_call(func)
        shapes = (info.in_shape, info.weight_shape, info.out_shape)
        r = readers.get(e.name)
        kind = dict(op=info.op, supported=True, reason="",
                    consumers=r.data if r is not None and r.data else None,
                    residual_consumers=() if r is None else r.residual,
                    residual_source=sources.get(e.name),
                    out_channels=info.out_channels,
                    residual_elems=0 if info.residual is None else _numel(info.out_shape),
                    strides=tuple(info.strides), padding=tuple(info.padding),
                    groups=int(info.groups), dilation=tuple(info.dilation))
    else:
        root = e.call
        shapes = tuple(tuple(a.ty.shape) for a in (root.args[0], root.args[1], root))
        kind = dict(op=e.op, supported=False, reason=e.reason, consumers=None,
                    out_channels=int(root.ty.shape[1]) if len(root.ty.shape) > 1 else 1,
                    residual_elems=0)
    if any(not isinstance(d, (int, tvm.tirx.IntImm)) for s in shapes for d in s):
        raise ValueError(
            f"layer {e.name!r} has symbolic shapes {shapes}; specialize the batch size "
            "before building a cost model"
        )
    return LayerCost(
        name=e.name, flops=call_flops(root), weight_elems=_numel(shapes[1]),
        in_elems=_numel(shapes[0]), out_elems=_numel(shapes[2]),
        in_shape=tuple(int(d) for d in shapes[0]), weight_shape=tuple(int(d) for d in shapes[1]),
        out_shape=tuple(int(d) for d in shapes[2]), **kind,
    )


def cost_model(mod: tvm.IRModule, func_name: str = "main", requant_fusion: bool = True
               ) -> CostModel:
    """Build the cost model of a module annotated by AnnotatePrecision (static shapes).

    Raises
    ------
    ValueError
        If a layer has a symbolic shape (specialize the batch first).
    """
    # Unsupported layers keep no composite name; a weight computed from a parameter in
    # forward() (scaled, standardized) still names them by that parameter.
    entries = layer_table(mod, func_name, binding_name_hints(mod[func_name]))
    readers = layer_readers(mod, entries, func_name)
    sources = _residual_sources(readers)
    return CostModel([_layer_cost(mod, e, readers, sources) for e in entries],
                     requant_fusion=requant_fusion)
