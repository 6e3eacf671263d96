"""QuantizeAnnotated: structure of the lowered main (Before/Expected) and numerics vs numpy."""

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R
from tvm.script import tirx as T

from aiq_tvm import Calibration, quant
from aiq_tvm.passes import AnnotatePrecision, CancelTransposes, QuantizeAnnotated
from aiq_tvm.schemes import get_precision
from aiq_tvm.targets import capabilities
from relax_cases import (
    FC_RANGE,
    DenseBiasRelu,
    StridedConv,
    bind,
    compile_run,
    fc_kernel,
    fc_quantize_kernel,
    with_kernels,
)


@pytest.mark.parametrize("precision", ["fp32", "int8", "int4", "w8", "w4"])
def test_quantize_annotated_matches_numpy_reference(precision, target):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 9, 9)).astype(np.float32)
    w = (rng.standard_normal((12, 5, 3, 3)) * 0.2).astype(np.float32)
    b = rng.standard_normal(12).astype(np.float32)
    cal = Calibration({"c": (float(x.min()), float(x.max()))}, method="minmax")
    mod = AnnotatePrecision(precision)(StridedConv)
    mod = bind(mod, {"c_weight": w, "c_bias": b.reshape(1, 12, 1, 1)})
    mod = relax.transform.FoldConstant()(mod)
    with target:
        mod = QuantizeAnnotated(cal)(mod)
    mod = CancelTransposes()(mod)
    y = compile_run(mod, target, x).numpy().transpose(0, 2, 3, 1)  # -> NHWC
    qp = cal.qparams("c")
    int8_qmax = capabilities(target).int8_weight_qmax  # 8-bit codes follow the target
    ref = quant.ref_conv2d(x.transpose(0, 2, 3, 1), w, b, precision, stride=(2, 2),
                           padding=(1, 1, 1, 1), act_qparams=qp, int8_qmax=int8_qmax)
    np.testing.assert_allclose(y, ref.y, rtol=1e-5, atol=1e-5 * np.abs(ref.y).max())
    if ref.acc is not None:
        # The integer part is exact: undo the float epilogue and compare to the int64 sum.
        q, s_w = get_precision(precision).quantize_weight(w, int8_qmax)
        comb = quant.int_comb_scale(qp, s_w).astype(np.float64)
        implied = (y.astype(np.float64) - b) / comb
        np.testing.assert_array_equal(np.rint(implied).astype(np.int64), ref.acc)
        assert np.abs(implied - np.rint(implied)).max() < 0.05


def test_quantize_needs_bound_weights_and_calibration(target):
    mod = AnnotatePrecision("int8")(StridedConv)
    with target, pytest.raises(ValueError, match="BindParams"):
        QuantizeAnnotated(Calibration({"c": (0.0, 1.0)}))(mod)
    bound = bind(mod, {"c_weight": np.ones((12, 5, 3, 3), np.float32),
                        "c_bias": np.zeros((1, 12, 1, 1), np.float32)})
    bound = relax.transform.FoldConstant()(bound)
    with target, pytest.raises(ValueError, match="calibrate first"):
        QuantizeAnnotated(None)(bound)


def test_lowers_a_layer_to_its_quantize_and_kernel_calls(target):
    """int8 dense: a uint8 quantize kernel on the input, then the fused kernel with its
    constants (packed weight, scales, bias, zero-point correction) in the library's order."""
    q = fc_kernel("int8", target)
    c = [R.const(v) for v in q.consts]  # noqa: F841 - read by the TVMScript below

    @I.ir_module(check_well_formed=False)  # the stubs get the real kernels below
    class Expected:
        I.module_attrs({"aiq.fallbacks": {}, "aiq.unsupported": {}})

        @T.prim_func(private=True)
        def fc_quantize():
            T.evaluate(0)  # stub: replaced by the library's kernel below

        @T.prim_func(private=True)
        def fc_int8():
            T.evaluate(0)

        @R.function
        def main(x: R.Tensor((1, 16), "float32")) -> R.Tensor((1, 8), "float32"):
            cls = Expected
            with R.dataflow():
                lv = R.call_tir(cls.fc_quantize, (x,), out_ty=R.Tensor((1, 16), "uint8"))
                lv1 = R.call_tir(cls.fc_int8, (lv, c[0], c[1], c[2], c[3]),
                                 out_ty=R.Tensor((1, 8), "float32"))
                gv: R.Tensor((1, 8), "float32") = lv1
                R.output(gv)
            return gv

    with_kernels(Expected, {"fc_quantize": fc_quantize_kernel(target), "fc_int8": q.prim_func})
    annotated = relax.transform.FoldConstant()(AnnotatePrecision({"fc": "int8"})(DenseBiasRelu))
    cal = Calibration({"fc": FC_RANGE}, method="minmax")
    after = QuantizeAnnotated(cal, target=target)(annotated)
    tvm.ir.assert_structural_equal(after, Expected)


