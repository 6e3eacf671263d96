"""What a quantizable layer is in Relax, shared by the AIQ passes.

A *layer* is a conv2d or a dense (``matmul`` with a static weight) together with the bias add
and activation that follow it.  :func:`layer_patterns` gives the ``FuseOpsByPattern``
patterns that group them into composite functions (``"Composite": "aiq.conv2d"`` or
``"aiq.dense"``); :func:`parse_layer` reads such a composite back into a
:class:`LayerInfo`; :func:`unsupported_reason` says why a conv/matmul is not a layer.

Layer names: a weight that is a function parameter names its layer (``layer1.0.conv1.weight``
-> ``layer1.0.conv1``, the PyTorch module path when imported with
:func:`aiq_tvm.from_torch`); a constant weight takes the name of the variable the layer's
result is bound to when the user chose one; a weight computed from one parameter with
constants (scaled, standardized, transposed in ``forward()``) that parameter's; else
``<op>_<k>`` in program order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import tvm
from tvm import relax
from tvm.relax.dpl import is_const as is_const_pattern
from tvm.relax.dpl import is_op, wildcard
from tvm.relax.transform import FusionPattern

from aiq_tvm._ir import const_value, is_const, static_shape

__all__ = [
    "COMPOSITE_PREFIX",
    "LAYER_OPS",
    "OTHER_WEIGHTED_OPS",
    "LayerInfo",
    "layer_patterns",
    "parse_layer",
    "unsupported_reason",
    "static_vars",
    "weight_layer_name",
    "is_layer_function",
]

COMPOSITE_PREFIX = "aiq."
LAYER_OPS = ("relax.nn.conv2d", "relax.matmul")
# Ops that are conv/dense-like but have no AIQ kernel; they stay FP32 and are reported.
OTHER_WEIGHTED_OPS = (
    "relax.nn.conv1d",
    "relax.nn.conv3d",
    "relax.nn.conv1d_transpose",
    "relax.nn.conv2d_transpose",
)
_AUTO_NAME = re.compile(r"^(lv|gv|_)\d*(_\d+)?$")


@dataclass(frozen=True)
class LayerInfo:
    """A parsed AIQ composite function.

    ``data``, ``weight`` and ``bias`` are parameter indices of the composite function (and so
    argument indices at its call site).  Dense weights are given as ``[O, K]`` when
    ``weight_transposed`` (the composite applies ``permute_dims``), else ``[K, O]``.
    """

    op: str  # "conv2d", "depthwise_conv2d", "grouped_conv2d" or "dense"
    data: int
    weight: int
    bias: int | None
    weight_transposed: bool
    residual: int | None
    activation: tuple  # ("none",), ("relu",), ("silu",), ("hardswish",) or ("clip", lo, hi)
    strides: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    groups: int = 1
    dilation: tuple[int, int] = (1, 1)
    in_shape: tuple = ()
    weight_shape: tuple = ()
    out_shape: tuple = ()

    @property
    def out_channels(self) -> int:
        if self.op == "dense":
            return int(self.weight_shape[0] if self.weight_transposed else self.weight_shape[1])
        return int(self.weight_shape[0])


# ---------------------------------------------------------------------------- static analysis
def static_vars(func: relax.Function) -> set:
    """Variables whose value depends only on weights (parameters after ``num_input``) and
    constants, never on the data inputs."""
    num_input = int(func.attrs["num_input"]) if func.attrs and "num_input" in func.attrs else 1
    static = set(func.params[num_input:])
    data = set(func.params[:num_input])
    var2val = relax.analysis.get_var2val(func)

    def free_ok(expr) -> bool:
        return all(v in static for v in relax.analysis.free_vars(expr))

    changed = True
    while changed:  # bindings are in order, but be robust to nesting
        changed = False
        for var, val in var2val.items():
            if var in static or var in data:
                continue
            if isinstance(val, relax.Call) and not isinstance(val.op, tvm.ir.Op):
                continue  # calls to functions are not treated as static
            if free_ok(val):
                static.add(var)
                changed = True
    return static


def _is_static(expr, static: set) -> bool:
    """Constant, a static variable, or an op call over static values only.

    Pattern checks see matched *values* (``reshape(bias)``), not their bound variables.
    """
    if is_const(expr):
        return True
    if isinstance(expr, relax.Var):
        return expr in static
    if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
        return all(v in static for v in relax.analysis.free_vars(expr))
    return False


# ---------------------------------------------------------------------------- support rules
def _conv_reason(call: relax.Call) -> str | None:
    a = call.attrs
    x_shape, w_shape = static_shape(call.args[0]), static_shape(call.args[1])
    if a.data_layout != "NCHW" or a.kernel_layout != "OIHW":
        return f"layout {a.data_layout}/{a.kernel_layout} (AIQ kernels take NCHW/OIHW)"
    if str(call.args[0].ty.dtype) != "float32" or str(call.args[1].ty.dtype) != "float32":
        return f"dtype {call.args[0].ty.dtype} (only float32 layers are quantized)"
    if w_shape is None or (x_shape is None and call.args[0].ty.shape is None):
        return "unknown weight or input shape"
    groups = int(a.groups)
    if groups != 1:
        cin = int(call.args[0].ty.shape[1])
        if groups == cin == w_shape[0] and w_shape[1] == 1:
            return None  # depthwise
        if groups == cin:
            return f"depthwise conv with channel multiplier {w_shape[0] // cin} > 1"
        from aiq_tvm.targets.x86.conv2d import grouped_reason

        return grouped_reason(cin, w_shape[0], groups)
    return None


def unsupported_reason(call: relax.Call, static: set) -> str | None:
    """Why a weighted op is not an AIQ layer (None when it is one)."""
    name = call.op.name
    if name in OTHER_WEIGHTED_OPS:
        return f"{name.split('.')[-1]} has no AIQ kernel"
    if name == "relax.nn.conv2d":
        if not _is_static(call.args[1], static):
            return "weight is computed from the input (not a static tensor)"
        return _conv_reason(call)
    if name == "relax.matmul":
        w = call.args[1]
        if not _is_static(w, static):
            return "both operands are activations (no static weight)"
        if len(call.args[0].ty.shape) != 2 or len(w.ty.shape) != 2:
            return "batched matmul (only 2-D x 2-D dense is supported)"
        if str(call.args[0].ty.dtype) != "float32":
            return f"dtype {call.args[0].ty.dtype} (only float32 layers are quantized)"
        return None
    return f"{name} is not a layer"


# ---------------------------------------------------------------------------- patterns
def _hardswish(inner):
    """``inner * clip(inner + 3, 0, 6) / 6`` as torch exports it (the clip as one or two
    ``relax.clip``), or ``inner * (clip(inner + 3, 0, 6) / 6)`` as TVM imports ONNX's
    HardSwish; the constants are checked by :func:`_hardswish_ok`."""
    shifted = is_op("relax.add")(inner, is_const_pattern())
    clip = is_op("relax.clip")(shifted, wildcard(), wildcard())
    gate = is_op("relax.clip")(clip, wildcard(), wildcard()) | clip
    prod = is_op("relax.multiply")(inner, gate) | is_op("relax.multiply")(gate, inner)
    scaled = is_op("relax.divide")(gate, is_const_pattern())
    return is_op("relax.divide")(prod, is_const_pattern()) | is_op("relax.multiply")(
        inner, scaled) | is_op("relax.multiply")(scaled, inner)


def _act(inner):
    sigmoid = is_op("relax.sigmoid")(inner)
    silu = (is_op("relax.multiply")(inner, sigmoid) | is_op("relax.multiply")(sigmoid, inner)
            | is_op("relax.nn.silu")(inner))
    return is_op("relax.nn.relu")(inner) | is_op("relax.clip")(inner, wildcard(), wildcard()) \
        | silu | _hardswish(inner)


def _scalar(expr) -> float | None:
    """The value of a one-element constant, else ``None``."""
    if not is_const(expr):
        return None
    v = const_value(expr)
    return float(v.reshape(-1)[0]) if v.size == 1 else None


def _hardswish_ok(bindings) -> bool:
    """A matched ``divide`` (only the hardswish pattern has one) is ``x * clip(x + 3, 0, 6) /
    6``: the constants are the hardswish's, the clips' bounds combine to [0, 6]."""
    calls = [v for v in bindings if isinstance(v, relax.Call) and isinstance(v.op, tvm.ir.Op)]
    if not any(c.op.name == "relax.divide" for c in calls):
        return True
    lo, hi = -float("inf"), float("inf")
    for c in calls:
        if c.op.name == "relax.divide" and _scalar(c.args[1]) != 6.0:
            return False
        # the x + 3 (a bias that is a constant, as ONNX files give, is a vector: not it)
        if c.op.name == "relax.add" and _scalar(c.args[1]) not in (None, 3.0):
            return False
        if c.op.name == "relax.clip":
            lo, hi = max(lo, float(c.args[1].value)), min(hi, float(c.args[2].value))
    return (lo, hi) == (0.0, 6.0)


def layer_patterns(static_ref: list) -> list[FusionPattern]:
    """``FuseOpsByPattern`` patterns for AIQ layers, longest first.

    ``static_ref`` is a one-element list holding the current function's :func:`static_vars`
    set; the check functions read it (the pass refills it per function).
    """
    pats = []
    for kind in ("conv2d", "dense"):
        data, weight, bias, res = wildcard(), wildcard(), wildcard(), wildcard()
        if kind == "conv2d":
            root = is_op("relax.nn.conv2d")(data, weight)
        else:
            root = is_op("relax.matmul")(data, is_op("relax.permute_dims")(weight)) | is_op(
                "relax.matmul"
            )(data, weight)
        with_bias = is_op("relax.add")(root, bias) | is_op("relax.add")(bias, root)
        # A residual (shortcut) add after the bias is fused into the conv epilogue.  Both
        # operand orders get their own pattern: when both operands of the add are biased convs
        # (MobileNetV2 block chains), the check may reject one order and must see the other.
        res_left = is_op("relax.add")(with_bias, res)
        res_right = is_op("relax.add")(res, with_bias)
        variants = [
            ("bias_act", _act(with_bias), True, False),
            ("bias", with_bias, True, False),
            ("act", _act(root), False, False),
            ("", root, False, False),
        ]
        if kind == "conv2d":
            variants = [("bias_res_act", _act(r), True, r) for r in (res_left, res_right)] + [
                ("bias_res", r, True, r) for r in (res_left, res_right)] + variants
        for suffix, pat, has_bias, has_res in variants:
            ann = {"data": data, "weight": weight, "root": root}
            if has_bias:
                ann.update(bias=bias, biased=with_bias)
            if has_res is not False:
                ann.update(residual=res, shortcut=has_res)
            name = f"{COMPOSITE_PREFIX}{kind}" + (f"_{suffix}" if suffix else "")
            pats.append(FusionPattern(name, pat, ann, _make_check(
                kind, has_bias, has_res is not False, static_ref)))
    return pats


def _make_check(kind: str, has_bias: bool, has_res: bool, static_ref: list):
    def check(ctx) -> bool:
        static = static_ref[0]
        expr = ctx.annotated_expr
        root = expr["root"]
        if unsupported_reason(root, static) is not None:
            return False
        if not _hardswish_ok(ctx.matched_bindings.values()):
            return False
        # Intermediate results must have no reader outside the layer, or FuseOpsByPattern
        # would build a multi-output composite. (SiLU reads the pre-activation twice:
        # sigmoid(x) and x * sigmoid(x), both inside.)
        inside = list(ctx.matched_bindings.keys())
        for key in ("root", "biased", "shortcut"):
            val = expr.get(key)
            if val is None or val.same_as(ctx.matched_expr):
                continue
            var = ctx.value_to_bound_var.get(val)
            if var is not None and any(not any(u.same_as(v) for v in inside)
                                       for u in ctx.var_usages.get(var, [])):
                return False
        if kind == "dense":
            w = expr["weight"]
            if not _is_static(w, static):
                return False
        if has_res:
            res = expr["residual"]
            if _is_static(res, static) or not _same_shape(res, root) or \
                    str(res.ty.dtype) != "float32":
                return False
        if has_bias:
            return _bias_ok(expr["bias"], root, kind, static)
        return True

    return check


def _same_shape(a, b) -> bool:
    """Equal tensor shapes, symbolic dimensions included (the batch is usually symbolic)."""
    sa, sb = a.ty.shape, b.ty.shape
    if sa is None or sb is None or len(sa) != len(sb):
        return False
    return all(
        int(x) == int(y) if isinstance(x, tvm.tirx.IntImm) and isinstance(y, tvm.tirx.IntImm)
        else x.same_as(y)
        for x, y in zip(sa, sb, strict=True)
    )


def _bias_ok(bias, root, kind: str, static: set) -> bool:
    """A bias is static and broadcasts along the output-channel axis only."""
    if not _is_static(bias, static):
        return False
    shape = static_shape(bias)
    if shape is None:
        return False
    o = int(root.ty.shape[1]) if kind == "conv2d" else int(root.ty.shape[-1])
    if kind == "conv2d":
        return shape in ((1, o, 1, 1), (o, 1, 1))
    return shape in ((o,), (1, o))


# ---------------------------------------------------------------------------- parsing
def is_layer_function(func) -> bool:
    return (
        isinstance(func, relax.Function)
        and func.attrs is not None
        and "Composite" in func.attrs
        and str(func.attrs["Composite"]).startswith(COMPOSITE_PREFIX)
    )


def parse_layer(func: relax.Function) -> LayerInfo:
    """Read an AIQ composite function (see the module docstring)."""
    params = list(func.params)
    var2val = relax.analysis.get_var2val(func)
    root = act = None
    hardswish = False
    adds = []
    for val in var2val.values():
        if not isinstance(val, relax.Call) or not isinstance(val.op, tvm.ir.Op):
            continue
        name = val.op.name
        if name in LAYER_OPS:
            root = val
        elif name == "relax.nn.relu":
            act = ("relu",)
        elif name == "relax.clip":
            act = ("clip", float(val.args[1].value), float(val.args[2].value))
        elif name in ("relax.sigmoid", "relax.nn.silu"):  # x * sigmoid(x) or silu(x)
            act = ("silu",)
        elif name == "relax.divide":  # x * clip(x + 3, 0, 6) / 6 (see _hardswish_ok)
            hardswish = True
        elif name == "relax.add":
            adds.append(val)
    if root is None:
        raise ValueError(f"composite {func.attrs['Composite']} has no conv2d/matmul")
    if hardswish:  # its x + 3 (the add a clip reads) is neither bias nor residual
        clipped = [var2val.get(v.args[0]) for v in var2val.values()
                   if isinstance(v, relax.Call) and v.op.same_as(tvm.ir.Op.get("relax.clip"))]
        adds = [a for a in adds if not any(a.same_as(c) for c in clipped)]

    def index_of(expr) -> int:
        for i, p in enumerate(params):
            if p.same_as(expr):
                return i
        raise ValueError(f"composite argument {expr} is not a parameter")

    data = index_of(root.args[0])
    w_expr = root.args[1]
    transposed = False
    if isinstance(w_expr, relax.Var) and w_expr in var2val:
        transposed = True  # matmul(x, permute_dims(W)) -> W is [O, K]
        w_expr = var2val[w_expr].args[0]
    weight = index_of(w_expr)
    out = func.body.body if isinstance(func.body, relax.SeqExpr) else func.body
    # The patterns order the adds: the first consumes the conv/matmul (bias), a second one
    # consumes the first (residual).  Shapes cannot tell them apart at batch 1 on 1x1 maps.
    bias = residual = None
    root_var = next(v for v, val in var2val.items() if val.same_as(root))
    for add in adds:
        lhs, rhs = add.args
        inner, other = (lhs, rhs) if any(lhs.same_as(v) for v in var2val) else (rhs, lhs)
        if inner.same_as(root_var):
            bias = index_of(other)
        else:
            residual = index_of(other)
    w_shape = tuple(int(d) for d in params[weight].ty.shape)
    common = dict(
        data=data, weight=weight, bias=bias, weight_transposed=transposed, residual=residual,
        activation=("hardswish",) if hardswish else act or ("none",),
        in_shape=tuple(params[data].ty.shape), weight_shape=w_shape,
        out_shape=tuple(out.ty.shape),
    )
    if root.op.name == "relax.matmul":
        return LayerInfo(op="dense", **common)
    a = root.attrs
    groups = int(a.groups)
    return LayerInfo(
        op=conv_kind(groups, w_shape),
        strides=tuple(int(s) for s in a.strides),
        padding=tuple(int(p) for p in a.padding),
        groups=groups,
        dilation=tuple(int(d) for d in a.dilation),
        **common,
    )


def conv_kind(groups: int, w_shape: tuple) -> str:
    """``"conv2d"``, ``"depthwise_conv2d"`` (one input channel per group) or
    ``"grouped_conv2d"`` (1 < groups, several input channels per group)."""
    if groups == 1:
        return "conv2d"
    return "depthwise_conv2d" if int(w_shape[1]) == 1 else "grouped_conv2d"


def weight_layer_name(weight_expr) -> str | None:
    """Layer name from a weight parameter's name (``a.b.weight`` -> ``a.b``)."""
    if isinstance(weight_expr, relax.Var) and not isinstance(weight_expr, relax.DataflowVar):
        name = weight_expr.name
        for suffix in (".weight", "_weight"):
            if name.endswith(suffix) and len(name) > len(suffix):
                return name[: -len(suffix)]
        return name
    return None


def user_binding_name(var) -> str | None:
    """A binding variable's name if the user chose it (not ``lv12``/``gv``)."""
    name = var.name
    return None if _AUTO_NAME.match(name) else name
