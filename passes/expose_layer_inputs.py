"""ExposeLayerInputs: make ``main`` also return the input activation of every AIQ layer.

Used for calibration: ``main`` returns ``(original_output, input_0, ..., input_{k-1},
residual_0, ..., residual_{m-1})`` with the distinct layer inputs in program order; the module
attribute ``aiq.exposed_layers`` lists, per returned input, the names of the layers reading it
(layers sharing an input, like a residual block's first conv and its downsample conv, share one
entry and so get one range). With ``residuals=True`` the fused residual (shortcut) operands
that are no layer's data input follow, and ``aiq.exposed_residuals`` lists the layers adding
each: a downsample conv's output, which only a residual epilogue reads, gets a range too, so
its producer can write it as uint8 (``QuantizeAnnotated(requant_residuals=True)``).
"""

from __future__ import annotations

import tvm
from tvm import relax

from ._layers import is_layer_function, parse_layer

__all__ = ["ExposeLayerInputs"]


def _group(groups: list[list[str]], exprs: list, expr, name: str) -> None:
    """Add ``name`` to the group of ``expr`` (a new one when no entry holds the same value)."""
    k = next((i for i, e in enumerate(exprs) if e.same_as(expr)), None)
    if k is None:
        groups.append([])
        exprs.append(expr)
        k = len(exprs) - 1
    groups[k].append(name)


@tvm.transform.module_pass(opt_level=0, name="ExposeLayerInputs")
class ExposeLayerInputs:
    """Return each annotated layer's input from ``func_name`` next to its output.

    Parameters
    ----------
    func_name : str
        The Relax function to expose.
    residuals : bool
        Also return the fused residual operands that no layer reads as data (after the
        inputs; ``aiq.exposed_residuals`` names the layers adding each).
    """

    def __init__(self, func_name: str = "main", residuals: bool = False):
        self.func_name = func_name
        self.residuals = residuals

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        mod = relax.transform.ToNonDataflow()(mod)
        func = mod[self.func_name]
        names: list[list[str]] = []
        inputs: list = []
        res_names: list[list[str]] = []
        res_inputs: list = []
        for block in func.body.blocks:
            for b in block.bindings:
                val = b.value
                if isinstance(val, relax.Call) and isinstance(val.op, relax.GlobalVar):
                    f = mod[val.op]
                    if is_layer_function(f) and "aiq.layer" in f.attrs:
                        info = parse_layer(f)
                        name = str(f.attrs["aiq.layer"])
                        _group(names, inputs, val.args[info.data], name)
                        if info.residual is not None:
                            _group(res_names, res_inputs, val.args[info.residual], name)
        if not names:
            raise ValueError("no annotated layers to expose; run AnnotatePrecision first")
        # A shortcut that is also some layer's data input already has that layer's range.
        keep = [i for i, e in enumerate(res_inputs) if not any(e.same_as(d) for d in inputs)]
        res_names = [res_names[i] for i in keep] if self.residuals else []
        res_inputs = [res_inputs[i] for i in keep] if self.residuals else []
        outs = [func.body.body, *inputs, *res_inputs]
        body = relax.SeqExpr(func.body.blocks, relax.Tuple(outs))
        ret_ty = relax.TupleType([o.ty for o in outs])
        new_func = relax.Function(func.params, body, ret_ty, attrs=func.attrs)
        out = tvm.IRModule({gv: f for gv, f in mod.functions_items()}, attrs=mod.attrs)
        out[self.func_name] = new_func
        out = relax.transform.Normalize()(out)
        out = relax.transform.ConvertToDataflow()(out)
        return out.with_attr("aiq.exposed_layers", names).with_attr(
            "aiq.exposed_residuals", res_names)
