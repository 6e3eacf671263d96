"""FoldHostConstants: layout ops and correctly rounded arithmetic of constants become constants
computed on the host (Before/Expected), with the bits Relax's own FoldConstant computes; ops of
non-constants, other ops and other dtypes are left alone."""

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from aiq_tvm.passes import FoldHostConstants

BIAS = np.arange(4, dtype=np.float32)
W = np.arange(24, dtype=np.float32).reshape(4, 6)
RNG = np.random.default_rng(0)
VAR = RNG.uniform(0.01, 3.0, 4).astype(np.float32)
GAMMA = RNG.standard_normal(4).astype(np.float32)
EPS = np.float32(1e-5)


def _run(mod: tvm.IRModule, *inputs: np.ndarray) -> np.ndarray:
    vm = relax.VirtualMachine(tvm.compile(mod, "llvm"), tvm.cpu())
    return vm["main"](*[tvm.runtime.tensor(x) for x in inputs]).numpy()


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
                e = R.expand_dims(R.const(BIAS), axis=[0])             # folded
                t = R.exp(R.const(BIAS))                               # not exactly rounded
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
                t = R.exp(R.const(BIAS))
                u = R.add(s, R.multiply(e, t))
                gv = R.reshape(R.add(u, y), R.shape([2, 4, 1, 1]))
                R.output(gv)
            return gv

    fold = FoldHostConstants()
    after = fold(Before)
    tvm.ir.assert_structural_equal(after, Expected)
    assert fold.folded == 3
    x = RNG.standard_normal((2, 6)).astype(np.float32)
    y = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(_run(relax.transform.FoldConstant()(Before), x, y),
                                  _run(after, x, y))


def test_decomposed_batch_norm_statistics_fold_through_bindings():
    """A batch norm no conv absorbs, as DecomposeOpsForInference writes it: its statistics
    reach the arithmetic through variables bound to folded layout ops; the whole chain folds
    in one pass, to the bits FoldConstant computes."""

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 4, 3, 3), "float32")) -> R.Tensor((2, 4, 3, 3), "float32"):
            with R.dataflow():
                v = R.expand_dims(R.const(VAR), axis=[1, 2])
                std = R.sqrt(R.add(v, R.const(EPS)))
                g = R.expand_dims(R.const(GAMMA), axis=[1, 2])
                scale = R.divide(g, std)
                neg = R.negative(R.maximum(scale, R.const(np.float32(-0.5))))
                gv = R.multiply(x, R.minimum(neg, R.subtract(scale, R.const(BIAS[:, None, None]))))
                R.output(gv)
            return gv

    fold = FoldHostConstants()
    after = fold(Before)
    assert fold.folded == 9  # every call but the one reading x
    calls = []
    relax.analysis.post_order_visit(after["main"], lambda e: calls.append(e.op.name) if (
        isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op)) else None)
    assert calls == ["relax.multiply"]
    x = RNG.standard_normal((2, 4, 3, 3)).astype(np.float32)
    np.testing.assert_array_equal(_run(relax.transform.FoldConstant()(Before), x), _run(after, x))


@pytest.mark.parametrize("dtype", ["int32", "float16"])
def test_other_dtypes_are_left_to_fold_constant(dtype):
    """Integer wrap-around and half-precision rounding are FoldConstant's (a compiled
    kernel's) to decide, not numpy's."""
    a = np.arange(4).astype(dtype)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((4,), dtype))
    with bb.function("main", [x]):
        with bb.dataflow():
            s = bb.emit(relax.op.add(relax.const(a), relax.const(a)))
            gv = bb.emit_output(relax.op.add(x, s))
        bb.emit_func_output(gv)
    before = bb.get()
    fold = FoldHostConstants()
    tvm.ir.assert_structural_equal(fold(before), before)
    assert fold.folded == 0
