"""Emit the x86 kernels of one annotated layer into a Relax function being built.

Shared by :class:`~aiq_tvm.passes.QuantizeAnnotated` (one precision per layer) and
:class:`~aiq_tvm.passes.SelectPrecisionAtRuntime` (every candidate precision behind a
runtime switch), so both run exactly the same PrimFuncs and numerics.

Convolutions run in NHWC: the layer's NCHW input is transposed in, its NHWC output
transposed back; :class:`~aiq_tvm.passes.CancelTransposes` then removes transposes that meet.
Layers with 8-bit activations get a uint8 quantize kernel on their input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax

from aiq_tvm._ir import const_value, is_const
from aiq_tvm.quant import ActQParams
from aiq_tvm.schemes import get_precision

from ._layers import LayerInfo

__all__ = ["LayerValues", "layer_values", "corrected_values", "emit_layer", "kernel_act",
           "add_prim", "conv_spec", "PendingDepthwise", "emit_depthwise_pointwise",
           "FUSED_DEPTHWISE_SUFFIX"]

NCHW_TO_NHWC = (0, 2, 3, 1)
NHWC_TO_NCHW = (0, 3, 1, 2)


@dataclass
class LayerValues:
    """Numeric operands of one layer call: weight in torch layout, bias [O] or None."""

    weight: np.ndarray  # conv: OIHW; dense: [O, K]
    bias: np.ndarray | None


def _value_of(expr, var2val: dict, what: str, layer: str) -> np.ndarray:
    seen = 0
    while isinstance(expr, relax.Var) and expr in var2val and seen < 8:
        expr, seen = var2val[expr], seen + 1
    if is_const(expr):
        return const_value(expr)
    raise ValueError(
        f"layer {layer!r}: the {what} is not a constant ({type(expr).__name__}). Bind the "
        "weights first: relax.transform.BindParams('main', params) then "
        "relax.transform.FoldConstant() (aiq_tvm.pipeline() does both)"
    )


def layer_values(info: LayerInfo, args, var2val: dict, layer: str) -> LayerValues:
    """Read the constant weight and bias of a layer call."""
    w = _value_of(args[info.weight], var2val, "weight", layer).astype(np.float32)
    if info.op == "dense" and not info.weight_transposed:
        w = np.ascontiguousarray(w.T)  # matmul(x, W[K, O]) -> torch layout [O, K]
    b = None
    if info.bias is not None:
        b = _value_of(args[info.bias], var2val, "bias", layer).astype(np.float32).reshape(-1)
    return LayerValues(w, b)


def corrected_values(values: LayerValues, info: LayerInfo, precision: str, calibration,
                     name: str, numerics_target: tvm.target.Target) -> LayerValues:
    """The weight and bias the kernel of ``precision`` gets: ``values`` with the
    calibration's ``weight_correction`` applied (:func:`aiq_tvm.weight_correction.correct_layer`)
    for the weight codes of ``numerics_target``; unchanged for float weights, without a
    calibration or with ``"none"``."""
    from aiq_tvm.targets import capabilities
    from aiq_tvm.weight_correction import correct_layer

    scheme = get_precision(precision)
    correction = "none" if calibration is None else calibration.weight_correction
    if not scheme.quantizes_weights or correction == "none":
        return values
    # The kernel library's depthwise test (ConvSpec.is_depthwise): one channel per group, O == C.
    depthwise = info.op == "depthwise_conv2d" and info.out_channels == info.groups
    qmax = scheme.weight_qmax(capabilities(numerics_target).layer_int8_weight_qmax(depthwise))
    groups = 1 if info.op == "dense" else info.groups
    w, b = correct_layer(values.weight, values.bias, qmax, correction, groups,
                         calibration.channel_mean(name), calibration.hessian(name))
    return LayerValues(w, b)


def kernel_act(activation: tuple):
    """Our activation tuple -> the kernel library's ``act`` argument."""
    kind = activation[0]
    if kind == "none":
        return "none"
    if kind in ("relu", "silu", "hardswish"):
        return kind
    lo, hi = activation[1], activation[2]
    if lo == 0.0 and hi == 6.0:
        return "relu6"
    return ("clip", lo, hi)


