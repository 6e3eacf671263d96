"""Byte counts, AI and roofline labels of the analytic cost model."""

import pytest

from aiq_tvm.cost import CostModel, LayerCost


class Peaks:
    peak_gflops_fp32 = 100.0
    peak_gops_int8 = 400.0
    bandwidth_gbs = 10.0


def conv(name="c", consumers=None):
    # 3x3 16->16 conv at 32x32, batch 1: 4,718,592 FLOPs.
    return LayerCost(name, "conv2d", 4718592, 16 * 16 * 9, 16 * 32 * 32, 16 * 32 * 32, 16,
                     consumers=consumers)


def test_bytes_per_precision():
    lc = conv()
    w, a = 2304, 16384
    assert lc.nbytes("fp32") == w * 4 + a * 4 + a * 4 + 16 * 4
    assert lc.nbytes("w8") == w * 1 + a * 4 + a * 4 + 16 * 8
    assert lc.nbytes("w4") == w * 0.5 + a * 4 + a * 4 + 16 * 8
    assert lc.nbytes("int8") == w * 1 + a * 1 + a * 4 + 16 * 12 + 8
    assert lc.nbytes("int4") == w * 0.5 + a * 1 + a * 4 + 16 * 12 + 8


def test_requantized_output_only_when_all_consumers_take_uint8():
    model = CostModel([conv("a", consumers=("b",)), conv("b")], requant_fusion=True)
    assert model.out_act_bytes("a", {"a": "fp32", "b": "int8"}) == 1.0
    assert model.out_act_bytes("a", {"a": "int8", "b": "w8"}) == 4.0
    off = CostModel([conv("a", consumers=("b",)), conv("b")], requant_fusion=False)
    assert off.out_act_bytes("a", {"a": "int8", "b": "int8"}) == 4.0


def _block(requant_residuals=True):
    """``a`` feeds ``b`` as data and ``r`` as its fused residual (a ResNet block output)."""
    a = LayerCost("a", "conv2d", 4718592, 2304, 16384, 16384, 16, consumers=("b",),
                  residual_consumers=("r",))
    r = LayerCost("r", "conv2d", 4718592, 2304, 16384, 16384, 16, residual_elems=16384,
                  residual_source="a")
    return CostModel([a, conv("b"), r], requant_residuals=requant_residuals)


def test_uint8_shortcut_when_the_data_consumers_take_uint8():
    model = _block()
    plan = {"a": "int8", "b": "int8", "r": "int8"}
    assert model.out_act_bytes("a", plan) == 1.0
    base = model["r"].nbytes("int8", model.out_act_bytes("r", plan), residual_bytes=4.0)
    assert model.layer_bytes("r", plan) == base - 3 * 16384  # 1-byte shortcut, not 4
    # b reads float32: a writes float32, and r adds a float32 shortcut.
    fp_b = {**plan, "b": "fp32"}
    assert model.out_act_bytes("a", fp_b) == 4.0
    assert model.layer_bytes("r", fp_b) == base
    off = _block(requant_residuals=False)
    assert off.out_act_bytes("a", plan) == 4.0 and off.layer_bytes("r", plan) == base


def test_shortcut_only_output_is_uint8_when_the_layers_adding_it_take_uint8():
    """A downsample conv ``d``: only ``r`` reads its output, as the fused residual."""
    d = LayerCost("d", "conv2d", 4718592, 2304, 16384, 16384, 16, residual_consumers=("r",))
    r = LayerCost("r", "conv2d", 4718592, 2304, 16384, 16384, 16, residual_elems=16384,
                  residual_source="d")
    model = CostModel([d, r])
    plan = {"d": "int8", "r": "int8"}
    assert model.out_act_bytes("d", plan) == 1.0
    assert model.layer_bytes("r", plan) == r.nbytes("int8", 4.0, residual_bytes=1.0)
    assert model.out_act_bytes("d", {**plan, "r": "fp32"}) == 4.0
    assert CostModel([d, r], requant_residuals=False).out_act_bytes("d", plan) == 4.0
    # Another op reads the output too (no readers recorded): float32.
    other = LayerCost("d", "conv2d", 4718592, 2304, 16384, 16384, 16)
    assert CostModel([other, r]).out_act_bytes("d", plan) == 4.0


def test_model_ai_and_unsupported_layers_stay_fp32():
    bad = LayerCost("g", "conv2d", 1000, 100, 100, 100, 4, supported=False, reason="grouped")
    model = CostModel([conv("a"), bad], requant_fusion=False)
    assert model.searchable == ["a"]
    full = model.full_assignment({"a": "int8", "g": "int8"})
    assert full == {"a": "int8", "g": "fp32"}
    total = model.total_flops() / (conv().nbytes("int8") + bad.nbytes("fp32"))
    assert model.ai({"a": "int8", "g": "int8"}) == pytest.approx(total)
    with pytest.raises(ValueError, match="unknown layers"):
        model.full_assignment({"zz": "int8"})


def test_roofline_bound_and_prediction():
    model = CostModel([conv("a")], requant_fusion=False)
    p = model.roofline("a", {"a": "fp32"}, Peaks)
    # AI ~34 FLOP/B > ridge 10 FLOP/B: compute bound at 100 GFLOP/s.
    assert p.bound == "compute"
    assert p.predicted_s == pytest.approx(4718592 / 100e9)
    small = CostModel([LayerCost("d", "dense", 1280, 640, 64, 10, 10)], requant_fusion=False)
    q = small.roofline("d", {"d": "int8"}, Peaks)
    assert q.bound == "memory"
    assert q.predicted_s == pytest.approx(q.nbytes / 10e9)


def test_duplicate_and_negative():
    with pytest.raises(ValueError, match="duplicate"):
        CostModel([conv("a"), conv("a")])
    with pytest.raises(ValueError, match="flops"):
        LayerCost("x", "conv2d", -1, 1, 1, 1, 1)
