"""Import ONNX models into Relax with layer names and batch norm folded, like ``from_torch``.

``from_onnx`` goes through TVM's ``relax.frontend.onnx.from_onnx`` with the initializers kept
as ``main`` parameters, so the AIQ passes name each layer after its weight parameter.  The
parameters keep the producer's initializer names when those carry a module path
(``layer1.0.conv1.weight``).  Exporters that fold batch norm invent anonymous names
(PyTorch's TorchScript exporter writes ``onnx::Conv_203``); such a weight is named after the
scope in its node's name instead (node ``/layer1/layer1.0/conv1/Conv`` ->
``layer1.0.conv1.weight``), which is the PyTorch module path again.  Batch norm that follows a
convolution is folded into it (:func:`aiq_tvm.frontend.fold_batch_norm`), and the batch
dimension is symbolic so one module serves every batch size.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from pathlib import Path

import numpy as np
import tvm
from tvm import relax

from .frontend import _rename_params, fold_batch_norm
from .onnx_fold import fold_constants
from .passes import CanonicalizeClip
from .regroup_convs import regroup_convs
from .transposed_conv import transposed_conv_as_conv

__all__ = ["from_onnx", "onnx_input_shape"]

# Input index -> parameter suffix for the ops whose initializers name a layer.
_PARAM_SLOTS = {
    "Conv": {1: "weight", 2: "bias"},
    "ConvTranspose": {1: "weight", 2: "bias"},
    "Gemm": {1: "weight", 2: "bias"},
    "MatMul": {1: "weight"},
    "BatchNormalization": {1: "weight", 2: "bias", 3: "running_mean", 4: "running_var"},
}
# Names an exporter made up (``onnx::Conv_203``, ``Conv_203``, ``123``) rather than took from
# the producer's module tree.
_ANONYMOUS = re.compile(r"onnx::.*|[A-Za-z]*_?\d+")


def from_onnx(
    model,
    *,
    input_shape: tuple | None = None,
    dynamic_batch: bool = True,
    fold_bn: bool = True,
) -> tuple[tvm.IRModule, dict[str, np.ndarray]]:
    """Import an ONNX model into a Relax IRModule plus its weights.

    Parameters
    ----------
    model : str, os.PathLike or onnx.ModelProto
        An ``.onnx`` file or a loaded model with one float32 data input.
    input_shape : tuple of int, optional
        The input's shape without the batch dimension, e.g. ``(3, 224, 224)``.  Needed when
        the file leaves a non-batch dimension symbolic; must agree with the dimensions it fixes.
    dynamic_batch : bool
        Make the batch dimension a symbolic variable (:func:`aiq_tvm.specialize_batch` fixes
        it before compilation).  If the graph only works for the batch stored in the file
        (e.g. a Reshape to a constant shape), the import falls back to that batch and warns.
    fold_bn : bool
        Fold batch norm that follows a convolution into the convolution's weight and bias.

    Returns
    -------
    mod : tvm.IRModule
        ``main(x, *weights)``; the weights are parameters named as described in the module
        docstring.
    params : dict of str to numpy.ndarray
        Values of those parameters, in signature order.

    Raises
    ------
    ValueError
        If the file is not an ONNX model, has no or several data inputs, a non-float32 input,
        symbolic dimensions ``input_shape`` does not fix, or operators TVM cannot import.
    FileNotFoundError
        If the file does not exist.
    """
    proto, where = _load(model)
    name, dims = _data_input(proto.graph, where)
    proto, names = _name_params(proto)
    shape = _resolve_shape(name, dims, input_shape, where)
    imported = None
    if dynamic_batch:
        try:
            # shape arithmetic over the static dims folds, the batch's stays symbolic
            mod = _import(fold_constants(proto, name, [None, *shape[1:]]), name,
                          [tvm.tirx.Var("batch", "int64"), *shape[1:]])
            if _batch_is_symbolic(mod):
                imported = mod
            else:
                reason = "its output's first dimension is not the batch"
        except ValueError:
            raise
        except Exception as err:  # noqa: BLE001 - the importer raises many types
            reason = f"{type(err).__name__}: {_first_line(err)}"
        if imported is None:
            static = shape[0] if isinstance(shape[0], int) else 1
            warnings.warn(f"{where}: the batch dimension cannot be made dynamic ({reason}); "
                          f"importing with the static batch {static}", stacklevel=2)
            shape = [static, *shape[1:]]
    if imported is None:
        if not isinstance(shape[0], int):
            shape = [1, *shape[1:]]
        imported = _import(fold_constants(proto, name, shape), name, shape)
    mod, params = _rename_params(CanonicalizeClip()(imported), names)
    if fold_bn:
        mod, params = fold_batch_norm(mod, params)
    return regroup_convs(*transposed_conv_as_conv(mod, params))


def onnx_input_shape(model) -> tuple[str, list]:
    """The data input's name and dims (``int`` or ``None`` where symbolic) of an ONNX model."""
    proto, where = _load(model)
    return _data_input(proto.graph, where)


