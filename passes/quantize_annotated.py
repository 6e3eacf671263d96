"""QuantizeAnnotated: replace annotated layers by fused low-bit x86 kernels.

Every composite created by :class:`~aiq_tvm.passes.AnnotatePrecision` becomes a call to a
scheduled TIR kernel of the annotated precision (weights quantized on the host, dequantize,
bias and activation fused into the epilogue); layers with 8-bit activations first quantize
their input with the calibrated range.  Weights must be constants: bind parameters and fold
constants before this pass.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from aiq_tvm.checks import check_non_negative_int
from aiq_tvm.schemes import get_precision
from aiq_tvm.targets import current_target

from ._flatten import channels_last_flatten
from ._layers import is_layer_function, parse_layer
from ._lowering import (
    LayerValues,
    PendingDepthwise,
    corrected_values,
    emit_depthwise_pointwise,
    emit_layer,
    layer_values,
)
from .annotate_precision import layer_readers, layer_table

__all__ = ["QuantizeAnnotated", "depthwise_pointwise_pairs"]


@mutator
class _Quantizer(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, func: relax.Function, calibration, target,
                 requant: dict, residual_q: dict, tuning: dict, numerics_target,
                 fused: dict):
        super().__init__(mod)
        self.mod_ = mod
        self.var2val = dict(relax.analysis.get_var2val(func))
        self.calibration = calibration
        self.target = target
        self.requant = requant  # producer layer -> its consumers' input qparams
        self.residual_q = residual_q  # layer -> qparams of its uint8 residual
        self.tuning = tuning
        self.numerics_target = numerics_target
        self.fused = fused  # pointwise layer -> the depthwise layer it may absorb
        self.pending: dict[str, PendingDepthwise] = {}
        self.lowered: list[str] = []

    def visit_call_(self, call):
        func = self.mod_[call.op] if isinstance(call.op, relax.GlobalVar) else None
        if func is None or not is_layer_function(func) or "aiq.precision" not in func.attrs:
            return super().visit_call_(call)
        # Visit the operands only: rebuilding the composite call would type-check it against
        # float32 parameters, and a requantized producer now hands over uint8.
        args = [self.visit_expr(a) for a in call.args]
        name = str(func.attrs["aiq.layer"])
        precision = str(func.attrs["aiq.precision"])
        info = parse_layer(func)
        values = corrected_values(layer_values(info, call.args, self.var2val, name), info,
                                  precision, self.calibration, name,
                                  self.numerics_target or self.target)
        qp = None
        if self.calibration is not None and name in self.calibration.ranges:
            qp = self.calibration.qparams(name)
        self.lowered.append(name)
        residual = None if info.residual is None else args[info.residual]
        data = args[info.data]
        flat = channels_last_flatten(self.builder_, data, self.lookup_binding) \
            if info.op == "dense" else None
        if flat is not None:  # after the correction: its statistics are in torch's order
            data, order = flat
            values = LayerValues(values.weight[:, order], values.bias)
        if name in self.fused.values():
            self.pending[name] = PendingDepthwise(name, info, values, data)
        dw = self.pending.get(self.fused.get(name))
        if dw is not None:
            # The depthwise layer was emitted alone too; DeadCodeElimination drops it.
            y = emit_depthwise_pointwise(self.builder_, dw, info, values, name, self.target,
                                         residual, self.requant.get(name),
                                         self.residual_q.get(name))
            if y is not None:
                return y
        return emit_layer(
            self.builder_, info, values, data, precision, qp, self.target, name,
            residual, self.requant.get(name), self.residual_q.get(name), **self.tuning,
            numerics_target=self.numerics_target,
        )


def depthwise_pointwise_pairs(mod: tvm.IRModule, func_name: str = "main") -> dict[str, str]:
    """``{pointwise layer: depthwise layer}`` of every FP32 depthwise conv layer whose output
    is read by nothing but the data operand of one FP32 1x1 conv layer (the pairs
    ``QuantizeAnnotated(fuse_depthwise=True)`` may run as one kernel)."""
    func = mod[func_name]
    layers = {}  # var -> (name, info, precision, call)
    uses: dict = {}
    for block in func.body.blocks:
        for b in block.bindings:
            for v in relax.analysis.free_vars(b.value):
                uses[v] = uses.get(v, 0) + 1
            val = b.value
            if isinstance(val, relax.Call) and isinstance(val.op, relax.GlobalVar):
                f = mod[val.op]
                if is_layer_function(f) and "aiq.precision" in f.attrs:
                    layers[b.var] = (str(f.attrs["aiq.layer"]), parse_layer(f),
                                     str(f.attrs["aiq.precision"]), val)
    for v in relax.analysis.free_vars(func.body.body):
        uses[v] = uses.get(v, 0) + 1
    pairs = {}
    for name, info, precision, call in layers.values():
        src = call.args[info.data]
        if precision != "fp32" or info.op != "conv2d" or src not in layers or uses[src] != 1:
            continue
        if info.residual is not None and call.args[info.residual].same_as(src):
            continue  # also the residual: the depthwise output is needed as a tensor
        dw_name, dw_info, dw_precision, _ = layers[src]
        if (dw_precision == "fp32" and dw_info.op == "depthwise_conv2d"
                and dw_info.residual is None and dw_info.out_channels == dw_info.groups):
            pairs[name] = dw_name
    return pairs


@tvm.transform.module_pass(opt_level=0, name="QuantizeAnnotated")
class QuantizeAnnotated:
    """Lower annotated layers to low-bit kernels.

    Parameters
    ----------
    calibration : aiq_tvm.Calibration, optional
        Activation ranges; required when any layer runs with 8-bit activations.
    target : str, dict or tvm.target.Target, optional
        Defaults to the target in scope (``tvm.compile`` sets it).
    func_name : str
        The Relax function to lower.
    requant : bool
        Let a layer whose output only feeds layers with 8-bit activations write their uint8
        input directly (requantize in its epilogue) instead of float32 plus a quantize kernel.
        Bit-exact with the unfused form.
    requant_residuals : bool
        With ``requant``, also let a producer whose output is, besides 8-bit data inputs, the
        fused residual of other layers (a ResNet / MobileNetV2 block output) write uint8: the
        residual epilogues then read the uint8 shortcut and dequantize it, as ONNX Runtime's
        QDQ models do. Moves a quarter of the bytes of a float32 shortcut; the shortcut is
        rounded to the data consumers' 8-bit grid (not bit-exact with ``False``). A producer
        whose output only residual epilogues read (a downsample conv's) writes uint8 too when
        the calibration measured that shortcut (``Calibration.residual_ranges``) and the
        layers adding it run with 8-bit activations.
    database : str or meta_schedule Database, optional
        Tuning records: kernels found there use their best recorded schedule (never slower
        than our default: the default is always recorded too).
    tune_trials : int
        With ``database``, meta-schedule trials (XGBoost cost model, over our schedule
        templates) for kernels the database has no record of; 0 reuses records only.
    numerics_target : str, dict or tvm.target.Target, optional
        The target whose integer arithmetic the kernels reproduce (default: the target the
        code is built for).  A cross build checks accuracy on the host with the numerics of
        the deploy target.
    fuse_depthwise : bool
        Run an FP32 depthwise layer whose output only an FP32 pointwise (1x1) layer reads
        inside that layer's kernel (``targets/x86/dwpw.py``), where the kernel library
        expects it to pay on the target (``dwpw.fusion_pays``): the depthwise output then
        stays in the cores' caches. Bit-exact with ``False`` (the same sums in the same
        order).
    """

    def __init__(self, calibration=None, target=None, func_name: str = "main",
                 requant: bool = True, database=None, tune_trials: int = 0,
                 numerics_target=None, requant_residuals: bool = True,
                 fuse_depthwise: bool = True):
        check_non_negative_int("tune_trials", tune_trials)
        if tune_trials and database is None:
            raise ValueError("tune_trials needs a database to store the tuning records in")
        self.calibration = calibration
        self.target = target
        self.func_name = func_name
        self.requant = requant
        self.requant_residuals = requant_residuals
        self.numerics_target = numerics_target
        self.fuse_depthwise = fuse_depthwise
        self.tuning = {} if database is None else {"database": database,
                                                   "tune_trials": tune_trials}

    def _requant_plan(self, mod: tvm.IRModule) -> tuple[dict, dict]:
        """(producer layer -> consumers' ActQParams, layer -> its uint8 residual's
        ActQParams), where the fusion applies."""
        if not self.requant or self.calibration is None:
            return {}, {}
        entries = layer_table(mod, self.func_name)
        precision = {e.name: str(mod[e.gv].attrs["aiq.precision"]) for e in entries
                     if e.is_layer}

        def quantized(layers) -> bool:
            return all(get_precision(precision[c]).quantizes_activations for c in layers)

        out, residual_q = {}, {}
        for producer, readers in layer_readers(mod, entries, self.func_name).items():
            if readers is None:
                continue
            if readers.residual and not self.requant_residuals:
                continue
            if readers.data:
                if not quantized(readers.data) or any(
                        c not in self.calibration.ranges for c in readers.data):
                    continue
                qps = {self.calibration.qparams(c) for c in readers.data}
            else:
                # Only residual epilogues read it (a downsample conv's output): uint8 on the
                # shortcut's own calibrated range, where the layers adding it read 8-bit data.
                qps = {self.calibration.residual_qparams(c) for c in readers.residual}
                if None in qps or not quantized(readers.residual):
                    continue
            if len(qps) == 1:  # the same tensor calibrates to the same range
                out[producer] = qps.pop()
                residual_q.update({c: out[producer] for c in readers.residual})
        return out, residual_q

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        target = current_target(self.target)
        numerics = None if self.numerics_target is None else current_target(self.numerics_target)
        gv = mod.get_global_var(self.func_name)
        func = mod[gv]
        requant, residual_q = self._requant_plan(mod)
        fused = depthwise_pointwise_pairs(mod, self.func_name) if self.fuse_depthwise else {}
        rewriter = _Quantizer(mod, func, self.calibration, target, requant, residual_q,
                              self.tuning, numerics, fused)
        new_func = rewriter.visit_expr(func)
        rewriter.builder_.update_func(gv, new_func)
        out = rewriter.builder_.get()
        return relax.transform.DeadCodeElimination([self.func_name])(out)
