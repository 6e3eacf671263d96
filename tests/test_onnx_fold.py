"""ONNX graphs whose shape arithmetic TVM's importer cannot evaluate (aiq_tvm.onnx_fold), and
TorchScript exports that depend on it: channel split / shuffle, resize, with a dynamic batch."""

import warnings
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import aiq_tvm
from aiq_tvm.frontend import batch_var
from aiq_tvm.onnx_fold import MAX_FOLDED_ELEMENTS, fold_constants
from aiq_tvm.passes import layer_table


def _const(name, value):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(
        np.asarray(value), name))


def _chunk_graph(weight=None):
    """x (N, 8, 4, 4) -> first half of the channels, split as torch.chunk exports it:
    Shape -> Gather(1) -> Div(2) -> Unsqueeze -> Slice; plus a Reshape to (N, -1) whose
    batch comes from Shape -> Gather(0)."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        _const("one", np.array(1, np.int64)), _const("zero", np.array(0, np.int64)),
        _const("two", np.array(2, np.int64)), _const("axes0", np.array([0], np.int64)),
        _const("starts", np.array([0], np.int64)), _const("axis1", np.array([1], np.int64)),
        helper.make_node("Gather", ["shape", "one"], ["c"], axis=0),
        helper.make_node("Div", ["c", "two"], ["half"]),
        helper.make_node("Unsqueeze", ["half", "axes0"], ["end"]),
        helper.make_node("Slice", ["x", "starts", "end", "axis1"], ["first"]),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
        _const("minus1", np.array([-1], np.int64)),
        helper.make_node("Concat", ["n1", "minus1"], ["flat_shape"], axis=0),
        helper.make_node("Reshape", ["first", "flat_shape"], ["y"]),
    ]
    inits = []
    if weight is not None:
        inits = [numpy_helper.from_array(weight, "w")]
        nodes += [_const("k", np.array(2.0, np.float32)),
                  helper.make_node("Mul", ["w", "k"], ["w2"]),
                  helper.make_node("MatMul", ["y", "w2"], ["out"])]
    out = "out" if weight is not None else "y"
    graph = helper.make_graph(
        nodes, "chunk", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8, 4, 4])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _ops(model) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


def _ort(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def test_static_dims_fold_and_the_batch_stays():
    model = _chunk_graph()
    folded = fold_constants(model, "x", [None, 8, 4, 4])
    ops = _ops(folded)
    # the channel count (Gather(1)) and everything computed from it are constants; the batch
    # (Gather(0)) and the Reshape it feeds are not
    assert ops["Div"] == 0 and ops["Gather"] == 1 and ops["Shape"] == 1
    assert ops["Slice"] == 1 and ops["Reshape"] == 1
    end = next(n for n in folded.graph.node if n.op_type == "Constant" and n.output[0] == "end")
    assert numpy_helper.to_array(end.attribute[0].t).tolist() == [4]
    x = np.random.default_rng(0).standard_normal((3, 8, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(_ort(folded, x), _ort(model, x))
    assert _ops(model)["Div"] == 1  # the input model is not modified


def test_a_static_batch_folds_everything_but_the_data_path():
    ops = _ops(fold_constants(_chunk_graph(), "x", [2, 8, 4, 4]))
    assert ops["Shape"] == 0 and ops["Gather"] == 0 and ops["Concat"] == 0
    assert ops["Slice"] == 1 and ops["Reshape"] == 1


def test_weights_are_not_folded():
    w = np.ones((64, 3), np.float32)
    folded = fold_constants(_chunk_graph(w), "x", [None, 8, 4, 4])
    assert _ops(folded)["Mul"] == 1  # the weight's scaling stays a node over the parameter
    assert [t.name for t in folded.graph.initializer] == ["w"]


def test_large_results_and_unreadable_models_are_left_alone():
    big = int(np.sqrt(MAX_FOLDED_ELEMENTS)) + 1
    nodes = [_const("s", np.array([big, big], np.int64)),
             helper.make_node("ConstantOfShape", ["s"], ["z"]),
             helper.make_node("Add", ["x", "z"], ["y"])]
    graph = helper.make_graph(
        nodes, "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [big, big])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [big, big])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert fold_constants(model, "x", [big, big]) is model
    custom = helper.make_model(helper.make_graph(
        [helper.make_node("Mystery", ["x"], ["y"], domain="vendor.ops")], "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("vendor.ops", 1)])
    assert fold_constants(custom, "x", [2]) is custom


class ShuffleUnit(nn.Module):
    """ShuffleNetV2's stride-1 unit: channel split, branch, concat, channel shuffle."""

    def __init__(self, c):
        super().__init__()
        half = c // 2
        self.branch = nn.Sequential(nn.Conv2d(half, half, 1), nn.ReLU(),
                                    nn.Conv2d(half, half, 3, padding=1, groups=half),
                                    nn.Conv2d(half, half, 1), nn.ReLU())

    def forward(self, x):
        a, b = x.chunk(2, dim=1)
        x = torch.cat((a, self.branch(b)), dim=1)
        n, c, h, w = x.size()
        return x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, -1, h, w)