# ----------------------------------------------------------------------------- loading
def _load(model):
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model, "the ONNX model"
    if not isinstance(model, (str, os.PathLike)):
        raise ValueError(f"from_onnx expects a path or an onnx.ModelProto, got "
                         f"{type(model).__name__}")
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file {str(path)!r} does not exist")
    try:
        proto = onnx.load(str(path))
    except Exception as err:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise ValueError(f"{path} is not an ONNX model ({type(err).__name__}: "
                         f"{_first_line(err)})") from None
    if not proto.graph.node:
        raise ValueError(f"{path} is not an ONNX model (its graph has no nodes)")
    return proto, str(path)


def _data_input(graph, where: str) -> tuple[str, list]:
    inits = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ValueError(f"{where} has {len(inputs)} data inputs "
                         f"({[i.name for i in inputs]}); aiq_tvm takes models with one input")
    inp = inputs[0]
    tt = inp.type.tensor_type
    if tt.elem_type != 1:  # onnx.TensorProto.FLOAT
        import onnx

        dtype = onnx.TensorProto.DataType.Name(tt.elem_type) if tt.elem_type else "unknown"
        raise ValueError(f"{where}: input {inp.name!r} is {dtype}; aiq_tvm takes float32 inputs")
    if not tt.HasField("shape"):
        return inp.name, []
    dims = [int(d.dim_value) if d.HasField("dim_value") else None for d in tt.shape.dim]
    return inp.name, dims


def _resolve_shape(name: str, dims: list, input_shape, where: str) -> list:
    """Full input shape (batch first; ``None`` for a symbolic batch)."""
    if input_shape is not None:
        given = tuple(int(d) for d in input_shape)
        if any(d < 1 for d in given):
            raise ValueError(f"input_shape must hold positive sizes, got {given}")
        if dims and len(dims) - 1 != len(given):
            raise ValueError(f"{where}: input {name!r} has shape {_fmt(dims)}; input_shape "
                             f"{given} has {len(given)} dims but needs {len(dims) - 1} (the "
                             "shape without the batch)")
        fixed = dims[1:] if dims else [None] * len(given)
        if any(f is not None and f != g for f, g in zip(fixed, given, strict=True)):
            raise ValueError(f"{where}: input {name!r} has shape {_fmt(dims)}, which "
                             f"input_shape {given} contradicts")
        return [dims[0] if dims else None, *given]
    if not dims:
        raise ValueError(f"{where}: input {name!r} has no shape; pass input_shape=(C, H, W)")
    if any(d is None for d in dims[1:]):
        raise ValueError(f"{where}: input {name!r} has symbolic dimensions {_fmt(dims)}; "
                         "pass input_shape=(C, H, W) to fix them")
    return list(dims)


