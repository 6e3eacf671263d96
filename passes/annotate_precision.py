"""AnnotatePrecision: mark every conv/dense layer with the precision a plan gives it.

Each quantizable layer (conv2d or dense with its bias add and activation) is grouped into a
private composite function, the way BYOC partitioning does, and annotated::

    R.func_attr({"Composite": "aiq.conv2d_bias_act", "Primitive": True,
                 "aiq.layer": "layer1.0.conv1", "aiq.precision": "int8"})

The composite stays a valid ``Primitive`` function, so an annotated module still compiles
unchanged with the standard pipelines; :class:`~aiq_tvm.passes.QuantizeAnnotated` replaces
the composites with low-bit kernels.  Conv/matmul ops that have no AIQ kernel stay FP32 and
are listed in the module attribute ``aiq.unsupported`` (layer name -> reason).  Running the
pass on an annotated module only updates the precisions.  Linear layers on token inputs that
were exported as batched matmuls are first rewritten into 2-D denses
(:class:`~aiq_tvm.passes.BatchedMatmulToDense`), and constant fills that feed elementwise ops
into scalars (:class:`~aiq_tvm.passes.FillsToScalars`), so that binding the weights and folding
constants never materializes a per-token weight copy or a filled attention-sized tensor.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, PyExprVisitor, mutator, visitor

from aiq_tvm._ir import is_op
from aiq_tvm.plan import Plan, as_plan

from ._layers import (
    LAYER_OPS,
    OTHER_WEIGHTED_OPS,
    is_layer_function,
    layer_patterns,
    parse_layer,
    static_vars,
    unsupported_reason,
    user_binding_name,
    weight_layer_name,
)
from .batched_matmul_to_dense import BatchedMatmulToDense
from .fills_to_scalars import FillsToScalars

__all__ = [
    "AnnotatePrecision", "LayerEntry", "LayerReaders", "layer_table", "layer_consumers",
    "layer_readers",
]


@dataclass
class LayerEntry:
    """One conv/dense of a module, in program order (a row of :func:`layer_table`).

    ``kind`` is ``"layer"`` (an AIQ composite call; ``gv`` is its function) or
    ``"unsupported"`` (a weighted op without an AIQ kernel; ``reason`` says why).
    """

    kind: str
    op: str  # "conv2d", "depthwise_conv2d", "grouped_conv2d", "dense" or an unsupported op
    var: relax.Var  # the variable the call is bound to
    call: relax.Call
    weight: relax.Expr | None
    gv: relax.GlobalVar | None = None
    existing: str | None = None  # the composite's aiq.layer name, when already annotated
    reason: str = ""
    name: str = ""  # unique layer name, given by layer_table

    @property
    def is_layer(self) -> bool:
        return self.kind == "layer"


@visitor
class _LayerCollector(PyExprVisitor):
    """Collect, in program order, composite layer calls and leftover weighted ops."""

    def __init__(self, mod: tvm.IRModule, static: set):
        super().__init__()
        self.mod = mod
        self.static = static
        self.entries: list[LayerEntry] = []

    def visit_var_binding_(self, binding) -> None:
        val = binding.value
        if isinstance(val, relax.Call):
            if isinstance(val.op, relax.GlobalVar):
                func = self.mod[val.op]
                if is_layer_function(func):
                    info = parse_layer(func)
                    self.entries.append(LayerEntry(
                        kind="layer", gv=val.op, var=binding.var, call=val,
                        op=info.op, weight=val.args[info.weight],
                        existing=str(func.attrs["aiq.layer"]) if "aiq.layer" in func.attrs
                        else None,
                    ))
            elif is_op(val, LAYER_OPS + OTHER_WEIGHTED_OPS):
                reason = unsupported_reason(val, self.static)
                if reason is not None:
                    op = val.op.name.split(".")[-1]
                    self.entries.append(LayerEntry(
                        kind="unsupported", var=binding.var, call=val,
                        op="dense" if op == "matmul" else op, reason=reason,
                        weight=val.args[1] if len(val.args) > 1 else None,
                    ))
        super().visit_var_binding_(binding)


def binding_name_hints(func: relax.Function) -> list[tuple]:
    """``(weight expr, name)`` for conv/matmul ops bound to a user-chosen variable name.

    Taken before partitioning: afterwards the composite call is bound to the variable of the
    pattern's last op (the activation), but it still receives the same weight object.
    """
    var2val = relax.analysis.get_var2val(func)
    static = static_vars(func)
    hints = []
    for var, val in var2val.items():
        if is_op(val, LAYER_OPS) and len(val.args) > 1:
            name = user_binding_name(var)
            if name:
                w = val.args[1]
                inner = var2val.get(w) if isinstance(w, relax.Var) else None
                if is_op(inner, "relax.permute_dims"):
                    w = inner.args[0]
                hints.append((w, name))
            else:
                source = _weight_parameter(val.args[1], var2val, static)
                if source is not None:
                    hints.append((val.args[1], weight_layer_name(source)))
    return hints


def _weight_parameter(w, var2val: dict, static: set) -> relax.Var | None:
    """The one weight parameter a weight computed in ``forward()`` comes from
    (``self.conv.weight * 0.5``, a standardized ``(w - w.mean()) / w.std()``, a transpose), or
    None (a constant, several parameters, or an activation)."""
    if w not in static:
        return None
    params, todo, seen = set(), [w], set()
    while todo:
        v = todo.pop()
        if v in seen:
            continue
        seen.add(v)
        if v not in var2val:
            params.add(v)  # a function parameter (static: a weight, never a data input)
            continue
        todo.extend(relax.analysis.free_vars(var2val[v]))
    return params.pop() if len(params) == 1 else None


def _name_entries(entries: list[LayerEntry], hints: list[tuple] = ()) -> None:
    """Give every entry a unique layer name (see passes/_layers.py for the rule)."""
    counters: dict[str, int] = {}
    seen: dict[str, int] = {}
    for e in entries:
        hint = next((n for w, n in hints if e.weight is not None and w.same_as(e.weight)),
                    None)
        base = e.existing or weight_layer_name(e.weight) or hint or user_binding_name(e.var)
        op_key = e.op.replace("depthwise_", "").replace("grouped_", "")
        k = counters.get(op_key, 0)
        counters[op_key] = k + 1
        if not base:
            base = f"{op_key}_{k}"
        n = seen.get(base, 0)
        seen[base] = n + 1
        e.name = base if n == 0 else f"{base}:{n}"


def layer_table(mod: tvm.IRModule, func_name: str = "main", hints: list[tuple] = ()
                ) -> list[LayerEntry]:
    """Layers of an annotated module in program order, each named (:class:`LayerEntry`)."""
    func = mod[func_name]
    col = _LayerCollector(mod, static_vars(func))
    col.visit_expr(func)
    _name_entries(col.entries, hints)
    return col.entries


@dataclass(frozen=True)
class LayerReaders:
    """Who reads a layer's output: layers taking it as their data input, and layers adding it
    as their fused residual."""

    data: tuple[str, ...]
    residual: tuple[str, ...]


# Ops a layer's uint8 output may pass through on its way to the layers reading it: a max
# commutes with any non-decreasing quantizer (max(q(a), q(b)) = q(max(a, b)), and a padding of
# -inf quantizes to 0, the smallest uint8), so the producer can requantize for the layers
# behind the pool and the pool runs on bytes (ResNet's stem -> 3 x 3 / 2 max-pool -> block 1);
# a reshape moves no value (a conv -> flatten -> classifier).
_ORDER_PRESERVING = ("relax.nn.max_pool2d", "relax.reshape")


def _order_preserving_source(val, sources: dict):
    """The layer variable ``val`` (an order-preserving op on one tensor) reads, else None."""
    if not is_op(val, _ORDER_PRESERVING) or not isinstance(val.args[0], relax.Var):
        return None
    return sources.get(val.args[0])


def layer_readers(mod: tvm.IRModule, entries: list[LayerEntry] | None = None,
                  func_name: str = "main") -> dict[str, LayerReaders | None]:
    """For each layer, the layers reading its output as data or as residual, directly or
    through max-pooling or a reshape (``_ORDER_PRESERVING``).

    ``None`` when any other op, a weight or bias operand of a layer, or the function's result
    also reads the output (or nothing reads it).
    """
    entries = layer_table(mod, func_name) if entries is None else entries
    func = mod[func_name]
    layer_of_var = {e.var: e.name for e in entries if e.is_layer}
    readers: dict = {v: [] for v in layer_of_var}
    source = {v: v for v in layer_of_var}  # a layer's output, or a pool of it -> the layer

    def note(expr, reader):
        for v in relax.analysis.free_vars(expr):
            if v in source:
                readers[source[v]].append(reader)

    layer_calls = {e.var: e for e in entries if e.is_layer}
    for block in func.body.blocks:
        for b in block.bindings:
            val = b.value
            pooled = _order_preserving_source(val, source)
            if pooled is not None:
                source[b.var] = pooled
            elif b.var in layer_calls:
                info = parse_layer(mod[val.op])
                roles = {info.data: "data", info.residual: "residual"}
                for i, arg in enumerate(val.args):
                    role = roles.get(i)
                    note(arg, None if role is None else (role, layer_calls[b.var].name))
            else:
                note(val, None)
    note(func.body.body, None)
    out = {}
    for v, name in layer_of_var.items():
        r = readers[v]
        if not r or any(x is None for x in r):
            out[name] = None
            continue
        out[name] = LayerReaders(tuple(n for role, n in r if role == "data"),
                                 tuple(n for role, n in r if role == "residual"))
    return out


def layer_consumers(mod: tvm.IRModule, entries: list[LayerEntry] | None = None,
                    func_name: str = "main") -> dict[str, tuple | None]:
    """For each layer, the layers whose data input is its output, when nothing else reads it.

    ``None`` when any other op, a non-data operand of a layer (e.g. a fused residual) or the
    function's result also reads the output: only then could the producer write the
    consumers' uint8 input directly.
    """
    out = {}
    for name, r in layer_readers(mod, entries, func_name).items():
        out[name] = r.data if r is not None and r.data and not r.residual else None
    return out



@mutator
class _PerLayerComposites(PyExprMutator):
    """Give every layer call site its own annotated composite function.

    ``FuseOpsByPattern`` shares one composite among structurally equal layers; the plan needs
    one function per layer to carry that layer's name and precision.
    """

    def __init__(self, mod: tvm.IRModule, layers: list[LayerEntry],
                 precisions: dict[str, str]):
        super().__init__(mod)
        self.mod_ = mod
        self.layers = layers
        self.precisions = precisions
        self.k = 0

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if not isinstance(call.op, relax.GlobalVar) or not is_layer_function(self.mod_[call.op]):
            return call
        entry = self.layers[self.k]
        self.k += 1
        func = self.mod_[call.op]
        precision = self.precisions[entry.name]
        if "aiq.layer" in func.attrs:  # already one function per layer: update in place
            self.builder_.update_func(call.op, func.with_attr("aiq.precision", precision))
            return call
        func = func.with_attr("aiq.layer", entry.name)
        func = func.with_attr("aiq.precision", precision)
        gv = self.builder_.add_func(func, "aiq_" + re.sub(r"\W", "_", entry.name))
        return relax.Call(gv, call.args, call.attrs, call.ty_args)


@tvm.transform.module_pass(opt_level=0, name="AnnotatePrecision")
class AnnotatePrecision:
    """Group conv/dense layers into composites annotated with their plan precision.

    Parameters
    ----------
    plan : Plan, str or dict
        Per-layer precisions (:class:`aiq_tvm.Plan`), a single precision name for every layer,
        or a dict of plan rules.
    func_name : str
        The Relax function to annotate.

    Raises
    ------
    ValueError
        If the plan names layers the model does not have (the message lists its layers).
    """

    def __init__(self, plan: Plan | str | Mapping = "fp32", func_name: str = "main"):
        self.plan = as_plan(plan)
        self.func_name = func_name
        self._static_ref: list = [set()]
        self._patterns = layer_patterns(self._static_ref)

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        if self.func_name not in [gv.name_hint for gv in mod.get_global_vars()]:
            raise ValueError(f"module has no function {self.func_name!r} to annotate")
        mod = relax.transform.ConvertToDataflow()(mod)
        # Token-wise Linear layers exported as batched matmuls become 2-D dense layers, and
        # constant fills become scalars, before binding and folding could materialize either.
        mod = BatchedMatmulToDense(self.func_name)(mod)
        mod = FillsToScalars(self.func_name)(mod)
        hints = binding_name_hints(mod[self.func_name])
        self._static_ref[0] = static_vars(mod[self.func_name])
        mod = relax.transform.FuseOpsByPattern(
            self._patterns, bind_constants=False, entry_functions=[self.func_name]
        )(mod)
        entries = layer_table(mod, self.func_name, hints)
        resolved = self.plan.resolve([e.name for e in entries])
        unsupported = {e.name: e.reason for e in entries if not e.is_layer}
        # Plan entries that asked an unsupported layer for a low precision: kept fp32, reported.
        fallbacks = {n: resolved[n] for n in unsupported if resolved[n] != "fp32"}
        layers = [e for e in entries if e.is_layer]
        rewriter = _PerLayerComposites(mod, layers, resolved)
        func = rewriter.visit_expr(mod[self.func_name])
        rewriter.builder_.update_func(mod.get_global_var(self.func_name), func)
        mod = rewriter.builder_.get()
        mod = relax.transform.DeadCodeElimination([self.func_name])(mod)
        mod = mod.with_attr("aiq.unsupported", unsupported)
        mod = mod.with_attr("aiq.fallbacks", fallbacks)
        return mod
