"""A classifier reading a flattened conv output: the flatten reads the NHWC map in place.

The dense layer's weight columns are reordered (h, w, c) so no NHWC -> NCHW transpose is left
(passes/_flatten.py), in both lowerings of a layer, and an 8-bit classifier's producer writes
its uint8 input straight through the flatten (a reshape moves no value)."""

import numpy as np
import pytest
import torch
import tvm
from torch import nn
from tvm import relax

import aiq_tvm
from aiq_tvm.passes import (
    AnnotatePrecision,
    CancelTransposes,
    QuantizeAnnotated,
    SelectPrecisionAtRuntime,
    annotate_precision,
    quantize_annotated,
    select_vector,
)
from aiq_tvm.passes._flatten import flatten_order
from aiq_tvm.pipeline import bind_params, fold_constants
from relax_cases import compile_run


def test_flatten_order_maps_each_hwc_position_to_torchs_chw_index():
    # c = 2, h = 1, w = 2: (h, w, c) positions (0,0,0) (0,0,1) (0,1,0) (0,1,1)
    np.testing.assert_array_equal(flatten_order(2, 1, 2), [0, 2, 1, 3])
    order = flatten_order(3, 4, 5)
    x = np.arange(60).reshape(3, 4, 5)
    np.testing.assert_array_equal(x.transpose(1, 2, 0).reshape(-1), x.reshape(-1)[order])


def _head(between: str) -> nn.Module:
    """conv -> ReLU -> [pool] -> flatten -> linear."""
    pools = {"none": nn.Identity(), "max": nn.MaxPool2d(2), "avg": nn.AvgPool2d(2),
             "adaptive": nn.AdaptiveAvgPool2d((3, 2))}
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 24, 3, padding=1), nn.ReLU(), pools[between],
                         nn.Flatten(), nn.Linear(24 * {"none": 36, "adaptive": 6}.get(
                             between, 9), 5)).eval()


def _lowerings(model: nn.Module, plan: str, target):
    """(lower() with the current passes, input batch, torch's output)."""
    x = torch.rand(4, 3, 6, 6)
    mod, params = aiq_tvm.from_torch(model, x)
    cal = None if plan == "fp32" else aiq_tvm.build(
        mod, params=params, plan=plan, calib_data=x.numpy(), batch_size=4).calibration
    annotated = AnnotatePrecision(plan)(aiq_tvm.specialize_batch(mod, 4))

    def lower():
        passes = [*bind_params(params), *fold_constants(),
                  QuantizeAnnotated(cal, target=target), CancelTransposes()]
        return tvm.transform.Sequential(passes)(annotated)

    with torch.no_grad():
        return lower, x.numpy(), model(x).numpy()


def _ops(mod, name: str) -> list[relax.Call]:
    out = []

    def visit(e):
        if isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op) and e.op.name == name:
            out.append(e)

    relax.analysis.post_order_visit(mod["main"].body, visit)
    return out


def _to_nchw(mod) -> list[relax.Call]:
    return [c for c in _ops(mod, "relax.permute_dims")
            if [int(a) for a in c.attrs.axes] == [0, 3, 1, 2]]


@pytest.mark.parametrize("between", ["none", "max", "avg", "adaptive"])
@pytest.mark.parametrize("plan", ["fp32", "int8"])
def test_the_flatten_reads_the_conv_output_in_place(target, between, plan, monkeypatch):
    """No NHWC -> NCHW transpose is left; against the same lowering with the transpose (the
    rewrite off): FP32 within float rounding, int8 bit for bit (integer sums)."""
    lower, x, ref = _lowerings(_head(between), plan, target)
    with target:
        fused = lower()
        monkeypatch.setattr(quantize_annotated, "channels_last_flatten", lambda *a: None)
        plain = lower()
    assert not _to_nchw(fused) and len(_to_nchw(plain)) == 1
    ya, yb = compile_run(fused, target, x).numpy(), compile_run(plain, target, x).numpy()
    if plan == "fp32":
        np.testing.assert_allclose(ya, yb, rtol=1e-5, atol=1e-5 * np.abs(yb).max())
        np.testing.assert_allclose(ya, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    else:
        np.testing.assert_array_equal(ya, yb)


def test_an_int8_classifier_reads_the_requantized_uint8_through_the_flatten(target,
                                                                           monkeypatch):
    """The conv writes the classifier's uint8 input (no quantize kernel for it), bit for bit
    with the conv writing float32 and a separate quantize (the reshape not looked through)."""
    lower, x, _ = _lowerings(_head("max"), "int8", target)
    with target:
        fused = lower()
        monkeypatch.setattr(annotate_precision, "_ORDER_PRESERVING", ("relax.nn.max_pool2d",))
        plain = lower()
    [reshape] = _ops(fused, "relax.reshape")
    assert str(reshape.args[0].ty.dtype) == "uint8"
    quantizes = [gv.name_hint for gv, _ in fused.functions_items()
                 if gv.name_hint.endswith("_quantize")]
    assert not any(q.startswith("4") for q in quantizes)  # the classifier is "4"
    assert any(gv.name_hint.startswith("4") and gv.name_hint.endswith("_quantize")
               for gv, _ in plain.functions_items())
    np.testing.assert_array_equal(compile_run(fused, target, x).numpy(),
                                  compile_run(plain, target, x).numpy())


def test_a_flattened_model_input_keeps_its_reshape(target):
    """An MLP on images: nothing before the flatten runs NHWC, so no transpose is added."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 5)).eval()
    lower, x, ref = _lowerings(model, "fp32", target)
    with target:
        mod = lower()
    assert not _ops(mod, "relax.permute_dims")
    np.testing.assert_allclose(compile_run(mod, target, x).numpy(), ref, rtol=1e-5, atol=1e-6)


def test_a_switched_classifier_reads_the_conv_output_in_place(target, monkeypatch):
    """SelectPrecisionAtRuntime with the conv on one candidate (no switch) and the classifier
    switched: no transpose, and each candidate computes what it computes with the transpose
    (the rewrite off). A switched conv's output comes out of an R.If, which CancelTransposes
    does not look into, so such a classifier keeps its transpose."""
    from aiq_tvm.passes import select_precision_at_runtime

    model = _head("avg")
    x = torch.rand(4, 3, 6, 6)
    mod, params = aiq_tvm.from_torch(model, x)
    cal = aiq_tvm.build(mod, params=params, plan="int8", calib_data=x.numpy(),
                        batch_size=4).calibration
    annotated = AnnotatePrecision("int8")(aiq_tvm.specialize_batch(mod, 4))
    choices = {"0": ["int8"], "4": ["fp32", "int8"]}

    def lower():
        with target:
            return tvm.transform.Sequential([
                *bind_params(params), *fold_constants(),
                SelectPrecisionAtRuntime(choices, cal, target=target), CancelTransposes(),
            ])(annotated)

    fused = lower()
    monkeypatch.setattr(select_precision_at_runtime, "channels_last_flatten", lambda *a: None)
    plain = lower()
    assert not _to_nchw(fused) and len(_to_nchw(plain)) == 1
    layers = list(fused.attrs["aiq.select_layers"])
    for prec in choices["4"]:
        sel = select_vector(layers, choices, {"0": "int8", "4": prec})
        ya = compile_run(fused, target, x.numpy(), sel).numpy()
        yb = compile_run(plain, target, x.numpy(), sel).numpy()
        if prec == "fp32":
            np.testing.assert_allclose(ya, yb, rtol=1e-5, atol=1e-5 * np.abs(yb).max())
        else:
            np.testing.assert_array_equal(ya, yb)