def _out(out_qparams) -> dict:
    return {} if out_qparams is None else {"out_qparams": out_qparams}


def add_prim(bb: relax.BlockBuilder, func: tvm.tirx.PrimFunc, name: str) -> relax.GlobalVar:
    # te.create_prim_func names every kernel "main"; the module's own symbols come from the
    # GlobalVar names (AttachGlobalSymbol), so drop it to avoid duplicate symbols.
    if func.attrs is not None and "global_symbol" in func.attrs:
        func = func.without_attr("global_symbol")
    return bb.add_func(func, name)


def _call_kernel(bb: relax.BlockBuilder, kernel, args: list, name: str):
    gv = add_prim(bb, kernel.prim_func, name)
    consts = [relax.const(c) for c in kernel.consts]
    return bb.emit(
        relax.call_tir(gv, [args[0], *consts, *args[1:]],
                       out_ty=relax.TensorType(kernel.out_shape, kernel.out_dtype))
    )


def emit_layer(
    bb: relax.BlockBuilder,
    info: LayerInfo,
    values: LayerValues,
    data: relax.Expr,
    precision: str,
    qparams: ActQParams | None,
    target: tvm.target.Target,
    name: str,
    residual: relax.Expr | None = None,
    out_qparams: ActQParams | None = None,
    residual_qparams: ActQParams | None = None,
    database=None,
    tune_trials: int = 0,
    numerics_target: tvm.target.Target | None = None,
):
    """Emit the kernels of one layer at ``precision``; return the NCHW / [N, O] result.

    ``residual`` (NCHW, output-shaped) is added in the kernel epilogue before the activation.
    ``out_qparams`` makes the kernel write its consumers' uint8 input instead of float32.
    ``residual_qparams``: the ``residual`` is uint8, written by a requantizing producer with
    these parameters (the epilogue dequantizes it).
    A uint8 ``data`` is taken as already quantized with this layer's ``qparams``.
    ``database`` / ``tune_trials``: meta-schedule records to reuse, and trials to tune kernels
    the database does not know yet (see :mod:`aiq_tvm.targets.x86.tune`).
    ``numerics_target``: the target whose integer arithmetic the kernels reproduce bit for bit
    (default: ``target``, the one the code is built for); a cross build runs its accuracy
    checks on the host with the deploy target's numerics.
    """
    scheme = get_precision(precision)
    pre_quantized = str(data.ty.dtype) == "uint8"
    if pre_quantized and not scheme.quantizes_activations:
        raise ValueError(f"layer {name!r} runs {precision} but receives uint8 activations")
    if scheme.quantizes_activations and qparams is None:
        raise ValueError(
            f"layer {name!r} runs {precision} but has no activation range; calibrate first "
            "(aiq_tvm.calibrate or QuantizeAnnotated(calibration=...))"
        )
    opts = dict(act=kernel_act(info.activation), act_qparams=qparams, target=target,
                **_out(out_qparams))
    if (residual is not None and str(residual.ty.dtype) == "uint8") != (
            residual_qparams is not None):
        raise ValueError(f"layer {name!r}: a uint8 residual needs residual_qparams and a "
                         "float32 one must not have them")
    if residual_qparams is not None:
        opts["residual_qparams"] = residual_qparams
    if database is not None:
        opts.update(database=database, tune_trials=tune_trials)
    if numerics_target is not None:
        opts["numerics_target"] = numerics_target
    quantize = None
    if scheme.quantizes_activations and not pre_quantized:
        quantize = qparams
    base = kernel_base(name)
    emit = _emit_dense if info.op == "dense" else _emit_conv
    return emit(bb, info, values, data, precision, quantize, residual, base, opts)


@dataclass
class PendingDepthwise:
    """A float depthwise layer already emitted on its own, kept for fusing into the pointwise
    layer that is its only reader (:func:`emit_depthwise_pointwise`)."""

    name: str
    info: LayerInfo
    values: LayerValues
    data: relax.Expr  # its NCHW input, as visited


