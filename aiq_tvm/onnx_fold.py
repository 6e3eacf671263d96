"""Fold what an ONNX graph computes from constants and static dimensions, before TVM reads it.

PyTorch's TorchScript exporter writes every ``x.size(d)`` a model reads as graph arithmetic:
``torch.chunk`` (ShuffleNetV2's channel split) becomes ``Shape -> Gather -> Add -> Div ->
Mul -> Slice``. TVM's ONNX importer evaluates little of that: with a symbolic batch its
``Gather`` fails on the shape, with a static one the slices come out with unknown extents and
the import breaks further on. Where the dims read are static (every one but the batch, once the
input's shape is set), all of it is a constant; this module evaluates such nodes with ONNX's
reference evaluator and puts ``Constant`` nodes in their place.

* A ``Shape`` of a tensor whose inferred dims are all static is a constant. With a symbolic
  batch its value is known but for that entry, and a ``Gather``, ``Slice`` or ``Concat`` that
  picks static entries only is a constant too.
* A node of the default domain whose inputs are all constants is evaluated, unless it is
  random, holds a subgraph, or its result exceeds :data:`MAX_FOLDED_ELEMENTS`.
* Weights are ``main`` parameters, not constants (``onnx_frontend._inline_constants`` keeps
  them as initializers), so ops on them are never folded and layers keep their names.

Nodes that use the batch stay as they are: TVM imports those (``view(x.size(0), -1)``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["fold_constants"]

# Largest tensor a folded node may produce: shape arithmetic and small tables, not activations.
MAX_FOLDED_ELEMENTS = 1 << 16
# Fold / shape-inference rounds at most (ShuffleNetV2 needs 3: a channel split's sizes, then the
# channel shuffle's reshape, then the split of the shuffled tensor).
MAX_ROUNDS = 8
# Ops whose value is not a function of their inputs.
_NONDETERMINISTIC = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
                     "Multinomial", "Bernoulli", "Dropout"}


def fold_constants(proto, data_input: str, shape: list):
    """A copy of ``proto`` with constant-valued nodes replaced by ``Constant`` nodes.

    ``shape`` is the data input's shape, ``None`` (or a non-int) where it is symbolic.
    Returns ``proto`` itself when there is nothing to fold or ONNX's shape inference cannot
    read the model (the import then sees the graph as written)."""
    import onnx

    model = onnx.ModelProto.FromString(proto.SerializeToString())
    _set_input_shape(model.graph, data_input, shape)
    folded = 0
    # Each round's constants let shape inference see further (a Reshape to a folded shape
    # has known dims), which the next round folds from.
    for _ in range(MAX_ROUNDS):
        try:
            inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
        except Exception:  # noqa: BLE001 - custom domains, malformed files: fold no further
            break
        count = _fold_once(model, _inferred_dims(inferred.graph))
        if not count:
            break
        folded += count
    return model if folded else proto


def _fold_once(model, dims: dict[str, list]) -> int:
    """Replace the nodes of ``model`` whose values are known by ``Constant`` nodes, in place;
    the number of nodes replaced."""
    import onnx

    folder = _Folder(model, dims)
    kept = [node for node in model.graph.node if not folder.fold(node)]
    if not folder.folded:
        return 0
    needed = {i for n in kept for i in n.input} | {o.name for o in model.graph.output}
    needed |= {i for n in kept for i in _subgraph_inputs(n)}
    constants = [onnx.helper.make_node("Constant", [], [name],
                                       value=onnx.numpy_helper.from_array(folder.values[name],
                                                                          name))
                 for name in folder.folded_outputs if name in needed]
    del model.graph.node[:]
    model.graph.node.extend(constants + kept)
    return folder.folded


def _set_input_shape(graph, data_input: str, shape: list) -> None:
    for inp in graph.input:
        if inp.name != data_input:
            continue
        dims = inp.type.tensor_type.shape.dim
        del dims[:]
        for d in shape:
            dim = dims.add()
            if isinstance(d, (int, np.integer)):
                dim.dim_value = int(d)
            else:
                dim.dim_param = "batch"


def _inferred_dims(graph) -> dict[str, list]:
    """Tensor name -> dims (int, or None where symbolic) from shape inference."""
    out = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        tt = vi.type.tensor_type
        if tt.HasField("shape"):
            out[vi.name] = [d.dim_value if d.HasField("dim_value") else None
                            for d in tt.shape.dim]
    return out


def _subgraph_inputs(node) -> set[str]:
    """Names the subgraphs of ``node`` (If / Loop / Scan) read from the enclosing graph."""
    names: set[str] = set()
    for attr in node.attribute:
        for g in [attr.g, *attr.graphs] if (attr.HasField("g") or attr.graphs) else []:
            for n in g.node:
                names.update(n.input)
                for sub in n.attribute:
                    if sub.HasField("g") or sub.graphs:
                        names |= _subgraph_inputs(n)
    return names


class _Folder:
    """Walks the nodes in order, tracking constant values and partly known shape vectors."""

    def __init__(self, model, dims: dict[str, list]):
        self.opsets = list(model.opset_import)
        self.dims = dims
        self.values: dict[str, np.ndarray] = {}
        self.partial: dict[str, list] = {}  # 1-D int64 vectors with None where unknown
        self.folded = 0
        self.folded_outputs: list[str] = []

    def fold(self, node) -> bool:
        """Record ``node``'s value if it is constant; True when the node can go."""
        if node.domain not in ("", "ai.onnx") or node.op_type in _NONDETERMINISTIC or any(
                a.HasField("g") or a.graphs for a in node.attribute):
            return False
        if node.op_type == "Constant":  # stays as it is; its value feeds the folding
            self._keep_value(node, self._evaluate(node, []), count=False)
            return False
        if node.op_type == "Shape":
            return self._shape(node)
        if node.op_type in ("Gather", "Slice", "Concat") and self._pick_partial(node):
            return node.output[0] in self.values and self._mark(node)
        inputs = [i for i in node.input]
        if not all(i == "" or i in self.values for i in inputs):
            return False
        try:
            outs = self._evaluate(node, [self.values[i] if i else None for i in inputs])
        except Exception:  # noqa: BLE001 - an op the reference cannot run stays for TVM
            return False
        return self._keep_value(node, outs)

    # -- values
    def _keep_value(self, node, outs, count: bool = True) -> bool:
        if outs is None or len(outs) != len(node.output) or any(
                not isinstance(o, np.ndarray) or o.size > MAX_FOLDED_ELEMENTS for o in outs):
            return False
        for name, value in zip(node.output, outs, strict=True):
            self.values[name] = value
        return self._mark(node) if count else True

    def _mark(self, node) -> bool:
        self.folded += 1
        self.folded_outputs.extend(node.output)
        return True

    def _evaluate(self, node, inputs: list):
        import onnx
        from onnx.reference import ReferenceEvaluator

        names = [f"in{k}" if name else "" for k, name in enumerate(node.input)]
        call = onnx.NodeProto()
        call.CopyFrom(node)
        del call.input[:]
        call.input.extend(names)
        feeds = {n: v for n, v in zip(names, inputs, strict=True) if n}
        graph = onnx.helper.make_graph(
            [call], "fold",
            [onnx.helper.make_tensor_value_info(
                n, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
             for n, v in feeds.items()],
            [onnx.helper.make_empty_tensor_value_info(o) for o in node.output])
        model = onnx.helper.make_model(graph, opset_imports=self.opsets)
        return ReferenceEvaluator(model).run(None, feeds)

    # -- shapes
    def _shape(self, node) -> bool:
        dims = self.dims.get(node.input[0])
        if dims is None:
            return False
        attrs = {a.name: a.i for a in node.attribute}
        dims = dims[attrs.get("start", 0):attrs.get("end")]
        if all(d is not None for d in dims):
            return self._keep_value(node, [np.array(dims, np.int64)])
        self.partial[node.output[0]] = list(dims)
        return False

    def _pick_partial(self, node) -> bool:
        """Gather / Slice / Concat over partly known shape vectors: record the result, and
        its value where every entry it picks is known. False when this is not such a node."""
        vec = self._vector(node.input[0]) if node.input else None
        if node.op_type == "Concat":
            parts = [self._vector(i) for i in node.input]
            if any(p is None for p in parts) or not any(i in self.partial for i in node.input):
                return False
            out = [d for p in parts for d in p]
        elif vec is None or node.input[0] not in self.partial:
            return False
        elif node.op_type == "Gather":
            idx = self.values.get(node.input[1])
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            if idx is None or axis != 0 or idx.ndim > 1:
                return False
            picked = [vec[int(i)] for i in np.atleast_1d(idx)]
            if any(d is None for d in picked):
                return False
            value = np.array(picked, np.int64).reshape(idx.shape)
            self.values[node.output[0]] = value
            return True
        else:  # Slice: starts, ends[, axes[, steps]] as inputs (opset >= 10)
            args = [self.values.get(i) for i in node.input[1:]]
            if len(args) < 2 or any(a is None for a in args):
                return False
            steps = args[3] if len(args) > 3 else np.ones(1, np.int64)
            if len(args) > 2 and int(np.ravel(args[2])[0]) not in (0, -1):
                return False
            out = vec[slice(int(args[0][0]), int(args[1][0]), int(steps[0]))]
        if all(d is not None for d in out):
            self.values[node.output[0]] = np.array(out, np.int64)
        else:
            self.partial[node.output[0]] = out
        return True

    def _vector(self, name: str) -> list | None:
        if name in self.partial:
            return self.partial[name]
        value = self.values.get(name)
        if value is not None and value.ndim == 1 and value.dtype == np.int64:
            return [int(v) for v in value]
        return None