def _lowered_resnet20(target, requant_residuals: bool, shortcut_ranges: bool = True):
    """Randomized ResNet-20 at int8, lowered by QuantizeAnnotated; and a batch to run.
    ``shortcut_ranges=False`` drops the downsample shortcuts' ranges from the calibration (as
    in calibration files written before they were measured)."""
    import dataclasses

    import torch

    import aiq_tvm
    from aiq_tvm.models import resnet20
    from aiq_tvm.pipeline import bind_params, fold_constants
    from conftest import randomize_bn

    torch.manual_seed(0)
    model = randomize_bn(resnet20())
    x = torch.randn(4, 3, 32, 32)
    mod, params = aiq_tvm.from_torch(model, x)
    cal = aiq_tvm.build(mod, params=params, plan="int8", calib_data=x.numpy(),
                        batch_size=4).calibration
    if not shortcut_ranges:
        cal = dataclasses.replace(cal, residual_ranges={})
    passes = [AnnotatePrecision("int8"), *bind_params(params), *fold_constants(),
              QuantizeAnnotated(cal, target=target, requant_residuals=requant_residuals),
              CancelTransposes()]
    return tvm.transform.Sequential(passes)(aiq_tvm.specialize_batch(mod, 4)), x.numpy()


def _residual_dtypes(mod) -> dict:
    """Kernel name -> dtype of its residual operand, for the layers with a fused shortcut."""
    out = {}

    def visit(e):
        if isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op) \
                and e.op.name == "relax.call_tir" and e.args[0].name_hint.endswith("conv2_int8"):
            out[e.args[0].name_hint] = str(e.args[1].fields[-1].ty.dtype)

    relax.analysis.post_order_visit(mod["main"].body, visit)
    return out


def test_block_outputs_reach_the_residual_epilogues_as_uint8(target):
    """ResNet block outputs feed the next conv1 (data) and the next conv2's shortcut: with
    requant_residuals both read one uint8 tensor; the 1x1 downsample layers, whose outputs
    only shortcuts read, write uint8 on the shortcut's calibrated range; without
    requant_residuals every shortcut stays float32."""
    fused, x = _lowered_resnet20(target, requant_residuals=True)
    plain, _ = _lowered_resnet20(target, requant_residuals=False)
    dt, dt_plain = _residual_dtypes(fused), _residual_dtypes(plain)
    assert len(dt) == 9  # every block adds a shortcut
    assert set(dt.values()) == {"uint8"}
    assert set(dt_plain.values()) == {"float32"}
    quantize_kernels = [gv.name_hint for gv, _ in fused.functions_items()
                        if gv.name_hint.endswith("_quantize")]
    assert len(quantize_kernels) < len([gv for gv, _ in plain.functions_items()
                                        if gv.name_hint.endswith("_quantize")])
    ya, yb = compile_run(fused, target, x).numpy(), compile_run(plain, target, x).numpy()
    cos = (ya * yb).sum(1) / np.linalg.norm(ya, axis=1) / np.linalg.norm(yb, axis=1)
    assert cos.min() > 0.999


