"""PyTorch operators TVM's ``from_exported_program`` lacks: decompositions and converters.

TVM 0.27's importer converts most core ATen operators but not, for example, ``amax``,
``amin``, ``min.dim``, ``prod.dim_int`` or ``adaptive_max_pool2d`` (``nn.AdaptiveMaxPool2d``,
``nn.AdaptiveMaxPool1d``, ``torch.logsumexp`` all end up there).  Here they are either
rewritten before import into operators TVM has (:data:`DECOMPOSITIONS`, run through
``ExportedProgram.run_decompositions`` together with torch's default table) or converted to
Relax directly (:data:`CONVERTERS`, passed as ``custom_convert_map``).

Whatever is still unsupported after that is reported by :func:`check_supported` with the
operator and the module path in the user's model (``features.3 (MyBlock)``), not with the
importer's bare ``AssertionError``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import tvm
import tvm_ffi
from tvm import relax

__all__ = ["DECOMPOSITIONS", "CONVERTERS", "UnsupportedOperatorError", "ConversionError",
           "decompose", "check_supported", "convert_map"]

aten = torch.ops.aten


class UnsupportedOperatorError(ValueError):
    """The model uses operators that neither TVM's importer nor aiq_tvm can convert."""


class ConversionError(UnsupportedOperatorError):
    """A converter failed on one node (the message names the operator and module)."""


