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
* A ``Reshape`` whose target is known but for the batch gets -1 there (TVM then keeps the
  batch symbolic, and shape inference the dims after it).
* A ``Gather`` that reads a flattened tensor at every index in order, at indices computed
  from ``Range(0, batch)`` (the torch.export-based exporter's ``as_strided`` view after a
  channels-last layer norm), is a ``Reshape``: the indices are evaluated at two batch sizes
  to see it. TVM gives such a range a batch of its own, which pinned the import to a static
  batch.
* Weights are ``main`` parameters, not constants (``onnx_frontend._inline_constants`` keeps
  them as initializers), so ops on them are never folded and layers keep their names.

Nodes that use the batch stay as they are: TVM imports those (``view(x.size(0), -1)``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["fold_constants"]

# Largest tensor a folded node may produce: shape arithmetic and small tables, not activations.
MAX_FOLDED_ELEMENTS = 1 << 16
# Fold / shape-inference rounds at most. A round folds what the dims inferred so far allow;
# a network that reads a shape after each block needs two rounds per block (the TorchScript
# export of ShuffleNetV2 at opsets 11 and 13: 30 rounds, 1.5 s). Every round but the last
# folds at least one node, so the loop ends anyway; the cap bounds the time on huge graphs.
MAX_ROUNDS = 256
# A dim that is the data input's batch: its name in the ONNX graph while folding, and its
# entry in shape vectors.
BATCH = "batch"
# Batch sizes at which values that depend on the batch are evaluated (two, to tell which of
# their dims grow with it).
SAMPLE_BATCHES = (2, 3)
# Ops whose results over partly known shape vectors are tracked (_Folder._pick_partial).
_SHAPE_OPS = ("Gather", "Slice", "Concat", "Unsqueeze", "Squeeze", "Cast")
_INT64 = 7  # onnx.TensorProto.INT64
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
        count = _fold_once(model, inferred.graph)
        if not count:
            break
        folded += count
    return model if folded else proto


def _fold_once(model, inferred) -> int:
    """Replace the nodes of ``model`` whose values are known by ``Constant`` nodes, in place,
    given the graph shape inference made of it; the number of nodes replaced."""
    import onnx

    folder = _Folder(model, _inferred_dims(inferred))
    types = {vi.name: vi.type.tensor_type.elem_type for vi in inferred.value_info}
    kept, targets = [], []
    for node in model.graph.node:
        if folder.fold(node):
            continue
        as_reshape = folder.gather_as_reshape(node)
        if as_reshape is not None:
            targets.append(as_reshape[0])
            kept.append(as_reshape[1])
            folder.folded += 1
            continue
        target = folder.reshape_target(node)
        if target is not None:
            constant, out_dims = target
            targets.append(constant)
            node.input[1] = constant.output[0]
            _declare_dims(model.graph, node.output[0], out_dims,
                          types.get(node.output[0]) or onnx.TensorProto.FLOAT)
            folder.folded += 1
        kept.append(node)
    if not folder.folded:
        return 0
    needed = {i for n in kept for i in n.input} | {o.name for o in model.graph.output}
    needed |= {i for n in kept for i in _subgraph_inputs(n)}
    constants = [onnx.helper.make_node("Constant", [], [name],
                                       value=onnx.numpy_helper.from_array(folder.values[name],
                                                                          name))
                 for name in folder.folded_outputs if name in needed]
    del model.graph.node[:]
    model.graph.node.extend(constants + targets + kept)
    return folder.folded


def _declare_dims(graph, name: str, dims: list, elem_type: int) -> None:
    """Record ``name``'s dims (the batch by name) in the graph's value_info, which shape
    inference keeps: it would call the dim a -1 in the target makes unknown."""
    import onnx

    kept = [vi for vi in graph.value_info if vi.name != name]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    graph.value_info.append(onnx.helper.make_tensor_value_info(name, elem_type, list(dims)))


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
                dim.dim_param = BATCH


def _inferred_dims(graph) -> dict[str, list]:
    """Tensor name -> dims from shape inference: an int, :data:`BATCH` where the dim is the
    input's batch (shape inference carries its name), None where unknown."""
    out = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        tt = vi.type.tensor_type
        if tt.HasField("shape"):
            out[vi.name] = [d.dim_value if d.HasField("dim_value")
                            else BATCH if d.dim_param == BATCH else None for d in tt.shape.dim]
    return out


def _known(vec: list) -> bool:
    return all(isinstance(d, (int, np.integer)) for d in vec)


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
        # 1-D int64 shape vectors known in part: BATCH where the entry is the batch, None
        # where it is unknown
        self.partial: dict[str, list] = {}
        self.scalars: set[str] = set()  # those of ``partial`` that are 0-d (one entry)
        # values that follow from constants and the batch alone: {batch: value} at the
        # sample batches (index arithmetic over Range(0, batch))
        self.by_batch: dict[str, dict[int, np.ndarray]] = {}
        self.flattened: dict[str, list] = {}  # Reshape(t, [-1]) output -> t's dims
        self.folded = 0
        self.folded_outputs: list[str] = []

    def fold(self, node) -> bool:
        """Record ``node``'s value if it is constant; True when the node can go."""
        if node.domain not in ("", "ai.onnx") or node.op_type in _NONDETERMINISTIC or any(
                a.HasField("g") or a.graphs for a in node.attribute):
            return False
        if node.op_type == "Constant":  # stays as it is; its value feeds the folding
            try:
                self._keep_value(node, self._evaluate(node, []), count=False)
            except Exception:  # noqa: BLE001 - a value the reference cannot make: not tracked
                pass
            return False
        if node.op_type == "Shape":
            return self._shape(node)
        if node.op_type in _SHAPE_OPS and self._pick_partial(node):
            return node.output[0] in self.values and self._mark(node)
        inputs = [i for i in node.input]
        self._note_flatten(node)
        if not all(i == "" or i in self.values for i in inputs):
            self._evaluate_by_batch(node)
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
        if _known(dims):
            return self._keep_value(node, [np.array(dims, np.int64)])
        self.partial[node.output[0]] = list(dims)
        return False

    def _pick_partial(self, node) -> bool:
        """Ops over partly known shape vectors (Gather, Slice, Concat, Unsqueeze, Squeeze,
        Cast): record the result, and its value where every entry is known. False when this
        is not such a node."""
        op, ins = node.op_type, list(node.input)
        if op == "Concat":
            parts = [self._vector(i) for i in ins]
            if any(p is None for p in parts) or not any(i in self.partial for i in ins):
                return False
            return self._record(node, [d for p in parts for d in p], scalar=False)
        if not ins or ins[0] not in self.partial:
            return False
        vec, scalar = self.partial[ins[0]], ins[0] in self.scalars
        if op == "Cast":  # to int64 only: other types change what the values compute
            to = next((a.i for a in node.attribute if a.name == "to"), None)
            return to == _INT64 and self._record(node, vec, scalar)
        if op in ("Unsqueeze", "Squeeze"):  # of a scalar to one entry, and back
            if scalar != (op == "Unsqueeze") or len(vec) != 1:
                return False
            return self._record(node, vec, scalar=op == "Squeeze")
        if scalar:
            return False
        if op == "Gather":
            idx = self.values.get(ins[1]) if len(ins) > 1 else None
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            if idx is None or axis != 0 or idx.ndim > 1:
                return False
            return self._record(node, [vec[int(i)] for i in np.atleast_1d(idx)],
                                scalar=idx.ndim == 0)
        if op == "Slice":  # starts, ends[, axes[, steps]] as inputs (opset >= 10)
            args = [self.values.get(i) for i in ins[1:]]
            if len(args) < 2 or any(a is None for a in args) or (
                    len(args) > 2 and int(np.ravel(args[2])[0]) not in (0, -1)):
                return False
            step = int(np.ravel(args[3])[0]) if len(args) > 3 else 1
            return self._record(node, vec[slice(int(np.ravel(args[0])[0]),
                                                int(np.ravel(args[1])[0]), step)], False)
        return False

    def _record(self, node, vec: list, scalar: bool) -> bool:
        """``node``'s output is the shape vector ``vec`` (``None`` where unknown; one entry
        and 0-d if ``scalar``): a value when every entry is known."""
        out = node.output[0]
        if _known(vec):
            value = np.array(vec, np.int64)
            self.values[out] = value.reshape(()) if scalar else value
            return True
        self.partial[out] = list(vec)
        if scalar:
            self.scalars.add(out)
        if _known([d for d in vec if d != BATCH]) and None not in vec:
            self.by_batch[out] = {b: np.array([b if d == BATCH else d for d in vec],
                                              np.int64).reshape(() if scalar else -1)
                                  for b in SAMPLE_BATCHES}
        return True

    def _evaluate_by_batch(self, node) -> None:
        """Record ``node``'s values at the sample batches when its inputs are constants or
        such values (at least one)."""
        ins = [i for i in node.input if i]
        if not ins or not any(i in self.by_batch for i in ins) or not all(
                i in self.values or i in self.by_batch for i in ins):
            return
        outs = {}
        for b in SAMPLE_BATCHES:
            feed = [self.by_batch[i][b] if i in self.by_batch else self.values[i] if i else None
                    for i in node.input]
            try:
                got = self._evaluate(node, feed)
            except Exception:  # noqa: BLE001 - not evaluated: nothing recorded
                return
            if len(got) != 1 or not isinstance(got[0], np.ndarray) or \
                    got[0].size > MAX_FOLDED_ELEMENTS:
                return
            outs[b] = got[0]
        self.by_batch[node.output[0]] = outs

    def _note_flatten(self, node) -> None:
        """Remember the dims of what ``Reshape(t, [-1])`` flattens."""
        if node.op_type == "Reshape" and len(node.input) > 1:
            target = self.values.get(node.input[1])
            if target is not None and target.tolist() == [-1] and node.input[0] in self.dims:
                self.flattened[node.output[0]] = self.dims[node.input[0]]

    def gather_as_reshape(self, node):
        """``(Constant node, Reshape node)`` for a Gather that reads a flattened tensor at
        every index in order (indices made from ``Range(0, batch)``: how the torch.export-based
        exporter writes ``as_strided`` views), which is a reshape; None for other nodes."""
        import onnx

        if node.op_type != "Gather" or len(node.input) < 2 or any(
                a.name == "axis" and a.i for a in node.attribute):
            return None
        dims, idx = self.flattened.get(node.input[0]), self.by_batch.get(node.input[1])
        if dims is None or idx is None or dims.count(BATCH) != 1 or not _known(
                [d for d in dims if d != BATCH]):
            return None
        per_image = int(np.prod([d for d in dims if d != BATCH]))
        shapes = {b: v.shape for b, v in idx.items()}
        if any(v.size != b * per_image or not np.array_equal(v.ravel(), np.arange(v.size))
               for b, v in idx.items()):
            return None
        first, second = (shapes[b] for b in SAMPLE_BATCHES)
        if len(first) != len(second):
            return None
        varying = [k for k, (p, q) in enumerate(zip(first, second, strict=True)) if p != q]
        if len(varying) != 1:
            return None
        target = [-1 if k == varying[0] else int(d) for k, d in enumerate(first)]
        name = f"{node.output[0]}_as_reshape"
        shape = onnx.helper.make_node("Constant", [], [name], value=onnx.numpy_helper.from_array(
            np.array(target, np.int64), name))
        return shape, onnx.helper.make_node("Reshape", [node.input[0], name], list(node.output),
                                            name=node.name)

    def _vector(self, name: str) -> list | None:
        if name in self.partial and name not in self.scalars:
            return self.partial[name]
        value = self.values.get(name)
        if value is not None and value.ndim == 1 and value.dtype == np.int64:
            return [int(v) for v in value]
        return None

    def reshape_target(self, node):
        """``(Constant node, output dims)`` for a Reshape whose target shape is known but for
        the batch, with -1 there (which means the same, given the others); None for other
        nodes. A -1 the target already has is computed from the input's dims first. Shape
        inference reads a constant target, so the dims after the reshape become known."""
        import onnx

        if node.op_type != "Reshape" or len(node.input) < 2:
            return None
        vec = self.partial.get(node.input[1])
        if vec is None or node.input[1] in self.scalars or None in vec or vec.count(BATCH) != 1:
            return None
        allowzero = any(a.name == "allowzero" and a.i for a in node.attribute)
        dims = self.dims.get(node.input[0])
        out = list(vec)
        if not allowzero and 0 in out:  # 0 copies the input's dim
            if dims is None or len(dims) < len(out):
                return None
            out = [dims[i] if d == 0 else d for i, d in enumerate(out)]
        if out.count(BATCH) != 1 or None in out:
            return None
        if -1 in out:
            # the input holds the batch once, as does the target: the rest must match
            if dims is None or dims.count(BATCH) != 1 or not _known(
                    [d for d in dims if d != BATCH]):
                return None
            total = int(np.prod([d for d in dims if d != BATCH]))
            rest = int(np.prod([d for d in out if d not in (BATCH, -1)]))
            if rest == 0 or total % rest:
                return None
            out[out.index(-1)] = total // rest
        name = f"{node.input[1]}_batch_inferred"
        value = np.array([-1 if d == BATCH else d for d in out], np.int64)
        return (onnx.helper.make_node("Constant", [], [name],
                                      value=onnx.numpy_helper.from_array(value, name)), out)
