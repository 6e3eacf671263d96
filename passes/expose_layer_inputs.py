"""ExposeLayerInputs: make ``main`` also return the input activation of every AIQ layer.

Used for calibration: ``main`` returns ``(original_output, input_0, ..., input_{k-1})`` with the
distinct layer inputs in program order; the module attribute ``aiq.exposed_layers`` lists, per
returned input, the names of the layers reading it (layers sharing an input, like a residual
block's first conv and its downsample conv, share one entry and so get one range).
"""

from __future__ import annotations

import tvm
from tvm import relax

from ._layers import is_layer_function, parse_layer

__all__ = ["ExposeLayerInputs"]


@tvm.transform.module_pass(opt_level=0, name="ExposeLayerInputs")
class ExposeLayerInputs:
    """Return each annotated layer's input from ``func_name`` next to its output."""

    def __init__(self, func_name: str = "main"):
        self.func_name = func_name

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        mod = relax.transform.ToNonDataflow()(mod)
        func = mod[self.func_name]
        names: list[list[str]] = []
        inputs: list = []
        for block in func.body.blocks:
            for b in block.bindings:
                val = b.value
                if isinstance(val, relax.Call) and isinstance(val.op, relax.GlobalVar):
                    f = mod[val.op]
                    if is_layer_function(f) and "aiq.layer" in f.attrs:
                        data = val.args[parse_layer(f).data]
                        k = next((i for i, e in enumerate(inputs) if e.same_as(data)), None)
                        if k is None:
                            names.append([])
                            inputs.append(data)
                            k = len(inputs) - 1
                        names[k].append(str(f.attrs["aiq.layer"]))
        if not names:
            raise ValueError("no annotated layers to expose; run AnnotatePrecision first")
        outs = [func.body.body, *inputs]
        body = relax.SeqExpr(func.body.blocks, relax.Tuple(outs))
        ret_ty = relax.TupleType([o.ty for o in outs])
        new_func = relax.Function(func.params, body, ret_ty, attrs=func.attrs)
        out = tvm.IRModule({gv: f for gv, f in mod.functions_items()}, attrs=mod.attrs)
        out[self.func_name] = new_func
        out = relax.transform.Normalize()(out)
        out = relax.transform.ConvertToDataflow()(out)
        return out.with_attr("aiq.exposed_layers", names)
