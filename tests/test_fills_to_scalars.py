"""FillsToScalars: constant fills feeding elementwise ops become scalar constants."""

import tvm
from tvm.script import ir as I
from tvm.script import relax as R

from aiq_tvm.passes import FillsToScalars


@I.ir_module
class SafeSoftmax:
    """torch's attention softmax guard: rows that are all -inf become zeros."""

    @R.function
    def main(s: R.Tensor((2, 4, 5, 5), "float32")) -> R.Tensor((2, 4, 5, 5), "float32"):
        with R.dataflow():
            p = R.nn.softmax(s, axis=-1)
            masked = R.equal(s, R.const(float("-inf"), "float32"))
            zeros = R.full_like(p, R.const(0.0, "float32"))
            out = R.where(masked, zeros, p)
            R.output(out)
        return out


@I.ir_module
class SafeSoftmaxScalar:
    @R.function
    def main(s: R.Tensor((2, 4, 5, 5), "float32")) -> R.Tensor((2, 4, 5, 5), "float32"):
        with R.dataflow():
            p = R.nn.softmax(s, axis=-1)
            masked = R.equal(s, R.const(float("-inf"), "float32"))
            out = R.where(masked, R.const(0.0, "float32"), p)
            R.output(out)
        return out


@I.ir_module
class FillSetsTheShape:
    """Here the fill broadcasts x to (4, 8): replacing it would change the result's shape."""

    @R.function
    def main(x: R.Tensor((1, 8), "float32")) -> R.Tensor((4, 8), "float32"):
        with R.dataflow():
            ones = R.ones(R.shape([4, 8]), "float32")
            out = R.multiply(x, ones)
            R.output(out)
        return out


def test_full_like_operand_of_where_becomes_a_scalar():
    tvm.ir.assert_structural_equal(FillsToScalars()(SafeSoftmax), SafeSoftmaxScalar)


def test_fill_that_sets_the_output_shape_is_kept():
    tvm.ir.assert_structural_equal(FillsToScalars()(FillSetsTheShape), FillSetsTheShape)