# ----------------------------------------------------------------------------- decompositions
def _bins(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive pooling windows: [floor(i*size/out), ceil((i+1)*size/out))."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def _adaptive_max_values(x: torch.Tensor, oh: int, ow: int) -> torch.Tensor:
    """Max over each adaptive window, separably: first over rows, then over columns."""
    h, w = x.shape[-2], x.shape[-1]
    rows = [aten.amax.default(x[..., s:e, :], [-2], True) for s, e in _bins(h, oh)]
    x = aten.cat.default(rows, -2)
    cols = [aten.amax.default(x[..., s:e], [-1], True) for s, e in _bins(w, ow)]
    return aten.cat.default(cols, -1)


def _adaptive_max_indices(x: torch.Tensor, oh: int, ow: int) -> torch.Tensor:
    """Flat (h * W + w) argmax of each window; dead code unless the model uses the indices."""
    h, w = x.shape[-2], x.shape[-1]
    hh = torch.arange(h, device=x.device)
    ww = torch.arange(w, device=x.device)
    in_row = torch.stack([(hh >= s) & (hh < e) for s, e in _bins(h, oh)])  # (oh, H)
    in_col = torch.stack([(ww >= s) & (ww < e) for s, e in _bins(w, ow)])  # (ow, W)
    window = (in_row[:, None, :, None] & in_col[None, :, None, :]).reshape(oh * ow, h * w)
    flat = x.flatten(-2).unsqueeze(-2)  # (..., 1, H*W)
    masked = torch.where(window, flat, float("-inf"))
    return masked.argmax(-1).reshape(*x.shape[:-2], oh, ow)


def _adaptive_max_pool2d(x: torch.Tensor, output_size):
    """``adaptive_max_pool2d`` as ``max_pool2d`` (divisible sizes) or per-window ``amax``."""
    h, w = x.shape[-2], x.shape[-1]
    oh, ow = (int(output_size[0]), int(output_size[1]))
    if not (isinstance(h, int) and isinstance(w, int)):
        raise UnsupportedOperatorError(
            "adaptive_max_pool2d needs a static height and width to be decomposed")
    if h % oh == 0 and w % ow == 0:
        k = [h // oh, w // ow]
        return aten.max_pool2d_with_indices.default(x, k, k)
    return _adaptive_max_values(x, oh, ow), _adaptive_max_indices(x, oh, ow)


def _im2col(x: torch.Tensor, kernel_size, dilation, padding, stride):
    """``nn.Unfold`` as a depthwise convolution with one-hot kernels (torch's own
    decomposition goes through an ``index`` that TVM's importer cannot broadcast)."""
    unbatched = x.dim() == 3
    x = x.unsqueeze(0) if unbatched else x
    c, (kh, kw) = x.shape[1], kernel_size
    one_hot = torch.eye(kh * kw, dtype=x.dtype, device=x.device).reshape(kh * kw, 1, kh, kw)
    out = aten.convolution.default(x, one_hot.repeat(c, 1, 1, 1), None, list(stride),
                                   list(padding), list(dilation), False, [0, 0], c)
    out = out.flatten(2)  # (N, C * kh * kw, L): channel-major, then kernel row, column
    return out.squeeze(0) if unbatched else out


def _rrelu(x: torch.Tensor, lower=0.125, upper=1.0 / 3.0, training=False, generator=None):
    """``nn.RReLU`` at inference: a leaky ReLU of slope ``(lower + upper) / 2``, as torch
    computes it in eval mode (training draws random slopes, which a compiled model cannot)."""
    if training:
        raise UnsupportedOperatorError("rrelu in training mode draws random slopes; export "
                                       "the model in eval mode")
    return aten.leaky_relu.default(x, (float(lower) + float(upper)) / 2.0)


def _instance_norm(x: torch.Tensor, weight, bias, running_mean, running_var,
                   use_input_stats: bool, momentum: float, eps: float, cudnn_enabled: bool):
    """``instance_norm`` with the input's own statistics as a group norm of one channel per
    group: the same per-image, per-channel normalization over the spatial axes. torch's own
    decomposition views the batch as channels, ``(1, N * C, H, W)``, and repeats the weight N
    times, which channels-last layouts pay for in transposes (InstanceNorm2d between 1x1 convs
    at 56 x 56 x 64, batch 4: 1.16 ms per image against 0.71 at batch 1). With running
    statistics (``track_running_stats``, eval mode) it is a batch norm of those statistics."""
    if not use_input_stats:
        return aten.batch_norm.default(x, weight, bias, running_mean, running_var, False,
                                       momentum, eps, cudnn_enabled)
    c = x.shape[1]
    weight = x.new_ones(c) if weight is None else weight  # TVM's group norm needs both
    bias = x.new_zeros(c) if bias is None else bias
    return aten.group_norm.default(x, c, weight, bias, eps)


DECOMPOSITIONS: dict = {
    aten.adaptive_max_pool2d.default: _adaptive_max_pool2d,
    aten.instance_norm.default: _instance_norm,
    aten.im2col.default: _im2col,
    aten.rrelu.default: _rrelu,
}


def decompose(ep: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """torch's default decompositions plus :data:`DECOMPOSITIONS` (what TVM needs)."""
    table = torch.export.default_decompositions()
    table.update(DECOMPOSITIONS)
    return ep.run_decompositions(table)


# ----------------------------------------------------------------------------- converters
def _arg(node, index: int, name: str, default):
    return node.args[index] if len(node.args) > index else node.kwargs.get(name, default)


def _reduction(op: Callable) -> Callable:
    """``amax``/``amin``(x, dim=[], keepdim=False): an empty ``dim`` reduces every axis."""

    def convert(node, importer):
        x = importer.env[node.args[0]]
        dim = _arg(node, 1, "dim", [])
        dim = [dim] if isinstance(dim, int) else list(dim)
        keep = bool(_arg(node, 2, "keepdim", False))
        return importer.block_builder.emit(op(x, dim or None, keepdims=keep))

    return convert


def _min_dim(node, importer):
    """``min.dim`` -> (values, int64 indices), as TVM converts ``max.dim``."""
    bb = importer.block_builder
    x, dim = importer.env[node.args[0]], int(node.args[1])
    keep = bool(_arg(node, 2, "keepdim", False))
    both = bb.emit(relax.op.topk(x, k=1, axis=dim, largest=False, ret_type="both",
                                 dtype="int64"))
    values, indices = both[0], both[1]
    if not keep:
        values = bb.emit(relax.op.squeeze(values, axis=[dim]))
        indices = bb.emit(relax.op.squeeze(indices, axis=[dim]))
    return bb.emit(relax.Tuple([values, indices]))


def _prod_dim(node, importer):
    bb = importer.block_builder
    x = importer.env[node.args[0]]
    dtype = node.kwargs.get("dtype")
    if dtype is not None:
        x = bb.emit(relax.op.astype(x, str(dtype).replace("torch.", "")))
    dim = int(_arg(node, 1, "dim", 0))
    return bb.emit(relax.op.prod(x, [dim], keepdims=bool(_arg(node, 2, "keepdim", False))))


def _elu(node, importer):
    """``elu(x, alpha, scale, input_scale)``; TVM's own converter drops ``scale`` and
    ``input_scale``, which ``nn.SELU`` decomposes to (wrong results, no error)."""
    bb = importer.block_builder
    x = importer.env[node.args[0]]
    alpha, scale, input_scale = (float(_arg(node, i, n, 1.0)) for i, n in
                                 ((1, "alpha"), (2, "scale"), (3, "input_scale")))
    dtype = x.ty.dtype

    def const(v):
        return relax.const(v, dtype)

    scaled = x if input_scale == 1.0 else bb.emit(relax.op.multiply(x, const(input_scale)))
    # x > 0: x;  x <= 0: alpha * (exp(input_scale * x) - 1) = -alpha * relu(1 - exp(.))
    neg = bb.emit(relax.op.nn.relu(relax.op.subtract(const(1.0), relax.op.exp(scaled))))
    out = relax.op.add(relax.op.nn.relu(x), relax.op.multiply(const(-alpha), neg))
    return bb.emit(out if scale == 1.0 else relax.op.multiply(const(scale), out))


def _torch_nearest_index(size: int, out: int, scale_factor) -> np.ndarray:
    """Source index of each output of torch's ``nearest`` along one axis
    (``aten/src/ATen/native/UpSample.h``: ``min(floor(dst * scale), size - 1)`` in float32,
    ``scale = 1 / scale_factor`` where one was given, else ``size / out``)."""
    if out == size:
        return np.arange(out)
    scale = np.float32(1.0 / scale_factor) if scale_factor else np.float32(size) / np.float32(out)
    src = np.floor(np.arange(out, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(src, size - 1)


def _upsample_nearest2d(node, importer):
    """``upsample_nearest2d.vec(x, output_size, scale_factors)`` with torch's indices.

    TVM's converter emits ``resize2d`` with half-pixel coordinates rounded to nearest, which is
    not torch's ``nearest`` (``floor(dst * scale)``) unless the ratio is an integer: 16 -> 30
    rows picked other source rows. This emits ``resize2d`` with asymmetric coordinates
    rounded down where TOPI then picks torch's pixels on both axes (output sizes, integer
    ratios), else two ``take`` with torch's indices as constants."""
    bb = importer.block_builder
    x = importer.env[node.args[0]]
    size, factors = _arg(node, 1, "output_size", None), _arg(node, 2, "scale_factors", None)
    shape = x.ty.shape
    if not all(isinstance(shape[i], tvm.tirx.IntImm) for i in (2, 3)):
        return _builtin(importer)["upsample_nearest2d.vec"](node)  # a symbolic map size
    h, w = int(shape[2]), int(shape[3])
    if size:
        (oh, ow), factors = (int(d) for d in size), (None, None)
    else:
        factors = list(factors) if isinstance(factors, list | tuple) else [factors] * 2
        oh, ow = int(h * factors[0]), int(w * factors[1])
    from aiq_tvm.passes.separable_resize import resize_tables

    idx = [_torch_nearest_index(i, o, f) for i, o, f in ((h, oh, factors[0]), (w, ow, factors[1]))]
    topi = [resize_tables(i, o, "nearest_neighbor", "asymmetric", "floor")[0]
            for i, o in ((h, oh), (w, ow))]
    if all(np.array_equal(a, b) for a, b in zip(idx, topi, strict=True)):
        return bb.emit(relax.op.image.resize2d(
            x, (oh, ow), layout="NCHW", method="nearest_neighbor",
            coordinate_transformation_mode="asymmetric", rounding_method="floor"))
    for axis, index in ((2, idx[0]), (3, idx[1])):
        x = bb.emit(relax.op.take(x, relax.const(index.astype("int32")), axis=axis))
    return x


def _is_static(dim) -> bool:
    return isinstance(dim, int | tvm.tirx.IntImm)


def _repeat(node, importer):
    """``repeat(x, reps)``; TVM's converter emits ``tile``, which takes integers only, so a
    model repeating by its batch size (a per-channel tensor once per image, as torch's own
    ``instance_norm`` decomposition repeats its weight) could not import with a dynamic
    batch. Symbolic repeats are a broadcast over a new axis before each one and a reshape:
    ``(r0, d0, r1, d1, ...) -> (r0 * d0, r1 * d1, ...)``."""
    reps = node.args[1] if len(node.args) == 2 else node.args[1:]
    reps = [importer.env.get(r, r) if not isinstance(r, int) else r for r in reps]
    if all(_is_static(r) for r in reps):
        return _builtin(importer)["repeat.default"](node)
    bb = importer.block_builder
    x = importer.env[node.args[0]]
    shape = list(x.ty.shape)
    shape = [1] * (len(reps) - len(shape)) + shape  # repeat prepends axes for extra reps
    interleaved = [v for d in shape for v in (1, d)]
    tiled = [v for r, d in zip(reps, shape, strict=True) for v in (r, d)]
    x = bb.emit(relax.op.reshape(x, interleaved))
    x = bb.emit(relax.op.broadcast_to(x, relax.ShapeExpr(tiled)))
    return bb.emit(relax.op.reshape(x, [r * d for r, d in zip(reps, shape, strict=True)]))


def _reshape(node, importer):
    """``view`` / ``reshape``; TVM's converter first compares the new shape with the old one
    as Python lists, which raises on a symbolic product (``view(x, [N * C, -1])``). With
    symbols the comparison is structural: an identity view returns its input, as TVM's
    does, and any other emits TVM's reshape."""
    args = importer.retrieve_args(node)
    x, dims = args[0], args[1] if isinstance(args[1], torch.Size | tuple | list) else args[1:]
    if all(_is_static(d) or d == -1 for d in dims):
        return _builtin(importer)[_op_name(node)](node)
    shape = list(x.ty.shape)
    if len(shape) == len(dims) and all(_same_dim(a, b) for a, b in zip(shape, dims, strict=True)):
        return x  # an identity view (as TVM's converter skips it): later patterns see through
    return importer._emit_torch_reshape(x, dims)


def _same_dim(a, b) -> bool:
    if _is_static(a) or _is_static(b):
        return _is_static(a) and _is_static(b) and int(a) == int(b)
    return bool(tvm_ffi.structural_equal(a, b))


def _arange(node, importer):
    """``arange`` with number bounds as a constant: TVM's ``R.arange`` has no tensor input, so
    ``FoldConstant`` leaves it and every op over it (``torch.eye`` decomposes to
    ``arange == arange``) unfolded, and a matmul by such a matrix failed to build ("the weight
    is not a constant"). Symbolic bounds keep TVM's converter."""
    args = list(node.args)
    if not all(isinstance(a, int | float) and not isinstance(a, bool) for a in args):
        return _builtin(importer)[_op_name(node)](node)
    start, end, step = (0, args[0], 1) if len(args) == 1 else (*args[:2], args[2] if len(
        args) > 2 else 1)
    dtype = node.kwargs.get("dtype")
    if dtype is None:  # torch's rule: integral bounds give int64, any float one the default
        dtype = torch.int64 if all(isinstance(a, int) for a in args) else \
            torch.get_default_dtype()
    values = torch.arange(start, end, step, dtype=dtype).numpy()
    return relax.const(values, str(values.dtype))


def _select(node, importer):
    """``select.int(x, dim, index)`` as a one-wide slice, squeezed. TVM's converter emits
    ``take(mode="fast")``, a gather whose legalization warns "Fast mode segfaults when there
    are out-of-bounds indices" once per kernel (``nn.MultiheadAttention`` splits q, k, v
    with it)."""
    x = importer.env[node.args[0]]
    dim, index = int(node.args[1]), int(node.args[2])
    shape = x.ty.shape
    dim %= len(shape)
    if index < 0:
        if not _is_static(shape[dim]):
            return _builtin(importer)["select.int"](node)
        index += int(shape[dim])
    bb = importer.block_builder
    part = bb.emit(relax.op.strided_slice(x, axes=[dim], begin=[index], end=[index + 1]))
    return bb.emit(relax.op.squeeze(part, axis=[dim]))


def _div(node, importer):
    """``div`` (true, floor or trunc rounding) in torch's result dtype. TVM's converter makes
    a Python number an int32 or float32 constant whatever the tensor's dtype, so ``x // 2`` and
    ``torch.div(x, 2, rounding_mode="floor")`` of a float32 tensor failed to import ("Binary
    operators must have the same datatype"), and an integer tensor divided by a number ran as
    an integer division (``torch.arange(n) / 3`` came out floored, silently)."""
    val = node.meta.get("val")
    dtype = str(getattr(val, "dtype", "")).removeprefix("torch.")
    mode = _arg(node, 2, "rounding_mode", None)
    if not dtype or dtype == "bool" or mode not in (None, "floor", "trunc"):
        return _builtin(importer)[_op_name(node)](node)
    bb = importer.block_builder

    def operand(arg):
        if not isinstance(arg, torch.fx.Node):
            return relax.const(arg, dtype)
        value = importer.env[arg]
        return value if str(value.ty.dtype) == dtype else bb.emit(relax.op.astype(value, dtype))

    lhs, rhs = operand(node.args[0]), operand(node.args[1])
    if mode == "floor":
        return bb.emit(relax.op.floor_divide(lhs, rhs))
    if mode == "trunc" and not dtype.startswith("float"):
        return bb.emit(relax.op.astype(bb.emit(relax.op.trunc(bb.emit(relax.op.divide(
            bb.emit(relax.op.astype(lhs, "float64")), bb.emit(relax.op.astype(rhs, "float64"))
        )))), dtype))
    quotient = bb.emit(relax.op.divide(lhs, rhs))
    return bb.emit(relax.op.trunc(quotient)) if mode == "trunc" else quotient


CONVERTERS: dict[str, Callable] = {
    "upsample_nearest2d.vec": _upsample_nearest2d,
    "repeat.default": _repeat,
    "select.int": _select,
    "arange.default": _arange,
    "arange.start": _arange,
    "arange.start_step": _arange,
    "view.default": _reshape,
    "reshape.default": _reshape,
    "elu.default": _elu,
    "amax.default": _reduction(relax.op.max),
    "amin.default": _reduction(relax.op.min),
    "min.dim": _min_dim,
    "prod.dim_int": _prod_dim,
    "div.Tensor": _div,
    "div.Tensor_mode": _div,
    "div.Scalar": _div,
    "div.Scalar_mode": _div,
}


def _builtin(importer) -> dict:
    """TVM's own converters, bound to this importer (built once per import)."""
    table = getattr(importer, "_aiq_builtin_converters", None)
    if table is None:
        table = type(importer).create_convert_map(importer)
        importer._aiq_builtin_converters = table
    return table


def _attributed(name: str, custom: Callable | None) -> Callable:
    """A converter that names the operator and module when conversion fails."""

    def convert(node, importer):
        try:
            if custom is not None:
                return custom(node, importer)
            return _builtin(importer)[name](node)
        except Exception as err:  # noqa: BLE001 - re-raised with the node's name
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise ConversionError(
                f"TVM's importer failed on aten.{name} in {_module_path(node)}: "
                f"{type(err).__name__}: {first}") from err

    return convert


def convert_map(ep: torch.export.ExportedProgram) -> dict[str, Callable]:
    """``custom_convert_map`` for ``ep``: our converters, and every operator of the graph
    wrapped so that a failing conversion names its operator and module."""
    names = {_op_name(n) for n in ep.graph.nodes if n.op == "call_function"}
    return {name: _attributed(name, CONVERTERS.get(name)) for name in names}


# ----------------------------------------------------------------------------- support check
def _op_name(node) -> str:
    return getattr(node.target, "__name__", str(node.target))


def _module_path(node) -> str:
    """Innermost module of a node in the user's model: ``'features.3' (MyBlock)``."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "the model's forward()"
    path, cls = list(stack.values())[-1]
    cls = cls if isinstance(cls, str) else getattr(cls, "__name__", str(cls))
    cls = cls.rsplit(".", 1)[-1]
    return f"'{path}' ({cls})" if path else f"the model's own forward() ({cls})"


def check_supported(ep: torch.export.ExportedProgram) -> None:
    """Raise :class:`UnsupportedOperatorError` naming every operator TVM cannot import.

    ``ep`` must already be decomposed (:func:`decompose`).
    """
    from tvm.relax.frontend.torch.exported_program_translator import ExportedProgramImporter

    known = set(ExportedProgramImporter().create_convert_map()) | set(CONVERTERS)
    where: dict[str, list[str]] = {}
    for node in ep.graph.nodes:
        if node.op != "call_function":
            continue
        name = _op_name(node)
        if name not in known:
            places = where.setdefault(name, [])
            path = _module_path(node)
            if path not in places:
                places.append(path)
    if where:
        lines = [f"  aten.{op} in {', '.join(paths[:3])}"
                 + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
                 for op, paths in sorted(where.items())]
        raise UnsupportedOperatorError(
            "the model uses PyTorch operators that TVM's importer cannot convert:\n"
            + "\n".join(lines)
            + "\nReplace them in the model (or register a converter in "
            "aiq_tvm.torch_ops.CONVERTERS)")