class ShuffleNet(nn.Module):
    """A stem, two shuffle units (the second reads the shape the first's reshape made), a
    bilinear upsampling to twice the size and a classifier."""

    def __init__(self, c=16):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.units = nn.Sequential(ShuffleUnit(c), ShuffleUnit(c))
        self.fc = nn.Linear(c, 5)

    def forward(self, x):
        x = self.units(self.stem(x))
        n, c, h, w = x.size()
        # sizes (batch, channels, 2h, 2w), the first two read from the shape
        x = nn.functional.interpolate(x, size=(2 * h, 2 * w), mode="bilinear")
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("dynamic, opset", [(True, 17), (False, 17), (True, 11)],
                         ids=["dynamic-batch", "static-batch", "dynamic-batch-opset11"])
def test_torchscript_shuffle_units_import_and_match_torch(tmp_path, dynamic, opset):
    torch.manual_seed(0)
    net = ShuffleNet().eval()
    path = str(tmp_path / "shuffle.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(2, 3, 12, 12),), path, dynamo=False,
                          opset_version=opset, input_names=["x"],
                          dynamic_axes={"x": {0: "n"}} if dynamic else None)
    assert _ops(onnx.load(path))["Shape"] > 0  # the exporter wrote the shape arithmetic
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to a static batch
        mod, params = aiq_tvm.from_onnx(path, dynamic_batch=dynamic)
    assert (batch_var(mod) is not None) == dynamic
    batch = 3 if dynamic else 2
    x = np.random.default_rng(1).standard_normal((batch, 3, 12, 12)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    res = aiq_tvm.build(mod, "llvm", params=params, plan="fp32", batch_size=batch)
    out = res.run(x)
    assert np.abs(out - ref).max() / np.abs(ref).max() < 1e-5
    # every conv of the units is a layer, named by its module path
    names = {e.name for e in layer_table(aiq_tvm.passes.AnnotatePrecision("fp32")(mod))}
    assert names == {"stem", "fc"} | {f"units.{u}.branch.{i}" for u in (0, 1) for i in (0, 2, 3)}


def test_clip_attributes_of_old_opsets_import_as_activations(tmp_path):
    """Opsets before 11 write ReLU6 as Clip with min / max attributes."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU6(), nn.Conv2d(8, 8, 1), nn.Hardtanh(0, 2),
                        nn.Flatten(), nn.Linear(8 * 6 * 6, 4)).eval()
    path = str(tmp_path / "clip9.onnx")
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.from_numpy(x),), path, dynamo=False, opset_version=9,
                          input_names=["x"], dynamic_axes={"x": {0: "n"}})
    assert _ops(onnx.load(path))["Clip"] == 2
    mod, params = aiq_tvm.from_onnx(path)
    text = mod["main"].script()
    assert text.count("R.clip(") == 2 and "maximum" not in text and "minimum" not in text
    res = aiq_tvm.build(mod, "llvm", params=params, plan="int8", batch_size=2, calib_data=x)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    out = res.run(x)
    assert np.abs(out - ref).max() / np.abs(ref).max() < 0.05


@pytest.mark.parametrize("dynamic", [True, False], ids=["dynamic-batch", "static-batch"])
def test_dynamo_as_strided_view_is_a_reshape(tmp_path, dynamic):
    """The torch.export-based exporter writes the view after a channels-last layer norm as
    ``as_strided``: a Gather of the flattened tensor at indices made from ``Range(0, batch)``.
    TVM gives that range a batch of its own (``range_len_0``), so the import fell back to a
    static batch of 1, and that failed to build too. The Gather reads every index in order,
    so it is a reshape; and a static import folds the range at its batch."""
    from random_cnns import random_cnn

    case = random_cnn(38, max_blocks=6, profile="modern")  # conv, channels-last LN, linear
    assert "layernorm(channels last)" in case.describe()
    path = str(tmp_path / "ln.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(case.model, (torch.from_numpy(case.x),), path, dynamo=True,
                          input_names=["x"], verbose=False,
                          dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    assert _ops(onnx.load(path))["Range"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback
        mod, params = aiq_tvm.from_onnx(path, dynamic_batch=dynamic)
    batch = 3 if dynamic else 1
    x = np.random.default_rng(2).standard_normal((batch, *case.x.shape[1:])).astype(np.float32)
    with torch.no_grad():
        ref = case.model(torch.from_numpy(x)).numpy()
    res = aiq_tvm.build(mod, "llvm", params=params, plan="fp32", batch_size=batch)
    assert np.abs(res.run(x) - ref).max() / np.abs(ref).max() < 1e-5