def _fmt(dims) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def _first_line(err) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _import(proto, name: str, shape: list) -> tvm.IRModule:
    from tvm.relax.frontend.onnx import from_onnx as tvm_from_onnx

    with warnings.catch_warnings(), _converter_fixes():
        warnings.simplefilter("ignore")  # "Renaming name ..." per input; the names are ours
        try:
            return tvm_from_onnx(proto, shape_dict={name: shape}, keep_params_in_input=True)
        except tvm.error.OpNotImplemented as err:
            raise ValueError(f"TVM cannot import this ONNX model: {_first_line(err)}") from None


@contextlib.contextmanager
def _converter_fixes():
    """TVM's ONNX converter table with :func:`_resize_sizes_fix` and
    :func:`_clip_attributes_fix` applied, for one import.

    The table is rebuilt by ``_get_convert_map()`` on every lookup, so it is that function
    that is swapped, and restored afterwards."""
    from tvm.relax.frontend.onnx import onnx_frontend as tvm_onnx

    original = tvm_onnx._get_convert_map

    def fixed():
        table = original()
        table["Resize"] = _resize_sizes_fix(table["Resize"])
        table["Clip"] = _clip_attributes_fix(table["Clip"])
        return table

    tvm_onnx._get_convert_map = fixed
    try:
        yield
    finally:
        tvm_onnx._get_convert_map = original


def _clip_attributes_fix(clip):
    """TVM's Clip converter, with the bounds of opsets before 11 (attributes) as ``relax.clip``.

    TVM lowers such a Clip to two TE kernels with the bounds compiled in, which neither
    :class:`~aiq_tvm.passes.CanonicalizeClip` nor the layer patterns can read: ReLU6 stayed a
    separate kernel, and a MobileNetV2 written at opset 9 failed in FuseTIR. Finite bounds
    become ``clip(x, min, max)`` and ``min=0`` alone ``relu``, what opset 11's constant-input
    form becomes after CanonicalizeClip; other bounds go to TVM's converter."""

    class Clip(clip):
        @classmethod
        def _impl_v1(cls, bb, inputs, attr, params):
            lo = float(attr.get("min", -np.inf))
            hi = float(attr.get("max", np.inf))
            if np.isfinite(lo) and np.isfinite(hi):
                return relax.op.clip(inputs[0], lo, hi)
            if lo == 0.0 and hi == np.inf:
                return relax.op.nn.relu(inputs[0])
            return super()._impl_v1(bb, inputs, attr, params)

    return Clip


def _resize_sizes_fix(resize):
    """TVM's Resize converter, taking ``sizes`` whose batch (or channel) entry is symbolic.

    PyTorch's exporter writes an interpolation's ``sizes`` as ``Concat(Shape(x)[:2], [H, W])``;
    with a dynamic batch that folds to the shape ``(batch, C, H, W)``, and TVM 0.27 turns every
    entry into an int before it drops the first two, which fails on ``batch``. Only the spatial
    entries are read, so a symbolic leading entry is replaced by 1 first; anything else goes to
    TVM's converter unchanged."""
    from tvm.relax.frontend.onnx.onnx_frontend import get_constant

    class Resize(resize):
        @classmethod
        def _impl_v18(cls, bb, inputs, attr, params):
            inputs = type(inputs)(inputs)
            sizes = get_constant(inputs[3], params) if len(inputs) > 3 else None
            if isinstance(sizes, relax.ShapeExpr) and len(sizes.values) > 2 and all(
                    isinstance(v, tvm.tirx.IntImm) for v in sizes.values[2:]):
                lead = [v if isinstance(v, tvm.tirx.IntImm) else 1 for v in sizes.values[:2]]
                inputs[3] = relax.ShapeExpr([*lead, *sizes.values[2:]])
            # opsets 11-12 write the unused one of scales / sizes as an empty tensor, which
            # TVM counts as given ("Only one of scales and sizes can be provided")
            if len(inputs) > 3 and inputs[3] is not None and _empty(inputs[2], params):
                inputs[2] = None
            return super()._impl_v18(bb, inputs, attr, params)

    return Resize


