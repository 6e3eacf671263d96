"""ExposeLayerInputs: make ``main`` also return the input activation of every AIQ layer.

Used for calibration: ``main`` returns ``(original_output, input_0, ..., input_{k-1},
residual_0, ..., residual_{m-1})`` with the distinct layer inputs in program order; the module
attribute ``aiq.exposed_layers`` lists, per returned input, the names of the layers reading it
(layers sharing an input, like a residual block's first conv and its downsample conv, share one
entry and so get one range). With ``residuals=True`` the fused residual (shortcut) operands
that are no layer's data input follow, and ``aiq.exposed_residuals`` lists the layers adding
each: a downsample conv's output, which only a residual epilogue reads, gets a range too, so
its producer can write it as uint8 (``QuantizeAnnotated(requant_residuals=True)``).

With ``channels_last=True`` every 4-D (NCHW) tensor is returned as NHWC
(``permute_dims(x, [0, 2, 3, 1])``), the layout the layer kernels keep activations in between
layers: after lowering, ``CancelTransposes`` folds that permute into the one before the
kernel, so the exposed outputs cost no transpose kernel (the module attribute
``aiq.exposed_channels_last`` says so). NCHW outputs made ResNet-50's calibration run spend
6.5 of its 8 s in transposes (47 per batch of 16, up to 51 MB each).
"""

from __future__ import annotations

import tvm
from tvm import relax

from ._layers import is_layer_function, parse_layer
from ._lowering import NCHW_TO_NHWC

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
    channels_last : bool
        Return 4-D tensors as NHWC instead of NCHW.
    """

    def __init__(self, func_name: str = "main", residuals: bool = False,
                 channels_last: bool = False):
        self.func_name = func_name
        self.residuals = residuals
        self.channels_last = channels_last

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
        exposed = [*inputs, *res_inputs]
        if self.channels_last:
            exposed = [_nhwc(e) for e in exposed]
        outs = [func.body.body, *exposed]
        body = relax.SeqExpr(func.body.blocks, relax.Tuple(outs))
        ret_ty = relax.TupleType([o.ty for o in outs])
        new_func = relax.Function(func.params, body, ret_ty, attrs=func.attrs)
        out = tvm.IRModule({gv: f for gv, f in mod.functions_items()}, attrs=mod.attrs)
        out[self.func_name] = new_func
        out = relax.transform.Normalize()(out)
        out = relax.transform.ConvertToDataflow()(out)
        return out.with_attr("aiq.exposed_layers", names).with_attr(
            "aiq.exposed_residuals", res_names).with_attr(
            "aiq.exposed_channels_last", self.channels_last)


def _nhwc(expr):
    """``expr`` permuted NCHW -> NHWC if it is a 4-D tensor, else ``expr``."""
    ty = expr.ty
    if isinstance(ty, relax.TensorType) and ty.ndim == 4:
        # Normalized so the call has its type (the new tuple's type is built from it).
        return relax.BlockBuilder().normalize(relax.op.permute_dims(expr, NCHW_TO_NHWC))
    return expr
