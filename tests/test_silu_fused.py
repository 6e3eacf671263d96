"""SiLU after a conv/dense is fused into the layer kernel's epilogue (as ReLU / ReLU6 are):
no sigmoid / multiply kernel is left for TVM, and FP32 / INT8 builds match torch."""

import numpy as np
import pytest
import torch
from torch import nn

import aiq_tvm
from aiq_tvm.quant import apply_act, parse_act


def _silu_cnn() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.SiLU(),
        nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.BatchNorm2d(32), nn.SiLU(),
        nn.Conv2d(32, 48, 1), nn.SiLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(48, 24), nn.SiLU(), nn.Linear(24, 10))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics: the fold is exercised
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _glue_kinds(res) -> set[str]:
    """Operator kinds left to TVM's own kernels (outside the AIQ layers)."""
    from tvm import relax

    kinds = set()
    for val in relax.analysis.get_var2val(res.annotated["main"]).values():
        op = getattr(val, "op", None)
        if isinstance(val, relax.Call) and hasattr(op, "name"):
            kinds.add(op.name)
    return kinds


@pytest.fixture(scope="module")
def built():
    model = _silu_cnn()
    x = np.random.default_rng(0).standard_normal((16, 3, 16, 16)).astype(np.float32)
    ref = model(torch.from_numpy(x)).detach().numpy()
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(x[:2]))
    out = {}
    for plan in ("fp32", "int8"):
        res = aiq_tvm.build(mod, params=params, plan=plan, calib_data=x, batch_size=8)
        out[plan] = (res, res.run(x, 8))
    return ref, out


@pytest.mark.parametrize("plan", ["fp32", "int8"])
def test_silu_is_inside_the_layers(built, plan):
    _, out = built
    res, _ = out[plan]
    assert len(res.cost.searchable) == 5
    kinds = _glue_kinds(res)
    assert "relax.sigmoid" not in kinds and "relax.multiply" not in kinds


def test_fp32_matches_torch(built):
    ref, out = built
    y = out["fp32"][1]
    assert np.abs(y - ref).max() / np.abs(ref).max() < 1e-5


def test_int8_logits_close_to_torch(built):
    ref, out = built
    y = out["int8"][1]
    cos = (y * ref).sum(1) / (np.linalg.norm(y, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() > 0.999


def test_silu_activation_spec():
    assert parse_act("silu")[0] == "silu"
    y = np.array([-100.0, -1.0, 0.0, 2.0, 100.0], np.float32)
    np.testing.assert_allclose(apply_act(y, "silu"), y / (1 + np.exp(-y.astype(np.float64))),
                               rtol=1e-6, atol=1e-30)
    with pytest.raises(ValueError, match="valid: none, relu, relu6, silu, hardswish"):
        parse_act("swish")
