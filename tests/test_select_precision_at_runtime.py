"""SelectPrecisionAtRuntime: every candidate lowered once behind an R.If chain on aiq_select."""

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R
from tvm.script import tirx as T

from aiq_tvm import Calibration
from aiq_tvm.passes import AnnotatePrecision, SelectPrecisionAtRuntime, select_vector
from relax_cases import FC_RANGE, DenseBiasRelu, fc_kernel, fc_quantize_kernel, with_kernels


def test_candidates_sit_behind_an_if_chain_on_the_select_input(target):
    """Candidate k of layer i runs when aiq_select[i] == k; the last one is the else branch."""
    fp32, int8, w4 = (fc_kernel(p, target) for p in ("fp32", "int8", "w4"))
    c32, c8, c4 = ([R.const(v) for v in k.consts] for k in (fp32, int8, w4))  # noqa: F841

    @I.ir_module(check_well_formed=False)  # the stubs get the real kernels below
    class Expected:
        I.module_attrs({"aiq.fallbacks": {}, "aiq.unsupported": {},
                        "aiq.select_layers": ["fc"],
                        "aiq.select_choices": {"fc": ["fp32", "int8", "w4"]}})

        @T.prim_func(private=True)
        def fc_fp32():
            T.evaluate(0)  # stubs: replaced by the library's kernels below

        @T.prim_func(private=True)
        def fc_quantize():
            T.evaluate(0)

        @T.prim_func(private=True)
        def fc_int8():
            T.evaluate(0)

        @T.prim_func(private=True)
        def fc_w4():
            T.evaluate(0)

        @R.function
        def main(x: R.Tensor((1, 16), "float32"), aiq_select: R.Tensor((1,), "int32")
                 ) -> R.Tensor((1, 8), "float32"):
            cls = Expected
            with R.dataflow():
                s0 = R.take(aiq_select, R.const(0, "int64"), mode="clip")
                is_fp32 = R.equal(s0, R.const(0, "int32"))
                R.output(is_fp32)
            if is_fp32:
                y32 = R.call_tir(cls.fc_fp32, (x, c32[0], c32[1]),
                                 out_ty=R.Tensor((1, 8), "float32"))
                out: R.Tensor((1, 8), "float32") = y32
            else:
                with R.dataflow():
                    s1 = R.take(aiq_select, R.const(0, "int64"), mode="clip")
                    is_int8 = R.equal(s1, R.const(1, "int32"))
                    R.output(is_int8)
                if is_int8:
                    with R.dataflow():
                        xq = R.call_tir(cls.fc_quantize, (x,), out_ty=R.Tensor((1, 16), "uint8"))
                        y8 = R.call_tir(cls.fc_int8, (xq, c8[0], c8[1], c8[2], c8[3]),
                                        out_ty=R.Tensor((1, 8), "float32"))
                        R.output(y8)
                    rest: R.Tensor((1, 8), "float32") = y8
                else:
                    y4 = R.call_tir(cls.fc_w4, (x, c4[0], c4[1], c4[2]),
                                    out_ty=R.Tensor((1, 8), "float32"))
                    rest: R.Tensor((1, 8), "float32") = y4
                out: R.Tensor((1, 8), "float32") = rest
            return out

    with_kernels(Expected, {"fc_fp32": fp32.prim_func, "fc_quantize": fc_quantize_kernel(target),
                            "fc_int8": int8.prim_func, "fc_w4": w4.prim_func})
    annotated = relax.transform.FoldConstant()(AnnotatePrecision("fp32")(DenseBiasRelu))
    cal = Calibration({"fc": FC_RANGE}, method="minmax")
    after = SelectPrecisionAtRuntime({"fc": ["fp32", "int8", "w4"]}, cal, target=target)(
        annotated)
    tvm.ir.assert_structural_equal(after, Expected)


def test_select_vector_indexes_each_layers_candidates():
    choices = {"a": ["fp32", "int8"], "b": ["fp32", "w8", "int4"]}
    np.testing.assert_array_equal(select_vector(["a", "b"], choices, {"a": "int8", "b": "int4"}),
                                  [1, 2])
    np.testing.assert_array_equal(select_vector(["a", "b"], choices, {}), [0, 0])  # fp32
    with pytest.raises(ValueError, match="'w4' is not a compiled candidate of layer 'b'"):
        select_vector(["a", "b"], choices, {"b": "w4"})


def test_bad_choices(target):
    annotated = AnnotatePrecision("fp32")(DenseBiasRelu)
    with pytest.raises(ValueError, match="no candidate precisions"):
        SelectPrecisionAtRuntime({"fc": []})
    with pytest.raises(ValueError, match="layers the module does not have: \\['nope'\\]"):
        SelectPrecisionAtRuntime({"nope": ["fp32"]}, target=target)(annotated)
    with pytest.raises(ValueError, match="8-bit candidates but no calibration"):
        SelectPrecisionAtRuntime({"fc": ["fp32", "int8"]}, target=target)(
            relax.transform.FoldConstant()(annotated))
