"""Import from ONNX: layer names, batch-norm folding, dynamic batch, onnxruntime agreement."""

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import tvm
from onnx import TensorProto, helper
from torch import nn
from tvm import relax

import aiq_tvm
from aiq_tvm.frontend import batch_var, specialize_batch
from aiq_tvm.passes import layer_table
from aiq_tvm.pipeline import bind_params
from conftest import randomize_bn


class SmallCNN(nn.Module):
    """Conv-BN-ReLU, a block with a 1x1 downsample, depthwise + ReLU6, global pool, linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.block = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16),
                                   nn.ReLU6())
        self.down = nn.Sequential(nn.Conv2d(8, 16, 1, stride=2, bias=False), nn.BatchNorm2d(16))
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        y = torch.relu(self.bn(self.stem(x)))
        y = self.block(y) + self.down(y)
        y = nn.functional.relu6(self.dw(y))
        return self.fc(y.mean((2, 3)))


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return randomize_bn(SmallCNN())


def _export(model, path, *, fold=True, batch=2, dynamic=True):
    x = torch.randn(batch, 3, 16, 16)
    kw = {} if fold else {"training": torch.onnx.TrainingMode.PRESERVE,
                          "do_constant_folding": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "n"}} if dynamic else None, **kw)
    return str(path)


def _run(mod, params, x):
    mod = specialize_batch(mod, len(x)) if batch_var(mod) is not None else mod
    mod = tvm.transform.Sequential(bind_params(params))(mod)
    ex = tvm.compile(mod, "llvm")
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


def _ort(path, x):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _relerr(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("fold", [True, False], ids=["exporter-folded-bn", "bn-nodes"])
def test_names_bn_and_dynamic_batch_match_torch_and_ort(cnn, tmp_path, fold):
    path = _export(cnn, tmp_path / "m.onnx", fold=fold)
    if fold:  # the exporter folded BN and named the folded weights anonymously
        inits = [t.name for t in onnx.load(path).graph.initializer]
        assert any(n.startswith("onnx::") for n in inits)
    mod, params = aiq_tvm.from_onnx(path)
    tmod, tparams = aiq_tvm.from_torch(cnn, torch.randn(2, 3, 16, 16))
    # The same parameter names as the PyTorch import: module paths, BN folded into the convs.
    assert set(params) == set(tparams)
    assert "batch_norm" not in mod.script()
    assert batch_var(mod) is not None
    assert [p.name for p in mod["main"].params[1:]] == list(params)
    names = [e.name for e in layer_table(aiq_tvm.passes.AnnotatePrecision("fp32")(mod))]
    assert sorted(names) == ["block.0", "down.0", "dw", "fc", "stem"]
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    assert _relerr(_run(mod, params, x), _ort(path, x)) < 1e-4


def test_relu6_clip_becomes_a_fused_activation(cnn, tmp_path):
    """ONNX Clip(0, 6) imports as relax.clip, so it is part of the layer (not a TE kernel)."""
    mod, _ = aiq_tvm.from_onnx(_export(cnn, tmp_path / "m.onnx"))
    text = mod.script()
    assert "R.clip(" in text and "call_tir" not in text


def test_build_int8_from_onnx_close_to_ort(cnn, tmp_path):
    path = _export(cnn, tmp_path / "m.onnx")
    mod, params = aiq_tvm.from_onnx(path)
    calib = np.random.default_rng(1).standard_normal((32, 3, 16, 16)).astype(np.float32)
    res = aiq_tvm.build(mod, params=params, plan="int8", calib_data=calib, batch_size=4)
    assert set(res.report.precisions().values()) == {"int8"}
    x = calib[:4]
    assert _relerr(res.run(x), _ort(path, x)) < 0.1


def test_static_batch_file_is_made_dynamic(cnn, tmp_path):
    path = _export(cnn, tmp_path / "m.onnx", batch=1, dynamic=False)
    mod, params = aiq_tvm.from_onnx(path)
    assert batch_var(mod) is not None
    x = np.random.default_rng(2).standard_normal((2, 3, 16, 16)).astype(np.float32)
    ref = np.concatenate([_ort(path, x[i:i + 1]) for i in range(2)])
    assert _relerr(_run(mod, params, x), ref) < 1e-4


def _tiny_graph(in_shape, reshape_to=None, inputs=None, dtype=TensorProto.FLOAT):
    """x -> Conv(W) [-> Reshape(const)]: a hand-written ONNX model."""
    w = helper.make_tensor("W", TensorProto.FLOAT, [4, 3, 1, 1], np.ones(12, np.float32))
    nodes = [helper.make_node("Conv", ["x", "W"], ["y"], name="/conv/Conv")]
    inits, out_shape = [w], ["N", 4, 8, 8]
    if reshape_to is not None:
        inits.append(helper.make_tensor("shape", TensorProto.INT64, [2], reshape_to))
        nodes.append(helper.make_node("Reshape", ["y", "shape"], ["z"]))
        out_shape = None
    graph_inputs = inputs or [helper.make_tensor_value_info("x", dtype, in_shape)]
    out = helper.make_tensor_value_info("z" if reshape_to else "y", TensorProto.FLOAT, out_shape)
    graph = helper.make_graph(nodes, "g", graph_inputs, [out], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_anonymous_weight_gets_scope_name_and_constant_shape_input_is_not_a_param():
    model = _tiny_graph([1, 3, 8, 8], reshape_to=[1, 256])
    with pytest.warns(UserWarning, match="static batch 1"):
        mod, params = aiq_tvm.from_onnx(model)
    # W keeps its (non-anonymous) name; the int64 shape stays a constant, not a weight.
    assert list(params) == ["W"] and batch_var(mod) is None


def test_symbolic_spatial_dims_need_input_shape():
    model = _tiny_graph(["N", 3, "H", "W"])
    with pytest.raises(ValueError, match=r"symbolic dimensions \(\?, 3, \?, \?\).*input_shape"):
        aiq_tvm.from_onnx(model)
    mod, _ = aiq_tvm.from_onnx(model, input_shape=(3, 8, 8))
    assert [int(d) for d in list(mod["main"].params[0].ty.shape)[1:]] == [3, 8, 8]
    with pytest.raises(ValueError, match=r"contradicts"):
        aiq_tvm.from_onnx(_tiny_graph(["N", 3, 8, 8]), input_shape=(1, 8, 8))


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing.onnx", "does not exist"),
    (lambda p: (p / "bad.onnx").write_bytes(b"\x00garbage\xff" * 10) and p / "bad.onnx",
     "is not an ONNX model"),
])
def test_bad_files(tmp_path, make, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        aiq_tvm.from_onnx(make(tmp_path))


def test_bad_inputs():
    two = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 8, 8]) for n in "xy"]
    with pytest.raises(ValueError, match=r"2 data inputs \(\['x', 'y'\]\)"):
        aiq_tvm.from_onnx(_tiny_graph(None, inputs=two))
    with pytest.raises(ValueError, match="input 'x' is INT64; aiq_tvm takes float32"):
        aiq_tvm.from_onnx(_tiny_graph([1, 3, 8, 8], dtype=TensorProto.INT64))
    with pytest.raises(ValueError, match="expects a path or an onnx.ModelProto"):
        aiq_tvm.from_onnx(42)
