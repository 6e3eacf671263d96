"""SplitLargeMeans: a mean over a large H x W becomes a mean over W then over H (Before/Expected),
small means stay, and global average pooling over a large map (EfficientNet's
squeeze-and-excitation at 112 x 112) keeps float32 accuracy in an AIQ build."""

import numpy as np
import torch
import tvm
from torch import nn
from tvm.script import ir as I
from tvm.script import relax as R

import aiq_tvm
from aiq_tvm.passes import SplitLargeMeans


def test_large_mean_is_split_one_axis_at_a_time():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 32, 32, 8), "float32")) -> R.Tensor((1, 8), "float32"):
            with R.dataflow():
                gv = R.mean(x, axis=[1, 2], keepdims=False)
                R.output(gv)
            return gv

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 32, 32, 8), "float32")) -> R.Tensor((1, 8), "float32"):
            with R.dataflow():
                w = R.mean(x, axis=[2], keepdims=True)
                gv = R.mean(w, axis=[1, 2], keepdims=False)
                R.output(gv)
            return gv

    tvm.ir.assert_structural_equal(SplitLargeMeans()(Before), Expected)


def test_small_and_single_axis_means_are_left_alone():
    @I.ir_module
    class Graph:
        @R.function
        def main(x: R.Tensor((1, 7, 7, 8), "float32"), y: R.Tensor((1, 4096), "float32")):
            with R.dataflow():
                a = R.mean(x, axis=[1, 2], keepdims=True)   # 49 elements: one pass is exact enough
                b = R.mean(y, axis=[1], keepdims=False)     # one axis: nothing to split
                gv = (a, b)
                R.output(gv)
            return gv

    tvm.ir.assert_structural_equal(SplitLargeMeans()(Graph), Graph)


class _PooledConv(nn.Module):
    """A conv whose outputs sit near 100, averaged over H x W (global average pooling)."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(3, c, 1)
        with torch.no_grad():
            self.conv.bias.fill_(100.0)

    def forward(self, x):
        return self.conv(x).mean((2, 3))


def test_global_average_pooling_of_a_large_map_matches_float64():
    torch.manual_seed(0)
    model = _PooledConv().eval()
    x = np.random.default_rng(1).random((2, 3, 128, 128)).astype(np.float32)
    with torch.no_grad():
        exact = model.double()(torch.from_numpy(x).double()).numpy()
        model.float()
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(x[:1]))
    y = aiq_tvm.build(mod, params=params, plan="fp32", batch_size=2).run(x, 2)
    # One float32 accumulator over the 16384 values per channel was 3.6e-6 off; split, 3.0e-7.
    assert np.abs(y - exact).max() / np.abs(exact).max() < 1e-6