def _empty(expr, params) -> bool:
    """Whether ``expr`` is a constant with no elements."""
    from tvm.relax.frontend.onnx.onnx_frontend import get_constant

    value = get_constant(expr, params) if expr is not None else None
    return isinstance(value, tvm.ir.GenericConst) and value.value.numpy().size == 0


def _batch_is_symbolic(mod: tvm.IRModule) -> bool:
    func = mod["main"]
    batch = func.params[0].ty.shape[0]
    ret = func.ret_ty
    outs = ret.fields if isinstance(ret, relax.TupleType) else [ret]
    for out in outs:
        shape = getattr(out, "shape", None)
        if shape is None or not len(shape) or not isinstance(shape[0], tvm.tirx.Var) or \
                not shape[0].same_as(batch):
            return False
    return True


# ----------------------------------------------------------------------------- naming
def _scope_path(node_name: str) -> str | None:
    """Module path from an exporter's scoped node name (``/layer1/layer1.0/conv1/Conv``).

    PyTorch's exporter writes one scope per enclosing module: the child's attribute name
    (``conv1``), or, for children of containers, the container's scope plus the index
    (``layer1.0`` under ``layer1``, ``downsample.0`` under ``downsample``).
    """
    parts = [p for p in node_name.split("/") if p]
    if len(parts) < 2 or not node_name.startswith("/"):
        return None
    path: list[str] = []
    for part in parts[:-1]:
        if path and part.startswith(path[-1] + "."):
            path[-1] = part
        else:
            path.append(part)
    return ".".join(path)


def _name_params(proto):
    """A copy of the model in which every layer has its own weight initializers, and the
    Relax parameter name (initializer name without ``onnx::``) -> name to give it.

    Exporters share identical tensors between nodes (through Identity nodes or directly);
    one weight per layer lets each layer be named, quantized and batch-norm-folded alone.
    """
    import onnx

    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    alias = {n.output[0]: n.input[0] for n in graph.node
             if n.op_type == "Identity" and n.input and n.output}

    def source(name: str) -> str:
        seen = set()
        while name in alias and name not in seen:
            seen.add(name)
            name = alias[name]
        return name

    taken = {n.removeprefix("onnx::") for n in inits}
    renamed: dict[str, str] = {}
    claimed: set[str] = set()

    def fresh(base: str) -> str:
        name, k = base, 1
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        taken.add(name)
        return name

    for node in graph.node:
        slots = _PARAM_SLOTS.get(node.op_type, {})
        path = _scope_path(node.name) if slots else None
        for idx, suffix in slots.items():
            if idx >= len(node.input) or source(node.input[idx]) not in inits:
                continue
            init = source(node.input[idx])
            if init in claimed and node.op_type != "BatchNormalization":
                copy = onnx.TensorProto()
                copy.CopyFrom(inits[init])
                copy.name = fresh(f"{path}.{suffix}" if path else init.removeprefix("onnx::"))
                graph.initializer.append(copy)
                node.input[idx] = copy.name
                continue
            claimed.add(init)
            if path and _ANONYMOUS.fullmatch(init) and init not in renamed:
                renamed[init] = fresh(f"{path}.{suffix}")
    _inline_constants(graph, claimed)
    return proto, {old.removeprefix("onnx::"): new for old, new in renamed.items()}


def _inline_constants(graph, weights: set[str]) -> None:
    """Turn every initializer that is not a layer's parameter into a Constant node.

    Clip bounds, shape vectors and scalars then import as Relax constants (which constant
    folding and the layer patterns can see) instead of as ``main`` parameters.
    """
    import onnx

    keep = [t for t in graph.initializer if t.name in weights]
    moved = [t for t in graph.initializer if t.name not in weights]
    if not moved:
        return
    nodes = [onnx.helper.make_node("Constant", [], [t.name], value=t) for t in moved]
    moved_names = {t.name for t in moved}
    inputs = [i for i in graph.input if i.name not in moved_names]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    del graph.input[:]
    graph.input.extend(inputs)
    body = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + body)