def test_downsample_shortcuts_stay_float32_without_their_ranges(target):
    """A calibration without shortcut ranges (files saved before they were measured) keeps
    the downsample layers' outputs float32; identity shortcuts, which the next block's conv1
    reads as data, stay uint8 on that layer's range."""
    lowered, _ = _lowered_resnet20(target, requant_residuals=True, shortcut_ranges=False)
    dt = _residual_dtypes(lowered)
    identity = [f"layer{s}_{b}_conv2_int8" for s in (1, 2, 3) for b in (1, 2)]
    assert all(dt[k] == "uint8" for k in identity)
    assert dt["layer1_0_conv2_int8"] == "uint8"  # the stem also feeds layer1.0.conv1
    assert dt["layer2_0_conv2_int8"] == dt["layer3_0_conv2_int8"] == "float32"


def _stem_pool_block(shortcut: bool):
    """A stem conv + ReLU, ResNet's 3 x 3 / 2 max-pool, then a block whose conv1 reads the
    pooled tensor as data and whose conv2 adds it as the shortcut (``shortcut``)."""
    import torch
    from torch import nn

    from conftest import randomize_bn

    class StemPool(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(16), nn.ReLU())
            self.pool = nn.MaxPool2d(3, 2, 1)
            self.conv1 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
            self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            p = self.pool(self.stem(x))
            y = self.conv2(self.conv1(p))
            y = torch.relu(y + p if shortcut else y)
            return self.fc(y.mean((2, 3)))

    torch.manual_seed(0)
    return randomize_bn(StemPool()).eval()


def _stem_pool_lowerings(target, shortcut: bool):
    """(annotated module, a function lowering it with QuantizeAnnotated, the input batch):
    one calibration shared by every lowering, so two lowerings differ only in the pass."""
    import torch

    import aiq_tvm
    from aiq_tvm.pipeline import bind_params, fold_constants

    x = torch.rand(4, 3, 16, 16)
    mod, params = aiq_tvm.from_torch(_stem_pool_block(shortcut), x)
    cal = aiq_tvm.build(mod, params=params, plan="int8", calib_data=x.numpy(),
                        batch_size=4).calibration
    annotated = AnnotatePrecision("int8")(aiq_tvm.specialize_batch(mod, 4))

    def lower():
        passes = [*bind_params(params), *fold_constants(),
                  QuantizeAnnotated(cal, target=target), CancelTransposes()]
        return tvm.transform.Sequential(passes)(annotated)

    return annotated, lower, x.numpy()


def _pool_input_dtypes(mod) -> list[str]:
    out = []

    def visit(e):
        if isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op) \
                and e.op.name == "relax.nn.max_pool2d":
            out.append(str(e.args[0].ty.dtype))

    relax.analysis.post_order_visit(mod["main"].body, visit)
    return out


@pytest.mark.parametrize("shortcut", [False, True])
def test_a_max_pool_between_layers_runs_on_the_requantized_uint8(target, shortcut, monkeypatch):
    """max(q(a), q(b)) = q(max(a, b)) for a non-decreasing quantizer: the stem requantizes
    for the layers behind the pool (data and shortcut), the pool runs on bytes and no quantize
    kernel is left. Against the same build pooling float32 (the pool not looked through):
    bit for bit without the shortcut; with it, the shortcut is now added from uint8 (as for
    any block output) instead of float32."""
    from aiq_tvm.passes import annotate_precision, layer_readers

    annotated, lower, x = _stem_pool_lowerings(target, shortcut)
    readers = layer_readers(annotated)
    fused = lower()
    monkeypatch.setattr(annotate_precision, "_ORDER_PRESERVING", ())
    plain = lower()
    stem = next(n for n in readers if n.startswith("stem"))
    assert readers[stem].data == ("conv1.0",)
    assert readers[stem].residual == (("conv2",) if shortcut else ())
    assert _pool_input_dtypes(fused) == ["uint8"] and _pool_input_dtypes(plain) == ["float32"]
    quantizes = [gv.name_hint for gv, _ in fused.functions_items()
                 if gv.name_hint.endswith("_quantize")]
    assert not any(q.startswith("conv1") for q in quantizes)
    ya, yb = compile_run(fused, target, x).numpy(), compile_run(plain, target, x).numpy()
    if shortcut:
        cos = (ya * yb).sum(1) / np.linalg.norm(ya, axis=1) / np.linalg.norm(yb, axis=1)
        assert cos.min() > 0.999
    else:
        np.testing.assert_array_equal(ya, yb)
