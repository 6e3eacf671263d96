"""FoldConstantLayouts: reshapes and transposes of constants become constants computed on the
host (Before/Expected); layout ops of non-constants and arithmetic are left alone."""

import numpy as np
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from aiq_tvm.passes import FoldConstantLayouts

BIAS = np.arange(4, dtype=np.float32)
W = np.arange(24, dtype=np.float32).reshape(4, 6)


def test_layout_ops_of_constants_are_folded_exactly():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 6), "float32"), y: R.Tensor((2, 4), "float32")
                 ) -> R.Tensor((2, 4, 1, 1), "float32"):
            with R.dataflow():
                wt = R.permute_dims(R.const(W), axes=[1, 0])          # folded: W.T
                d = R.matmul(x, wt)
                b = R.reshape(R.const(BIAS), R.shape([1, 4]))          # folded
                s = R.add(d, b)
                e = R.expand_dims(R.const(BIAS), axis=[0])             # folded, then added:
                t = R.add(R.const(BIAS), R.const(BIAS))                # arithmetic is left
                u = R.add(s, R.multiply(e, t))
                gv = R.reshape(R.add(u, y), R.shape([2, 4, 1, 1]))     # not a constant
                R.output(gv)
            return gv

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((2, 6), "float32"), y: R.Tensor((2, 4), "float32")
                 ) -> R.Tensor((2, 4, 1, 1), "float32"):
            with R.dataflow():
                wt = R.const(W.T.copy())
                d = R.matmul(x, wt)
                b = R.const(BIAS.reshape(1, 4))
                s = R.add(d, b)
                e = R.const(BIAS.reshape(1, 4))
                t = R.add(R.const(BIAS), R.const(BIAS))
                u = R.add(s, R.multiply(e, t))
                gv = R.reshape(R.add(u, y), R.shape([2, 4, 1, 1]))
                R.output(gv)
            return gv

    fold = FoldConstantLayouts()
    after = fold(Before)
    tvm.ir.assert_structural_equal(after, Expected)
    assert fold.folded == 3
    # Same values as Relax's own constant folding.
    x = np.random.default_rng(0).standard_normal((2, 6)).astype(np.float32)
    y = np.ones((2, 4), np.float32)
    outs = []
    for mod in (relax.transform.FoldConstant()(Before), after):
        vm = relax.VirtualMachine(tvm.compile(mod, "llvm"), tvm.cpu())
        outs.append(vm["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(y)).numpy())
    np.testing.assert_array_equal(outs[0], outs[1])
