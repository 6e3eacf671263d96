"""Hardswish after a conv/dense is fused into the layer kernel's epilogue (as SiLU is): no
add / clip / multiply / divide kernel is left for TVM, FP32 / INT8 builds match torch, and a
look-alike with other constants is not taken for a hardswish."""

import numpy as np
import pytest
import torch
from torch import nn

import aiq_tvm
from aiq_tvm.quant import apply_act, parse_act


def _hardswish_cnn() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.Hardswish(),
        nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.BatchNorm2d(32), nn.Hardswish(),
        nn.Conv2d(32, 48, 1), nn.Hardswish(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(48, 24), nn.Hardswish(),
        nn.Linear(24, 10))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics: the fold is exercised
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


class _NotHardswish(nn.Module):
    """x * clip(x + 2, 0, 6) / 6: the hardswish's shape, other constants."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y * torch.clamp(y + 2.0, 0.0, 6.0) / 6.0


def _glue_kinds(res) -> set[str]:
    from tvm import relax

    kinds = set()
    for val in relax.analysis.get_var2val(res.annotated["main"]).values():
        op = getattr(val, "op", None)
        if isinstance(val, relax.Call) and hasattr(op, "name"):
            kinds.add(op.name)
    return kinds


@pytest.fixture(scope="module")
def built():
    model = _hardswish_cnn()
    x = np.random.default_rng(0).standard_normal((16, 3, 16, 16)).astype(np.float32)
    ref = model(torch.from_numpy(x)).detach().numpy()
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(x[:2]))
    out = {}
    for plan in ("fp32", "int8"):
        res = aiq_tvm.build(mod, params=params, plan=plan, calib_data=x, batch_size=8)
        out[plan] = (res, res.run(x, 8))
    return ref, out


@pytest.mark.parametrize("plan", ["fp32", "int8"])
def test_hardswish_is_inside_the_layers(built, plan):
    res, _ = built[1][plan]
    assert len(res.cost.searchable) == 5
    assert not _glue_kinds(res) & {"relax.clip", "relax.multiply", "relax.divide"}


def test_fp32_matches_torch(built):
    ref, out = built
    assert np.abs(out["fp32"][1] - ref).max() / np.abs(ref).max() < 1e-5


def test_int8_logits_close_to_torch(built):
    ref, out = built
    y = out["int8"][1]
    cos = (y * ref).sum(1) / (np.linalg.norm(y, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() > 0.999


def test_other_constants_stay_glue():
    model = _NotHardswish().eval()
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(x))
    res = aiq_tvm.build(mod, params=params, plan="fp32")
    assert "relax.divide" in _glue_kinds(res)
    ref = model(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(res.run(x, 2), ref, rtol=1e-5, atol=1e-5)


def test_hardswish_activation_spec():
    assert parse_act("hardswish")[0] == "hardswish"
    y = np.array([-4.0, -3.0, -1.5, 0.0, 1.0, 3.0, 50.0], np.float32)
    ref = torch.nn.functional.hardswish(torch.from_numpy(y)).numpy()
    np.testing.assert_allclose(apply_act(y, "hardswish"), ref, rtol=2e-7, atol=0)
    with pytest.raises(ValueError, match="valid: none, relu, relu6, silu, hardswish"):
        parse_act("hard_swish")
