"""Hardswish after a conv/dense is fused into the layer kernel's epilogue (as SiLU is): no
add / clip / multiply / divide kernel is left for TVM, FP32 / INT8 builds match torch, and a
look-alike with other constants is not taken for a hardswish."""

import numpy as np
import pytest
import torch
from fused_act_cases import act_cnn, build_fp32_int8, glue_kinds, min_cosine
from torch import nn

import aiq_tvm
from aiq_tvm.quant import apply_act, parse_act


class _NotHardswish(nn.Module):
    """x * clip(x + 2, 0, 6) / 6: the hardswish's shape, other constants."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y * torch.clamp(y + 2.0, 0.0, 6.0) / 6.0


@pytest.fixture(scope="module")
def built():
    return build_fp32_int8(act_cnn(nn.Hardswish))


@pytest.mark.parametrize("plan", ["fp32", "int8"])
def test_hardswish_is_inside_the_layers(built, plan):
    res, _ = built[1][plan]
    assert len(res.cost.searchable) == 5
    assert not glue_kinds(res) & {"relax.clip", "relax.multiply", "relax.divide"}


def test_fp32_matches_torch(built):
    ref, out = built
    assert np.abs(out["fp32"][1] - ref).max() / np.abs(ref).max() < 1e-5


def test_int8_logits_close_to_torch(built):
    ref, out = built
    y = out["int8"][1]
    assert min_cosine(y, ref) > 0.999


def test_other_constants_stay_glue():
    model = _NotHardswish().eval()
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(x))
    res = aiq_tvm.build(mod, params=params, plan="fp32")
    assert "relax.divide" in glue_kinds(res)
    ref = model(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(res.run(x, 2), ref, rtol=1e-5, atol=1e-5)


def test_hardswish_activation_spec():
    assert parse_act("hardswish")[0] == "hardswish"
    y = np.array([-4.0, -3.0, -1.5, 0.0, 1.0, 3.0, 50.0], np.float32)
    ref = torch.nn.functional.hardswish(torch.from_numpy(y)).numpy()
    np.testing.assert_allclose(apply_act(y, "hardswish"), ref, rtol=2e-7, atol=0)
    with pytest.raises(ValueError, match="valid: none, relu, relu6, silu, hardswish"):
        parse_act("hard_swish")


def test_onnx_hardswish_is_inside_the_layers(tmp_path):
    """TVM imports ONNX's HardSwish as ``x * (clip(x + 3, 0, 6) / 6)``: the same activation,
    fused the same (it stayed a kernel of its own per layer: MobileNetV3-Large from ONNX ran
    1.12x slower than from torch)."""
    import warnings

    model = act_cnn(nn.Hardswish)
    x = np.random.default_rng(0).standard_normal((8, 3, 16, 16)).astype(np.float32)
    path = str(tmp_path / "hs.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(x),), path, dynamo=False, opset_version=17,
                          input_names=["x"], dynamic_axes={"x": {0: "n"}})
    mod, params = aiq_tvm.from_onnx(path)
    assert "R.divide" in mod["main"].script()  # the ONNX form, before fusion
    ref = model(torch.from_numpy(x)).detach().numpy()
    for plan in ("fp32", "int8"):
        res = aiq_tvm.build(mod, params=params, plan=plan, calib_data=x, batch_size=8)
        assert len(res.cost.searchable) == 5
        assert not glue_kinds(res) & {"relax.clip", "relax.multiply", "relax.divide"}
        y = res.run(x, 8)
        assert min_cosine(y, ref) > (0.99999 if plan == "fp32" else 0.999)


def test_a_constant_bias_does_not_hide_the_hardswish():
    """ONNX files can give a conv's bias as a constant (an exporter shares identical
    initializers, which the import then folds): its add is not the hardswish's x + 3. It was
    taken for one with the wrong constant, and the activation stayed a kernel of its own."""
    import tvm
    from tvm import relax
    from tvm.script import relax as R

    from aiq_tvm.passes import AnnotatePrecision, layer_table
    from aiq_tvm.passes._layers import parse_layer

    bias = np.linspace(-1, 1, 8).astype(np.float32).reshape(1, 8, 1, 1)

    @R.function
    def main(x: R.Tensor((1, 3, 8, 8), "float32"), w: R.Tensor((8, 3, 3, 3), "float32")):
        with R.dataflow():
            y = R.nn.conv2d(x, w, padding=[1, 1, 1, 1])
            b = R.add(y, R.const(bias))
            s = R.add(b, R.const(3.0, "float32"))
            c = R.clip(s, 0, 6)
            g = R.divide(c, R.const(6.0, "float32"))
            gv = R.multiply(b, g)
            R.output(gv)
        return gv

    mod = tvm.IRModule({"main": main.with_attr("global_symbol", "main")})
    mod = relax.transform.BindParams("main", {"w": np.ones((8, 3, 3, 3), np.float32)})(mod)
    annotated = AnnotatePrecision("fp32")(mod)
    (entry,) = layer_table(annotated)
    assert parse_layer(annotated[entry.gv]).activation == ("hardswish",)