# The name of a fused depthwise + pointwise kernel: "<pointwise layer>_dw_fp32".
FUSED_DEPTHWISE_SUFFIX = "_dw_fp32"


def emit_depthwise_pointwise(bb: relax.BlockBuilder, dw: PendingDepthwise, info: LayerInfo,
                             values: LayerValues, name: str, target: tvm.target.Target,
                             residual: relax.Expr | None = None, out_qparams=None,
                             residual_qparams=None):
    """The fused FP32 kernel of depthwise layer ``dw`` and the pointwise layer ``name`` that
    reads it (``targets/x86/dwpw.py``), on ``dw``'s input; the NCHW result, or None where the
    pair does not fuse or fusing would not pay on ``target`` (emit the layer alone then).
    ``residual``, ``out_qparams`` and ``residual_qparams`` are the pointwise layer's, as for
    :func:`emit_layer`. The kernel is ``<pointwise layer>_dw_fp32``; the profiler knows it from
    the executable's ``aiq_fused_layers`` and counts its time under the pointwise layer."""
    from aiq_tvm.targets.x86 import dwpw

    dw_spec = conv_spec(dw.info, dw.values, kernel_base(dw.name))
    pw_spec = conv_spec(info, values, kernel_base(name))
    if dwpw.fusion_reason(dw_spec, pw_spec, target) or not dwpw.fusion_pays(
            dw_spec, pw_spec, target):
        return None
    kernel = dwpw.depthwise_pointwise_kernel(
        dw_spec, pw_spec, dw.values.weight, dw.values.bias, values.weight, values.bias,
        dw_act=kernel_act(dw.info.activation), pw_act=kernel_act(info.activation),
        residual=residual is not None, out_qparams=out_qparams,
        residual_qparams=residual_qparams, target=target)
    x = bb.emit(relax.op.permute_dims(dw.data, NCHW_TO_NHWC))
    extra = [] if residual is None else [bb.emit(relax.op.permute_dims(residual, NCHW_TO_NHWC))]
    y = _call_kernel(bb, kernel, [x, *extra], f"{kernel_base(name)}{FUSED_DEPTHWISE_SUFFIX}")
    return bb.emit(relax.op.permute_dims(y, NHWC_TO_NCHW))


def kernel_base(layer: str) -> str:
    """The prefix of a layer's kernel names (``<base>_int8``, ``<base>_quantize``, ...)."""
    return layer.replace(".", "_").replace(":", "_")


def _emit_quantize(bb, x, qparams, target, base: str):
    """uint8 quantize kernel on ``x`` (any layout) with the layer's input range."""
    from aiq_tvm.targets import x86

    shape = tuple(int(d) for d in x.ty.shape)
    qf = x86.quantize_kernel(shape, qparams, target=target)
    return bb.emit(relax.call_tir(add_prim(bb, qf, f"{base}_quantize"), [x],
                                  out_ty=relax.TensorType(shape, "uint8")))


def _static_shape(info, base: str) -> tuple[int, ...]:
    """The layer's input shape as ints. AIQ kernels are compiled for one shape, so a symbolic
    dimension (a module imported with a dynamic batch and not specialized) is an error that
    names the fix."""
    dims = list(info.in_shape)
    if not all(isinstance(d, int | tvm.tirx.IntImm) for d in dims):
        shape = ", ".join(str(int(d)) if isinstance(d, tvm.tirx.IntImm) else str(d) for d in dims)
        raise ValueError(
            f"layer {base!r}: input shape ({shape}) is not static; AIQ kernels are compiled for "
            f"fixed shapes. Fix the batch first, e.g. mod = aiq_tvm.specialize_batch(mod, "
            f"batch_size) (aiq_tvm.build does this itself)")
    return tuple(int(d) for d in dims)


def _emit_dense(bb, info, values, data, precision, quantize, residual, base, opts):
    from aiq_tvm.targets import x86

    n, k = _static_shape(info, base)
    spec = x86.DenseSpec(N=n, K=k, O=values.weight.shape[0])
    x = data if quantize is None else _emit_quantize(bb, data, quantize, opts["target"], base)
    kernel = x86.dense_kernel(spec, precision, values.weight, values.bias, **opts)
    return _call_kernel(bb, kernel, [x], f"{base}_{precision}")


