"""The AIQ Relax passes: structure (Before/Expected TVMScript) and numerics (numpy references)."""

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from aiq_tvm import Calibration, quant
from aiq_tvm.passes import (
    AnnotatePrecision,
    CancelTransposes,
    ExposeLayerInputs,
    QuantizeAnnotated,
    layer_table,
)
from aiq_tvm.pipeline import lower_passes
from aiq_tvm.targets import resolve_target

TARGET, _ = resolve_target("llvm")


@I.ir_module
class ConvBiasRelu:
    @R.function
    def main(x: R.Tensor((1, 4, 8, 8), "float32"), conv1_weight: R.Tensor((8, 4, 3, 3), "float32"),
             conv1_bias: R.Tensor((1, 8, 1, 1), "float32")) -> R.Tensor((1, 8, 8, 8), "float32"):
        R.func_attr({"num_input": 1})
        with R.dataflow():
            lv = R.nn.conv2d(x, conv1_weight, padding=[1, 1, 1, 1])
            lv1 = R.add(lv, conv1_bias)
            gv = R.nn.relu(lv1)
            R.output(gv)
        return gv


def test_annotate_groups_layer_into_named_composite():
    @I.ir_module
    class Expected:
        I.module_attrs({"aiq.fallbacks": {}, "aiq.unsupported": {}})

        @R.function(private=True)
        def aiq_conv1(x: R.Tensor((1, 4, 8, 8), "float32"),
                      conv1_weight: R.Tensor((8, 4, 3, 3), "float32"),
                      conv1_bias: R.Tensor((1, 8, 1, 1), "float32")
                      ) -> R.Tensor((1, 8, 8, 8), "float32"):
            R.func_attr({"Composite": "aiq.conv2d_bias_act", "Primitive": True,
                         "aiq.layer": "conv1", "aiq.precision": "int8"})
            with R.dataflow():
                lv = R.nn.conv2d(x, conv1_weight, padding=[1, 1, 1, 1])
                lv1 = R.add(lv, conv1_bias)
                gv = R.nn.relu(lv1)
                R.output(gv)
            return gv

        @R.function
        def main(x: R.Tensor((1, 4, 8, 8), "float32"),
                 conv1_weight: R.Tensor((8, 4, 3, 3), "float32"),
                 conv1_bias: R.Tensor((1, 8, 1, 1), "float32")
                 ) -> R.Tensor((1, 8, 8, 8), "float32"):
            R.func_attr({"num_input": 1})
            cls = Expected
            with R.dataflow():
                gv = cls.aiq_conv1(x, conv1_weight, conv1_bias)
                R.output(gv)
            return gv

    after = AnnotatePrecision({"conv1": "int8"})(ConvBiasRelu)
    tvm.ir.assert_structural_equal(after, Expected)
    # Re-annotating only changes the precision.
    again = AnnotatePrecision("w4")(after)
    assert str(again["aiq_conv1"].attrs["aiq.precision"]) == "w4"
    assert len([gv for gv in again.get_global_vars()]) == 2


@I.ir_module
class Mixed:
    @R.function
    def main(x: R.Tensor((2, 4, 6, 6), "float32"), w_dw: R.Tensor((4, 1, 3, 3), "float32"),
             w_grp: R.Tensor((4, 2, 3, 3), "float32"), fc_weight: R.Tensor((5, 144), "float32"),
             fc_bias: R.Tensor((5,), "float32")) -> R.Tensor((2, 5), "float32"):
        R.func_attr({"num_input": 1})
        with R.dataflow():
            a = R.nn.conv2d(x, w_dw, padding=[1, 1, 1, 1], groups=4)
            b = R.clip(a, R.prim_value(0.0), R.prim_value(6.0))
            c = R.nn.conv2d(b, w_grp, padding=[1, 1, 1, 1], groups=2)
            d = R.reshape(c, R.shape([2, 144]))
            wt = R.permute_dims(fc_weight, axes=[1, 0])
            e = R.matmul(d, wt)
            gv = R.add(fc_bias, e)
            R.output(gv)
        return gv


def test_layer_kinds_names_and_unsupported_ops():
    after = AnnotatePrecision({"fc": "int4", "re:w_.*": "int8"})(Mixed)
    rows = {e.name: e for e in layer_table(after)}
    assert list(rows) == ["w_dw", "w_grp", "fc"]
    assert rows["w_dw"].op == "depthwise_conv2d" and rows["w_dw"].kind == "layer"
    assert rows["fc"].op == "dense" and rows["fc"].kind == "layer"
    assert rows["w_grp"].kind == "unsupported"
    assert "groups=2" in str(after.attrs["aiq.unsupported"]["w_grp"])
    # The plan asked int8 for the grouped conv: it stays fp32 and the fallback is recorded.
    assert str(after.attrs["aiq.fallbacks"]["w_grp"]) == "int8"
    comp = after[rows["fc"].gv]
    assert str(comp.attrs["Composite"]) == "aiq.dense_bias"
    assert str(comp.attrs["aiq.precision"]) == "int4"


def test_plan_naming_missing_layer_is_an_error():
    with pytest.raises(ValueError, match="conv9.*model's layers are: \\['conv1'\\]"):
        AnnotatePrecision({"conv9": "int8"})(ConvBiasRelu)


