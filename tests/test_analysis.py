"""FLOPs counted by TVM against hand counts; bytes and consumers of real models."""

import pytest
import torch
from torch import nn
from tvm import relax

import aiq_tvm
from aiq_tvm.analysis import call_flops, cost_model
from aiq_tvm.frontend import specialize_batch
from aiq_tvm.models import mobilenet_v2, resnet20
from aiq_tvm.passes import AnnotatePrecision


def _conv_call(n, c, h, o, k, stride=1, pad=0, groups=1):
    x = relax.Var("x", relax.TensorType((n, c, h, h), "float32"))
    w = relax.Var("w", relax.TensorType((o, c // groups, k, k), "float32"))
    return relax.op.nn.conv2d(x, w, strides=stride, padding=pad, groups=groups)


def _normalized(call):
    bb = relax.BlockBuilder()
    return bb.normalize(call)


def test_conv_flops_hand_counts():
    # 3x3 16->16 at 32x32: 2 * 16 * 16 * 9 * 32 * 32.
    assert call_flops(_normalized(_conv_call(1, 16, 32, 16, 3, pad=1))) == 4_718_592
    # depthwise 3x3 over 32 channels at 16x16, stride 2 -> 8x8 outputs: 2 * 32 * 9 * 64.
    assert call_flops(_normalized(_conv_call(1, 32, 16, 32, 3, 2, 1, groups=32))) == 36_864
    x = relax.Var("x", relax.TensorType((4, 64), "float32"))
    w = relax.Var("w", relax.TensorType((64, 10), "float32"))
    assert call_flops(_normalized(relax.op.matmul(x, w))) == 2 * 4 * 64 * 10


def _model_cost(model):
    mod, _ = aiq_tvm.from_torch(model.eval(), torch.randn(2, 3, 32, 32))
    return cost_model(AnnotatePrecision("fp32")(specialize_batch(mod, 1)))


def _hand_macs(model) -> int:
    """Sum over Conv2d/Linear of Cout * Cin/groups * k * k * OH * OW, by forward hooks."""
    macs = []

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            macs.append(out.numel() * (m.in_channels // m.groups) * k)
        else:
            macs.append(out.numel() * m.in_features)

    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    for h in hs:
        h.remove()
    return sum(macs)


@pytest.mark.parametrize("make", [resnet20, mobilenet_v2])
def test_model_flops_equal_hand_counts(make):
    model = make().eval()
    cost = _model_cost(model)
    assert cost.total_flops() == 2 * _hand_macs(model)


def test_resnet20_totals_and_consumers():
    cost = _model_cost(resnet20())
    conv_macs = sum(lc.flops for lc in cost.layers if lc.op != "dense") / 2
    # 40.55 M for the 3x3 convs of the paper's ResNet-20 + 0.26 M for the 1x1 shortcuts.
    assert 40.5e6 <= conv_macs <= 40.9e6
    assert len(cost.layers) == 22
    assert cost["layer1.0.conv1"].consumers == ("layer1.0.conv2",)
    # A block output: the next block's conv1 reads it as data, its conv2 adds it as residual.
    assert cost["layer1.0.conv2"].consumers == ("layer1.1.conv1",)
    assert cost["layer1.0.conv2"].residual_consumers == ("layer1.1.conv2",)
    assert cost["layer1.1.conv2"].residual_source == "layer1.0.conv2"
    assert cost["layer1.0.conv2"].residual_source == "conv1"  # the stem, relu fused
    assert cost["layer3.2.conv2"].consumers is None  # read by the pooling
    assert cost["conv1"].weight_elems == 16 * 3 * 9
    assert cost.fp32_ai() > cost.ai({}) * 0.999
    assert cost.ai({n: "int8" for n in cost.names}) > cost.fp32_ai()
