"""ExposeLayerInputs: main also returns every layer's input (for calibration)."""

import re

import numpy as np
import tvm
from tvm import relax

from aiq_tvm.passes import AnnotatePrecision, ExposeLayerInputs
from relax_cases import ConvBiasRelu, bind, compile_run


def test_expose_layer_inputs_returns_each_layer_input(target):
    mod = ExposeLayerInputs()(AnnotatePrecision("fp32")(ConvBiasRelu))
    assert [[str(n) for n in g] for g in mod.attrs["aiq.exposed_layers"]] == [["conv1"]]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal((1, 8, 1, 1)).astype(np.float32)
    bound = relax.transform.FoldConstant()(bind(mod, {"conv1_weight": w, "conv1_bias": b}))
    out = compile_run(bound, target, x)
    np.testing.assert_array_equal(out[1].numpy(), x)
    assert out[0].numpy().shape == (1, 8, 8, 8)


def _downsample_block():
    """``conv1`` and the 1x1 ``down`` read x; ``conv2`` reads relu(conv1(x)) and adds
    down(x) as its fused residual, which no layer reads as data."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(4, 8, 3, padding=1)
            self.down = nn.Conv2d(4, 8, 1)
            self.conv2 = nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x):
            return torch.relu(self.conv2(torch.relu(self.conv1(x))) + self.down(x))

    torch.manual_seed(0)
    return Block().eval()


def test_shortcuts_no_layer_reads_as_data_are_exposed_after_the_inputs(target):
    import torch

    import aiq_tvm
    from aiq_tvm.pipeline import bind_params

    block = _downsample_block()
    x = torch.randn(2, 4, 8, 8)
    mod, params = aiq_tvm.from_torch(block, x)
    annotated = AnnotatePrecision("fp32")(mod)
    plain = ExposeLayerInputs()(annotated)
    assert [[str(n) for n in g] for g in plain.attrs["aiq.exposed_residuals"]] == []
    exposed = ExposeLayerInputs(residuals=True)(annotated)
    groups = [[str(n) for n in g] for g in exposed.attrs["aiq.exposed_layers"]]
    assert groups == [["conv1", "down"], ["conv2"]]
    assert [[str(n) for n in g] for g in exposed.attrs["aiq.exposed_residuals"]] == [["conv2"]]
    bound = tvm.transform.Sequential(bind_params(params))(exposed)
    out = compile_run(bound, target, x.numpy())
    assert len(out) == 4  # output, two inputs, one shortcut
    with torch.no_grad():
        np.testing.assert_allclose(out[3].numpy(), block.down(x).numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out[0].numpy(), block(x).numpy(), rtol=1e-5, atol=1e-5)


def test_channels_last_exposes_nhwc_without_a_transpose_kernel(target):
    # Calibration runs read the layer inputs channels last: after lowering, the exposing
    # permute cancels against the kernel's own, so no transpose is left to run.
    import torch

    import aiq_tvm
    from aiq_tvm import pipeline as P
    from aiq_tvm._ir import specialize_batch
    from aiq_tvm.compiler import compile_module

    block = _downsample_block()
    x = torch.randn(2, 4, 8, 8)
    mod, params = aiq_tvm.from_torch(block, x)
    annotated = specialize_batch(AnnotatePrecision("fp32")(mod), 2)
    nchw = ExposeLayerInputs(residuals=True)(annotated)
    nhwc = ExposeLayerInputs(residuals=True, channels_last=True)(annotated)
    assert not bool(nchw.attrs["aiq.exposed_channels_last"])
    assert bool(nhwc.attrs["aiq.exposed_channels_last"])
    outs = {}
    for name, m in (("nchw", nchw), ("nhwc", nhwc)):
        exe = compile_module(m, target, P.quantize_passes(target, "fp32", None, params))
        vm = relax.VirtualMachine(exe, tvm.cpu())
        calls = []

        def record(func, sym, before_run, *rest, calls=calls):
            if before_run:
                calls.append(str(sym))
            return 0

        vm.set_instrument(record)
        outs[name] = [t.numpy() for t in vm["main"](tvm.runtime.tensor(x.numpy()))]
        # TVM names its transpose kernels transpose, transpose1, ...; layer kernels may
        # carry the word too (conv1_untransposed_fp32 reads the model input as it is).
        outs[name + "_transposes"] = sum(bool(re.fullmatch(r"transpose\d*", c)) for c in calls)
    for a, b in zip(outs["nchw"][1:], outs["nhwc"][1:], strict=True):
        np.testing.assert_array_equal(b, a.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(outs["nhwc"][0], outs["nchw"][0])
    assert outs["nhwc_transposes"] == 2  # the model's input and output: they are NCHW
    assert outs["nchw_transposes"] == 4  # and conv2's input and the shortcut