def conv_spec(info, values: LayerValues, base: str):
    """The kernel library's ``ConvSpec`` of a conv layer (static input shape required)."""
    from aiq_tvm.targets import x86

    n, c, h, w = _static_shape(info, base)
    return x86.ConvSpec(
        N=n, H=h, W=w, C=c, O=values.weight.shape[0], KH=values.weight.shape[2],
        KW=values.weight.shape[3], stride=info.strides, padding=info.padding,
        groups=info.groups, dilation=info.dilation,
    )


def _emit_conv(bb, info, values, data, precision, quantize, residual, base, opts):
    from aiq_tvm.targets import x86

    spec = conv_spec(info, values, base)
    x = bb.emit(relax.op.permute_dims(data, NCHW_TO_NHWC))
    if quantize is not None:
        x = _emit_quantize(bb, x, quantize, opts["target"], base)
    extra = [] if residual is None else [bb.emit(relax.op.permute_dims(residual, NCHW_TO_NHWC))]
    pieces = x86.layer_tap_pieces(spec, opts["target"]) if precision == "fp32" else None
    if pieces is not None:
        y = _emit_tap_pieces(bb, spec, pieces, values, x, extra, base, opts)
    else:
        kernel = x86.conv2d_kernel(spec, precision, values.weight, values.bias,
                                   residual=residual is not None, **opts)
        y = _call_kernel(bb, kernel, [x, *extra], f"{base}_{precision}")
    return bb.emit(relax.op.permute_dims(y, NHWC_TO_NCHW))


def _emit_tap_pieces(bb, spec, pieces, values, x, extra, base, opts):
    """A float dilated conv whose taps partly read padding (``x86.layer_tap_pieces``): a 1x1
    kernel per other tap on the outputs it reaches, those rectangles zero-padded and summed
    (with the layer's residual, if any) into the residual input of the centre tap's 1x1
    kernel, which adds the bias and applies the activation."""
    plain = {k: v for k, v in opts.items() if k != "act"}
    outer = list(extra)
    for p in pieces[1:]:
        y = _emit_tap(bb, spec, p, values.weight, x, None, f"{base}_fp32_tap{p.kh}{p.kw}", plain)
        (r0, r1), (c0, c1) = p.rows, p.cols
        pad = [0, 0, r0, spec.OH - r1, c0, spec.OW - c1, 0, 0]
        outer.append(bb.emit(relax.op.nn.pad(y, pad)))
    total = outer[0] if outer else None
    for t in outer[1:]:
        total = bb.emit(relax.op.add(total, t))
    centre = pieces[0]
    return _emit_tap(bb, spec, centre, values.weight, x, total, f"{base}_fp32", opts,
                     bias=values.bias)


def _emit_tap(bb, spec, piece, weight, x, residual, name, opts, bias=None):
    """One tap's 1x1 kernel on the input rectangle it reads (a slice of NHWC ``x``)."""
    from aiq_tvm.targets import x86

    (r0, r1), (c0, c1) = piece.rows, piece.cols
    oh, ow = piece.offset
    if (r0 + oh, r1 + oh, c0 + ow, c1 + ow) != (0, spec.H, 0, spec.W):
        x = bb.emit(relax.op.strided_slice(x, axes=[1, 2], begin=[r0 + oh, c0 + ow],
                                           end=[r1 + oh, c1 + ow]))
    one = x86.ConvSpec(N=spec.N, H=r1 - r0, W=c1 - c0, C=spec.C, O=spec.O, KH=1, KW=1)
    w = np.ascontiguousarray(weight[:, :, piece.kh : piece.kh + 1, piece.kw : piece.kw + 1])
    kernel = x86.conv2d_kernel(one, "fp32", w, bias, residual=residual is not None, **opts)
    return _call_kernel(bb, kernel, [x] + ([residual] if residual is not None else []), name)
