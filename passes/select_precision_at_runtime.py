"""SelectPrecisionAtRuntime: compile every candidate precision once, pick per layer at run time.

The AIQ search measures the accuracy of many plans.  Recompiling the model per plan would
take minutes each; instead this pass lowers every annotated layer to *all* its candidate
precisions (through the same lowering as :class:`~aiq_tvm.passes.QuantizeAnnotated`, so the
kernels and numerics are identical to a final build) behind a chain of ``R.If`` on a new
``main`` parameter ``aiq_select: R.Tensor((L,), "int32")``: entry ``i`` is the index of layer
``i``'s precision in its candidate list.  Module attributes ``aiq.select_layers`` (layer names
in index order) and ``aiq.select_choices`` (layer -> candidate precisions) describe it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from aiq_tvm.schemes import get_precision
from aiq_tvm.targets import current_target

from ._flatten import channels_last_flatten
from ._layers import is_layer_function, parse_layer
from ._lowering import LayerValues, corrected_values, emit_layer, layer_values

__all__ = ["SelectPrecisionAtRuntime", "SELECT_PARAM", "select_vector"]

SELECT_PARAM = "aiq_select"


@mutator
class _Switcher(PyExprMutator):
    def __init__(self, mod, func, choices, calibration, target, select_var, index,
                 numerics_target=None):
        super().__init__(mod)
        self.mod_ = mod
        self.var2val = dict(relax.analysis.get_var2val(func))
        self.choices = choices
        self.calibration = calibration
        self.target = target
        self.numerics_target = numerics_target
        self.select = select_var
        self.index = index
        self.residual = None
        self.order = None  # the dense layer's feature order (channels_last_flatten)

    def _branch(self, info, values, data, precision, qp, name) -> relax.SeqExpr:
        bb = self.builder_
        bb._begin_binding_block()
        values = corrected_values(values, info, precision, self.calibration, name,
                                  self.numerics_target or self.target)
        if self.order is not None:  # after the correction: its statistics are in torch's order
            values = LayerValues(values.weight[:, self.order], values.bias)
        out = emit_layer(bb, info, values, data, precision, qp, self.target, name,
                         self.residual, numerics_target=self.numerics_target)
        block = bb._end_block()
        return relax.SeqExpr([block], out)

    def _chain(self, i, k, info, values, data, qp, name) -> relax.SeqExpr:
        precs = self.choices[name]
        if k == len(precs) - 1:
            return self._branch(info, values, data, precs[k], qp, name)
        bb = self.builder_
        bb._begin_binding_block()
        # i < len(select) by construction (the VM checks select's static shape); "clip" rather
        # than the default "fast" only because TOPI warns once per "fast" take it lowers.
        sel = bb.emit(relax.op.take(self.select, relax.const(i, "int64"), mode="clip"))
        cond = bb.emit(relax.op.equal(sel, relax.const(k, "int32")))
        then = self._branch(info, values, data, precs[k], qp, name)
        other = self._chain(i, k + 1, info, values, data, qp, name)
        out = bb.emit(relax.If(cond, then, other))
        block = bb._end_block()
        return relax.SeqExpr([block], out)

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if not isinstance(call.op, relax.GlobalVar):
            return call
        func = self.mod_[call.op]
        if not is_layer_function(func) or "aiq.layer" not in func.attrs:
            return call
        name = str(func.attrs["aiq.layer"])
        if name not in self.index:
            return call
        info = parse_layer(func)
        values = layer_values(info, call.args, self.var2val, name)
        qp = None
        if any(get_precision(p).quantizes_activations for p in self.choices[name]):
            if self.calibration is None:
                raise ValueError(f"layer {name!r} has 8-bit candidates but no calibration")
            qp = self.calibration.qparams(name)
        data = call.args[info.data]
        self.residual = None if info.residual is None else call.args[info.residual]
        flat = channels_last_flatten(self.builder_, data, self.lookup_binding) \
            if info.op == "dense" else None
        data, self.order = flat if flat is not None else (data, None)
        i = self.index[name]
        seq = self._chain(i, 0, info, values, data, qp, name)
        # Flatten the outermost SeqExpr into the current block.
        for block in seq.blocks:
            for b in block.bindings:
                self.builder_.emit_normalized(b)
        return seq.body


@tvm.transform.module_pass(opt_level=0, name="SelectPrecisionAtRuntime")
class SelectPrecisionAtRuntime:
    """Lower each annotated layer to all its candidates behind a runtime switch.

    Parameters
    ----------
    choices : mapping of str to sequence of str
        Layer name -> candidate precisions (index order of the switch).  Layers not listed
        keep their annotated precision and get no switch entry.
    calibration : aiq_tvm.Calibration, optional
        Required when a candidate uses 8-bit activations.
    target : optional
        Defaults to the target in scope.
    numerics_target : optional
        The target whose integer arithmetic the kernels reproduce (default: ``target``).
    """

    def __init__(self, choices: Mapping[str, Sequence[str]], calibration=None, target=None,
                 func_name: str = "main", numerics_target=None):
        self.choices = {k: [get_precision(p).name for p in v] for k, v in choices.items()}
        for k, v in self.choices.items():
            if not v:
                raise ValueError(f"layer {k!r} has no candidate precisions")
        self.calibration = calibration
        self.target = target
        self.numerics_target = numerics_target
        self.func_name = func_name

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        target = current_target(self.target)
        mod = relax.transform.ToNonDataflow()(mod)
        gv = mod.get_global_var(self.func_name)
        func = mod[gv]
        names = []
        for _, f in mod.functions_items():
            if is_layer_function(f) and "aiq.layer" in f.attrs:
                names.append(str(f.attrs["aiq.layer"]))
        unknown = sorted(set(self.choices) - set(names))
        if unknown:
            raise ValueError(f"choices name layers the module does not have: {unknown}")
        order = _program_order(mod, func)
        layers = [n for n in order if n in self.choices]
        index = {n: i for i, n in enumerate(layers)}
        select = relax.Var(SELECT_PARAM, relax.TensorType((len(layers),), "int32"))
        new_params = list(func.params)
        num_input = int(func.attrs["num_input"]) if "num_input" in func.attrs else len(
            new_params)
        new_params.insert(num_input, select)
        numerics = None if self.numerics_target is None else current_target(self.numerics_target)
        rewriter = _Switcher(mod, func, self.choices, self.calibration, target, select, index,
                             numerics)
        body = rewriter.visit_expr(func.body)
        attrs = dict(func.attrs)
        if "num_input" in attrs:
            attrs["num_input"] = num_input + 1
        new_func = relax.Function(new_params, body, func.ret_ty,
                                  attrs=tvm.ir.make_node("ir.DictAttrs", **attrs))
        rewriter.builder_.update_func(gv, new_func)
        out = rewriter.builder_.get()
        out = relax.transform.DeadCodeElimination([self.func_name])(out)
        out = relax.transform.ConvertToDataflow()(out)
        out = out.with_attr("aiq.select_layers", layers)
        return out.with_attr("aiq.select_choices", {n: self.choices[n] for n in layers})


def _program_order(mod, func) -> list[str]:
    names = []

    def visit(e):
        if isinstance(e, relax.Call) and isinstance(e.op, relax.GlobalVar):
            f = mod[e.op]
            if is_layer_function(f) and "aiq.layer" in f.attrs:
                names.append(str(f.attrs["aiq.layer"]))

    relax.analysis.post_order_visit(func.body, visit)
    return names


def select_vector(layers: Sequence[str], choices: Mapping[str, Sequence[str]],
                  assignment: Mapping[str, str]) -> np.ndarray:
    """The ``aiq_select`` input for a plan (index of each layer's precision in its choices)."""
    out = np.zeros(len(layers), np.int32)
    for i, n in enumerate(layers):
        p = assignment.get(n, "fp32")
        if p not in choices[n]:
            raise ValueError(f"precision {p!r} is not a compiled candidate of layer {n!r}: "
                             f"{list(choices[n])}")
        out[i] = list(choices[n]).index(p)
    return out
