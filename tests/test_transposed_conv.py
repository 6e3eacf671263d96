"""Transposed convolutions imported as ordinary convs (aiq_tvm.transposed_conv): structure of
both rewrites, torch -> build -> VM against torch for strides, paddings, output paddings,
groups, dilations and batch sizes, int8 layers named by module path, and what is left alone."""

import warnings

import numpy as np
import pytest
import torch
import tvm
from torch import nn
from tvm import relax

import aiq_tvm


def _ops(mod) -> list[str]:
    ops = []
    relax.analysis.post_order_visit(mod["main"].body, lambda e: ops.append(e.op.name) if (
        isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op)) else None)
    return ops


class Up(nn.Module):
    def __init__(self, deconv: nn.ConvTranspose2d):
        super().__init__()
        self.conv = nn.Conv2d(6, deconv.in_channels, 3, padding=1)
        self.up = deconv

    def forward(self, x):
        return self.up(torch.relu(self.conv(x)))


CASES = {
    "k2s2": nn.ConvTranspose2d(8, 4, 2, stride=2),                      # U-Net upsampling
    "k3s2p1op1": nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1),
    "k4s2p1": nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1, bias=False),  # DCGAN
    "groups2": nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1, groups=2),  # odd output
    "groups2_op1": nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
    "dilation2": nn.ConvTranspose2d(8, 4, 3, stride=1, padding=2, dilation=2),
    "stride2x1": nn.ConvTranspose2d(8, 4, (3, 2), stride=(2, 1), padding=(1, 0)),
}


def _net(name: str) -> nn.Module:
    torch.manual_seed(0)
    return Up(CASES[name]).eval()


def _x(batch: int) -> np.ndarray:
    return np.random.default_rng(batch).standard_normal((batch, 6, 9, 7)).astype("float32")


def test_non_overlapping_windows_become_a_1x1_conv_and_a_depth_to_space():
    mod, params = aiq_tvm.from_torch(_net("k2s2"), _x(1))
    ops = _ops(mod)
    assert "relax.nn.conv2d_transpose" not in ops
    assert ops.count("relax.nn.conv2d") == 2 and "relax.permute_dims" in ops
    assert params["up.weight"].shape == (4 * 2 * 2, 8, 1, 1)  # the module's name is kept


def test_overlapping_windows_become_one_conv_of_all_residues_and_a_depth_to_space():
    # k=4, s=2, p=1: each output residue reads 2 x 2 taps within a 3 x 3 input window.
    mod, params = aiq_tvm.from_torch(_net("k4s2p1"), _x(1))
    assert "relax.nn.conv2d_transpose" not in _ops(mod)
    assert params["up.weight"].shape == (4 * 2 * 2, 8, 3, 3)
    conv = [c for c in _calls(mod, "relax.nn.conv2d") if c.args[1].name == "up.weight"]
    assert [int(p) for p in conv[0].attrs.padding] == [1, 1, 1, 1]
    # Of each residue's 3 x 3 window, the 2 x 2 taps it reaches are non-zero.
    nonzero = (params["up.weight"] != 0).reshape(4, 2, 2, 8, 3, 3).any(axis=(0, 3))
    assert nonzero.sum() == 2 * 2 * 4


def test_an_odd_output_size_takes_the_zero_dilated_input():
    mod, params = aiq_tvm.from_torch(_net("groups2"), _x(1))
    assert "relax.nn.conv2d_transpose" not in _ops(mod)
    # [Cout, Cin / groups, kh, kw], its 3 outputs per group padded to 4 (aiq_tvm.regroup_convs)
    assert params["up.weight"].shape == (8, 4, 3, 3)
    conv = [c for c in _calls(mod, "relax.nn.conv2d") if int(c.attrs.groups) == 2]
    assert len(conv) == 1 and [int(p) for p in conv[0].attrs.padding] == [1, 1, 1, 1]


def _calls(mod, name):
    calls = []
    relax.analysis.post_order_visit(mod["main"].body, lambda e: calls.append(e) if (
        isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op) and e.op.name == name)
        else None)
    return calls


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
        assert np.abs(out - ref).max() / np.abs(ref).max() < 2e-5, (name, batch)


def test_transposed_convs_are_int8_layers_named_by_module_path():
    net = _net("k3s2p1op1")
    x = _x(4)
    mod, params = aiq_tvm.from_torch(net, x)
    res = aiq_tvm.build(mod, params=params, plan="int8", calib_data=x, batch_size=4)
    rows = {r.name: r for r in res.report.rows}
    assert rows["up"].precision == "int8" and rows["up"].op == "conv2d"
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    assert np.abs(res.run(x) - ref).max() / np.abs(ref).max() < 0.05


def test_padding_beyond_the_kernel_reach_is_left_to_tvm():
    net = Up(nn.ConvTranspose2d(8, 4, 1, stride=2, padding=1)).eval()  # crops the output
    mod, params = aiq_tvm.from_torch(net, _x(1))
    assert "relax.nn.conv2d_transpose" in _ops(mod)
    res = aiq_tvm.build(mod, params=params, plan="fp32")
    with torch.no_grad():
        ref = net(torch.from_numpy(_x(2))).numpy()
    assert np.abs(res.run(_x(2)) - ref).max() / np.abs(ref).max() < 1e-5


def test_onnx_transposed_conv_is_rewritten_too(tmp_path):
    net = _net("k3s2p1op1")
    x = _x(2)
    path = str(tmp_path / "up.onnx")
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation, as elsewhere
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.from_numpy(x), path, input_names=["x"],
                          dynamic_axes={"x": {0: "n"}}, dynamo=False)
    mod, params = aiq_tvm.from_onnx(path)
    assert "relax.nn.conv2d_transpose" not in _ops(mod) and "up.weight" in params
    res = aiq_tvm.build(mod, params=params, plan="fp32")
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    assert np.abs(res.run(x) - ref).max() / np.abs(ref).max() < 2e-5
