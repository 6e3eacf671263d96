"""FuseTransposeQuantize: a quantize kernel reading a transposed float tensor reads the tensor
itself (structure), with the same codes as transposing then quantizing (numpy reference)."""

import numpy as np
import pytest
import tvm
from tvm import relax

from aiq_tvm.passes import FuseTransposeQuantize
from aiq_tvm.quant import ActQParams, quantize_act
from aiq_tvm.targets.x86 import quantize_kernel
from relax_cases import compile_run, op_calls

QP = ActQParams.from_range(-2.0, 2.5)
NCHW = (2, 3, 8, 8)
NHWC = (2, 8, 8, 3)


def _module(target, transposed: bool, keep_float: bool = False) -> tvm.IRModule:
    """main(x NCHW float32): quantize x transposed to NHWC (or x itself); ``keep_float`` also
    returns the float transpose, so it stays needed."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(NCHW, "float32"))
    shape = NHWC if transposed else NCHW
    qf = quantize_kernel(shape, QP, target=target).without_attr("global_symbol")
    with bb.function("main", [x]):
        with bb.dataflow():
            t = bb.emit(relax.op.permute_dims(x, [0, 2, 3, 1])) if transposed else x
            q = bb.emit(relax.call_tir(bb.add_func(qf, "stem_quantize"), [t],
                                       out_ty=relax.TensorType(shape, "uint8")))
            out = bb.emit_output(relax.Tuple([q, t]) if keep_float else q)
        bb.emit_func_output(out)
    return bb.get()


@pytest.mark.parametrize("keep_float", [False, True])
def test_the_quantize_reads_the_untransposed_input_with_the_same_codes(target, keep_float):
    before = _module(target, transposed=True, keep_float=keep_float)
    with tvm.target.Target(target):
        after = FuseTransposeQuantize()(before)
    ops = op_calls(after)
    assert "relax.call_tir:stem_quantize_transposed" in ops
    # The float transpose goes unless something else still reads it.
    assert ("relax.permute_dims" in ops) == keep_float
    x = np.random.default_rng(0).standard_normal(NCHW).astype(np.float32) * 2
    x[0, 0, 0, :4] = [-9.0, 9.0, 0.0, 1.5]  # clipped both ways, zero, a rounding tie region
    got, ref = compile_run(after, target, x), compile_run(before, target, x)
    if keep_float:
        got, ref = got[0], ref[0]
    np.testing.assert_array_equal(got.numpy(), ref.numpy())
    np.testing.assert_array_equal(got.numpy(), quantize_act(x.transpose(0, 2, 3, 1), QP))


def test_a_quantize_of_an_untransposed_tensor_is_left_alone(target):
    before = _module(target, transposed=False)
    with tvm.target.Target(target):
        after = FuseTransposeQuantize()(before)
    assert after.same_as(before)
    # Nothing to fuse needs no target (pipelines built outside `with target:`).
    assert FuseTransposeQuantize()(before).same_as(before)


def test_the_new_kernel_takes_its_symbol_from_its_name_not_main(target):
    # te.create_prim_func names every kernel "main": kept, it would clash with Relax's main
    # (MicroBatch's BlockBuilder refused the module: "duplicate global symbol: main").
    after = FuseTransposeQuantize(target)(_module(target, transposed=True))
    kernel = after["stem_quantize_transposed"]
    assert kernel.attrs is None or "global_symbol" not in kernel.attrs


def test_a_transposing_kernel_needs_a_permutation(target):
    with pytest.raises(ValueError, match="not a permutation"):
        quantize_kernel(NHWC, QP, target=target, axes=(0, 2, 2, 1))