def test_cancel_transposes():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 8, 4, 4), "float32"), y: R.Tensor((1, 4, 4, 8), "float32")
                 ) -> R.Tensor((1, 8), "float32"):
            with R.dataflow():
                a = R.permute_dims(x, axes=[0, 2, 3, 1])
                b = R.permute_dims(a, axes=[0, 3, 1, 2])      # cancels with a
                c = R.nn.relu(b)
                d = R.permute_dims(y, axes=[0, 3, 1, 2])
                e = R.add(c, d)                               # x is NCHW, y NHWC: stays
                f = R.permute_dims(y, axes=[0, 3, 1, 2])
                g = R.nn.relu(f)                              # sinks below relu
                h = R.add(g, f)                               # both permuted: sinks
                m = R.mean(h, axis=[2, 3], keepdims=True)     # mean over NHWC axes 1, 2
                r = R.reshape(m, R.shape([1, 8]))             # only unit axes move
                gv = R.add(r, R.sum(e, axis=[2, 3]))
                R.output(gv)
            return gv

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 8, 4, 4), "float32"), y: R.Tensor((1, 4, 4, 8), "float32")
                 ) -> R.Tensor((1, 8), "float32"):
            with R.dataflow():
                c = R.nn.relu(x)
                d = R.permute_dims(y, axes=[0, 3, 1, 2])
                e = R.add(c, d)
                g = R.nn.relu(y)
                h = R.add(g, y)
                m = R.mean(h, axis=[1, 2], keepdims=True)
                r = R.reshape(m, R.shape([1, 8]))
                gv = R.add(r, R.sum(e, axis=[2, 3]))
                R.output(gv)
            return gv

    tvm.ir.assert_structural_equal(CancelTransposes()(Before), Expected)


def _bind(mod, values):
    tensors = {k: tvm.runtime.tensor(v) for k, v in values.items()}
    return relax.transform.BindParams("main", tensors)(mod)


def _compile_run(mod, *inputs):
    from aiq_tvm.pipeline import legalize_passes, schedule_passes

    seq = tvm.transform.Sequential(
        legalize_passes(TARGET) + schedule_passes(TARGET) + lower_passes(TARGET))
    ex = tvm.compile(mod, TARGET, relax_pipeline=seq)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    return vm["main"](*[tvm.runtime.tensor(i) for i in inputs])


@I.ir_module
class StridedConv:
    @R.function
    def main(x: R.Tensor((2, 5, 9, 9), "float32"), c_weight: R.Tensor((12, 5, 3, 3), "float32"),
             c_bias: R.Tensor((1, 12, 1, 1), "float32")) -> R.Tensor((2, 12, 5, 5), "float32"):
        R.func_attr({"num_input": 1})
        with R.dataflow():
            lv = R.nn.conv2d(x, c_weight, strides=[2, 2], padding=[1, 1, 1, 1])
            gv = R.add(lv, c_bias)
            R.output(gv)
        return gv


@pytest.mark.parametrize("precision", ["fp32", "int8", "int4", "w8", "w4"])
def test_quantize_annotated_matches_numpy_reference(precision):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 9, 9)).astype(np.float32)
    w = (rng.standard_normal((12, 5, 3, 3)) * 0.2).astype(np.float32)
    b = rng.standard_normal(12).astype(np.float32)
    cal = Calibration({"c": (float(x.min()), float(x.max()))}, method="minmax")
    mod = AnnotatePrecision(precision)(StridedConv)
    mod = _bind(mod, {"c_weight": w, "c_bias": b.reshape(1, 12, 1, 1)})
    mod = relax.transform.FoldConstant()(mod)
    with TARGET:
        mod = QuantizeAnnotated(cal)(mod)
    mod = CancelTransposes()(mod)
    y = _compile_run(mod, x).numpy().transpose(0, 2, 3, 1)  # -> NHWC
    qp = cal.qparams("c")
    ref = quant.ref_conv2d(x.transpose(0, 2, 3, 1), w, b, precision, stride=(2, 2),
                           padding=(1, 1, 1, 1), act_qparams=qp)
    np.testing.assert_allclose(y, ref.y, rtol=1e-5, atol=1e-5 * np.abs(ref.y).max())
    if ref.acc is not None:
        # The integer part is exact: undo the float epilogue and compare to the int64 sum.
        q, s_w = (quant.quantize_weight_int8 if precision == "int8"
                  else quant.quantize_weight_int4)(w)
        comb = quant.int_comb_scale(qp, s_w).astype(np.float64)
        implied = (y.astype(np.float64) - b) / comb
        np.testing.assert_array_equal(np.rint(implied).astype(np.int64), ref.acc)
        assert np.abs(implied - np.rint(implied)).max() < 0.05


def test_quantize_needs_bound_weights_and_calibration():
    mod = AnnotatePrecision("int8")(StridedConv)
    with TARGET, pytest.raises(ValueError, match="BindParams"):
        QuantizeAnnotated(Calibration({"c": (0.0, 1.0)}))(mod)
    bound = _bind(mod, {"c_weight": np.ones((12, 5, 3, 3), np.float32),
                        "c_bias": np.zeros((1, 12, 1, 1), np.float32)})
    bound = relax.transform.FoldConstant()(bound)
    with TARGET, pytest.raises(ValueError, match="calibrate first"):
        QuantizeAnnotated(None)(bound)


def test_expose_layer_inputs_returns_each_layer_input():
    mod = ExposeLayerInputs()(AnnotatePrecision("fp32")(ConvBiasRelu))
    assert [[str(n) for n in g] for g in mod.attrs["aiq.exposed_layers"]] == [["conv1"]]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal((1, 8, 1, 1)).astype(np.float32)
    out = _compile_run(relax.transform.FoldConstant()(_bind(mod, {"conv1_weight": w,
                                                                   "conv1_bias": b})), x)
    np.testing.assert_array_equal(out[1].numpy(), x)
    assert out[0].numpy().shape == (1, 8, 8, 8)
