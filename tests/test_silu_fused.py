"""SiLU after a conv/dense is fused into the layer kernel's epilogue (as ReLU / ReLU6 are):
no sigmoid / multiply kernel is left for TVM, and FP32 / INT8 builds match torch."""

import numpy as np
import pytest
from fused_act_cases import act_cnn, build_fp32_int8, glue_kinds, min_cosine
from torch import nn

from aiq_tvm.quant import apply_act, parse_act


@pytest.fixture(scope="module")
def built():
    return build_fp32_int8(act_cnn(nn.SiLU))


@pytest.mark.parametrize("plan", ["fp32", "int8"])
def test_silu_is_inside_the_layers(built, plan):
    _, out = built
    res, _ = out[plan]
    assert len(res.cost.searchable) == 5
    kinds = glue_kinds(res)
    assert "relax.sigmoid" not in kinds and "relax.multiply" not in kinds


def test_fp32_matches_torch(built):
    ref, out = built
    y = out["fp32"][1]
    assert np.abs(y - ref).max() / np.abs(ref).max() < 1e-5


def test_int8_logits_close_to_torch(built):
    ref, out = built
    y = out["int8"][1]
    assert min_cosine(y, ref) > 0.999


def test_silu_activation_spec():
    assert parse_act("silu")[0] == "silu"
    y = np.array([-100.0, -1.0, 0.0, 2.0, 100.0], np.float32)
    np.testing.assert_allclose(apply_act(y, "silu"), y / (1 + np.exp(-y.astype(np.float64))),
                               rtol=1e-6, atol=1e-30)
    with pytest.raises(ValueError, match="valid: none, relu, relu6, silu, hardswish"):
        parse_act("swish")
