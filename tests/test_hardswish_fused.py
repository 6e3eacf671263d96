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
