"""AnnotatePrecision: layers grouped into named composites carrying their plan precision."""

import pytest
import tvm
from tvm.script import ir as I
from tvm.script import relax as R

from aiq_tvm.passes import AnnotatePrecision, layer_table
from relax_cases import ConvBiasRelu


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
