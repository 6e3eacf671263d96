"""Grouped convs the kernels lack, rewritten at import (aiq_tvm.regroup_convs): depthwise convs
with a channel multiplier and groups of channel counts that are not multiples of 4. Structure
of both rewrites, torch -> build -> VM against torch at FP32 and int8, the layers named by
module path in the report, ONNX, and what is left alone."""

import warnings

import numpy as np
import pytest
import torch
import tvm
from torch import nn
from tvm import relax

import aiq_tvm


def _calls(mod, name: str) -> list:
    calls = []
    relax.analysis.post_order_visit(mod["main"].body, lambda e: calls.append(e) if (
        isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op) and e.op.name == name)
        else None)
    return calls


CASES = {
    # GhostNet's cheap operation with ratio 3; TF MobileNets' depth multiplier
    "multiplier2": nn.Conv2d(8, 16, 3, padding=1, groups=8),
    "multiplier3_s2": nn.Conv2d(8, 24, 5, stride=2, padding=2, groups=8, bias=False),
    "ragged_out": nn.Conv2d(16, 8, 3, padding=1, groups=4),        # 4 in / 2 out per group
    "ragged_in_out": nn.Conv2d(6, 9, 3, stride=2, padding=1, groups=3),  # 2 / 3 per group
    "ragged_in": nn.Conv2d(12, 16, 1, groups=2),                   # 6 / 8 per group
    "ragged_dilated": nn.Conv2d(24, 6, 3, padding=2, dilation=2, groups=6),  # 4 / 1
}


class Net(nn.Module):
    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.pre = nn.Conv2d(3, conv.in_channels, 1)
        self.conv = conv

    def forward(self, x):
        return torch.relu(self.conv(torch.relu(self.pre(x))))


def _net(name: str) -> nn.Module:
    torch.manual_seed(0)
    net = Net(CASES[name]).eval()
    with torch.no_grad():  # no output channel near zero, so relative errors are meaningful
        net.conv.weight.add_(0.05 * torch.sign(net.conv.weight))
    return net


def _x(batch: int) -> np.ndarray:
    return np.random.default_rng(batch).standard_normal((batch, 3, 10, 7)).astype("float32")


def _relative_error(out, ref) -> float:
    return float(np.abs(out - ref).max() / np.abs(ref).max())


def test_a_channel_multiplier_becomes_a_depthwise_conv_over_repeated_channels():
    mod, params = aiq_tvm.from_torch(_net("multiplier2"), _x(1))
    convs = _calls(mod, "relax.nn.conv2d")
    assert [int(c.attrs.groups) for c in convs] == [1, 16]
    assert params["conv.weight"].shape == (16, 1, 3, 3)  # unchanged, under its own name
    np.testing.assert_array_equal(params["conv.weight"],
                                  CASES["multiplier2"].weight.detach().numpy())
    assert _calls(mod, "relax.broadcast_to")


def test_ragged_groups_are_zero_padded_to_four_channels_and_sliced_back():
    mod, params = aiq_tvm.from_torch(_net("ragged_in_out"), _x(1))
    conv = _calls(mod, "relax.nn.conv2d")[1]
    assert int(conv.attrs.groups) == 3
    w = params["conv.weight"]
    assert w.shape == (3 * 4, 4, 3, 3)  # 3 -> 4 outputs and 2 -> 4 inputs per group
    per_group = w.reshape(3, 4, 4, 3, 3)
    original = CASES["ragged_in_out"].weight.detach().numpy().reshape(3, 3, 2, 3, 3)
    np.testing.assert_array_equal(per_group[:, :3, :2], original)
    assert not per_group[:, 3:].any() and not per_group[:, :, 2:].any()
    assert _calls(mod, "relax.nn.pad") and _calls(mod, "relax.strided_slice")


@pytest.mark.parametrize("name", list(CASES))
def test_fp32_matches_torch_at_two_batch_sizes(name):
    net = _net(name)
    mod, params = aiq_tvm.from_torch(net, _x(1))
    res = aiq_tvm.build(mod, params=params, plan="fp32")
    for batch in (1, 3):
        x = _x(batch)
        with torch.no_grad():
            ref = net(torch.from_numpy(x)).numpy()
        out = res.run(x)
        assert out.shape == ref.shape
        assert _relative_error(out, ref) < 2e-5, (name, batch)


@pytest.mark.parametrize("name", ["multiplier3_s2", "ragged_in_out", "ragged_dilated"])
def test_rewritten_convs_are_int8_layers_named_by_module_path(name):
    net = _net(name)
    x = _x(4)
    mod, params = aiq_tvm.from_torch(net, x)
    res = aiq_tvm.build(mod, params=params, plan="int8", calib_data=x, batch_size=4)
    rows = {r.name: r for r in res.report.rows}
    assert rows["conv"].precision == "int8"
    assert rows["conv"].op == ("depthwise_conv2d" if "multiplier" in name else "grouped_conv2d")
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    assert _relative_error(res.run(x), ref) < 0.05


def test_supported_groups_and_shared_weights_are_left_alone():
    torch.manual_seed(0)
    mod, params = aiq_tvm.from_torch(Net(nn.Conv2d(8, 16, 3, groups=2)).eval(), _x(1))
    assert params["conv.weight"].shape == (16, 4, 3, 3)
    assert not _calls(mod, "relax.nn.pad") and not _calls(mod, "relax.strided_slice")

    class Shared(nn.Module):  # one weight, two convs: the padded copy would serve only one
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(4, 2, 3, 3))

        def forward(self, x):
            x = torch.cat([x, x[:, :1]], 1)
            y = nn.functional.conv2d(x, self.w, groups=2)
            return nn.functional.conv2d(y, self.w, groups=2)

    mod, params = aiq_tvm.from_torch(Shared().eval(), _x(1))
    assert params["w"].shape == (4, 2, 3, 3)
    assert not _calls(mod, "relax.nn.pad") and len(_calls(mod, "relax.reshape")) == 0


def test_onnx_grouped_convs_are_rewritten_too(tmp_path):
    net = _net("ragged_out")
    x = _x(2)
    path = str(tmp_path / "grouped.onnx")
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation, as elsewhere
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.from_numpy(x), path, input_names=["x"],
                          dynamic_axes={"x": {0: "n"}}, dynamo=False)
    mod, params = aiq_tvm.from_onnx(path)
    assert params["conv.weight"].shape == (4 * 4, 4, 3, 3)
    res = aiq_tvm.build(mod, params=params, plan="fp32")
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    assert _relative_error(res.run(x), ref) < 2e-5
