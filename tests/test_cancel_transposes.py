"""CancelTransposes: layout transposes that meet cancel or sink below elementwise ops, and
the rules for the torchvision CNN family: pooling, broadcast binary ops, per-channel
constants, concat, split and channel shuffle (Before/Expected)."""

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from aiq_tvm.passes import CancelTransposes
from aiq_tvm.passes.cancel_transposes import reshape_groups

SCALE = np.arange(8, dtype=np.float32).reshape(1, 8, 1, 1)


def _rewrite(mod):
    return relax.transform.CanonicalizeBindings()(CancelTransposes()(mod))


def test_pool_broadcast_multiply_and_constant_follow_the_layout():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 4, 4, 8), "float32"), s: R.Tensor((1, 1, 1, 8), "float32")
                 ) -> R.Tensor((1, 2, 2, 8), "float32"):
            with R.dataflow():
                a = R.permute_dims(x, axes=[0, 3, 1, 2])
                p = R.nn.max_pool2d(a, pool_size=[3, 3], strides=[2, 2], padding=[1, 1, 1, 1])
                b = R.permute_dims(s, axes=[0, 3, 1, 2])
                m = R.multiply(p, b)                                  # (1,8,2,2) * (1,8,1,1)
                c = R.multiply(m, R.const(SCALE))                     # per-channel constant
                d = R.nn.adaptive_avg_pool2d(c, output_size=[2, 2])
                gv = R.permute_dims(d, axes=[0, 2, 3, 1])
                R.output(gv)
            return gv

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 4, 4, 8), "float32"), s: R.Tensor((1, 1, 1, 8), "float32")
                 ) -> R.Tensor((1, 2, 2, 8), "float32"):
            with R.dataflow():
                p = R.nn.max_pool2d(x, pool_size=[3, 3], strides=[2, 2], padding=[1, 1, 1, 1],
                                    layout="NHWC", out_layout="NHWC")
                m = R.multiply(p, s)
                c = R.multiply(m, R.const(SCALE.transpose(0, 2, 3, 1).copy()))
                gv = R.nn.adaptive_avg_pool2d(c, output_size=[2, 2], layout="NHWC",
                                              out_layout="NHWC")
                R.output(gv)
            return gv

    tvm.ir.assert_structural_equal(_rewrite(Before), Expected)


def test_concat_split_and_channel_shuffle_stay_nhwc():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 4, 4, 8), "float32"), y: R.Tensor((1, 4, 4, 8), "float32")
                 ) -> R.Tensor((1, 4, 4, 16), "float32"):
            with R.dataflow():
                a = R.permute_dims(x, axes=[0, 3, 1, 2])
                b = R.permute_dims(y, axes=[0, 3, 1, 2])
                c = R.concat((a, b), axis=1)                          # (1, 16, 4, 4)
                r = R.reshape(c, R.shape([1, 2, 8, 4, 4]))            # channel shuffle
                t = R.permute_dims(r, axes=[0, 2, 1, 3, 4])
                u = R.reshape(t, R.shape([1, 16, 4, 4]))
                parts = R.split(u, indices_or_sections=2, axis=1)
                v = R.concat((parts[1], parts[0]), axis=1)
                gv = R.permute_dims(v, axes=[0, 2, 3, 1])
                R.output(gv)
            return gv

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 4, 4, 8), "float32"), y: R.Tensor((1, 4, 4, 8), "float32")
                 ) -> R.Tensor((1, 4, 4, 16), "float32"):
            with R.dataflow():
                c = R.concat((x, y), axis=3)
                r = R.reshape(c, R.shape([1, 4, 4, 2, 8]))
                t = R.permute_dims(r, axes=[0, 1, 2, 4, 3])           # the shuffle, in NHWC
                u = R.reshape(t, R.shape([1, 4, 4, 16]))
                parts = R.split(u, indices_or_sections=2, axis=3)
                p0 = parts[0]
                p1 = parts[1]
                gv = R.concat((p1, p0), axis=3)
                R.output(gv)
            return gv

    tvm.ir.assert_structural_equal(_rewrite(Before), Expected)


def test_channel_slices_stay_nhwc():
    """ONNX files write ``torch.chunk`` as slices: each moves to the NHWC channel axis."""
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 4, 4, 8), "float32")) -> R.Tensor((1, 4, 4, 8), "float32"):
            with R.dataflow():
                a = R.permute_dims(x, axes=[0, 3, 1, 2])
                lo = R.strided_slice(a, axes=[1], begin=[0], end=[4], strides=[1])
                hi = R.strided_slice(a, axes=[-3], begin=[4], end=[8])
                v = R.concat((hi, lo), axis=1)
                gv = R.permute_dims(v, axes=[0, 2, 3, 1])
                R.output(gv)
            return gv

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 4, 4, 8), "float32")) -> R.Tensor((1, 4, 4, 8), "float32"):
            with R.dataflow():
                lo = R.strided_slice(x, axes=[3], begin=[0], end=[4], strides=[1])
                hi = R.strided_slice(x, axes=[3], begin=[4], end=[8])
                gv = R.concat((hi, lo), axis=3)
                R.output(gv)
            return gv

    tvm.ir.assert_structural_equal(_rewrite(Before), Expected)


def test_flatten_of_a_real_transpose_is_left_alone():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 2, 2, 8), "float32")) -> R.Tensor((1, 32), "float32"):
            with R.dataflow():
                a = R.permute_dims(x, axes=[0, 3, 1, 2])
                gv = R.reshape(a, R.shape([1, 32]))                   # NCHW flatten order
                R.output(gv)
            return gv

    tvm.ir.assert_structural_equal(_rewrite(Before), Before)


@pytest.mark.parametrize("src, dst, groups", [
    ([1, 16, 4, 4], [1, 2, 8, 4, 4], [([0], [0]), ([1], [1, 2]), ([2], [3]), ([3], [4])]),
    ([1, 8, 1, 1], [1, 8], [([0], [0]), ([1], [1]), ([2], []), ([3], [])]),
    ([2, 3, 4], [6, 4], [([0, 1], [0]), ([2], [1])]),
    ([4, 6], [6, 4], [([0, 1], [0, 1])]),  # one block: merged, then split differently
    ([2, 3], [3, 3], None),  # sizes differ: not a reshape
])
def test_reshape_groups(src, dst, groups):
    assert reshape_groups(src, dst) == groups


def test_rewritten_graph_computes_the_same_values():
    """Numerics of the shuffle/split/concat rewrite, compiled and run on random data."""
    rng = np.random.default_rng(0)

    @I.ir_module
    class Graph:
        @R.function
        def main(x: R.Tensor((1, 4, 4, 8), "float32"), y: R.Tensor((1, 4, 4, 8), "float32")
                 ) -> R.Tensor((1, 4, 4, 16), "float32"):
            with R.dataflow():
                a = R.permute_dims(x, axes=[0, 3, 1, 2])
                b = R.permute_dims(y, axes=[0, 3, 1, 2])
                c = R.concat((a, b), axis=1)
                r = R.reshape(c, R.shape([1, 2, 8, 4, 4]))
                t = R.permute_dims(r, axes=[0, 2, 1, 3, 4])
                u = R.reshape(t, R.shape([1, 16, 4, 4]))
                parts = R.split(u, indices_or_sections=2, axis=1)
                v = R.concat((parts[1], parts[0]), axis=1)
                gv = R.permute_dims(v, axes=[0, 2, 3, 1])
                R.output(gv)
            return gv

    x = rng.standard_normal((1, 4, 4, 8)).astype(np.float32)
    y = rng.standard_normal((1, 4, 4, 8)).astype(np.float32)
    outs = []
    for mod in (Graph, CancelTransposes()(Graph)):
        vm = relax.VirtualMachine(tvm.compile(mod, "llvm"), tvm.cpu())
        outs.append(vm["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(y)).numpy())
    np.testing.assert_array_equal(outs[0], outs[1])


def test_transposes_cancel_and_sink_below_elementwise_ops():
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


def test_decomposed_activations_masks_where_and_softmax_follow_the_layout():
    """torch.export decomposes softplus / Mish / CELU / PReLU / shrink functions into
    comparisons, ``where`` and ``log``; a softmax over channels names its axis. Left behind,
    their permutes fused into the activation's kernel (strided reads: softplus at 56 x 56 x
    64 took 540 us instead of 150)."""
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 4, 4, 8), "float32"), s: R.Tensor((1, 4, 4, 8), "float32")
                 ) -> R.Tensor((1, 4, 4, 8), "float32"):
            with R.dataflow():
                a = R.permute_dims(x, axes=[0, 3, 1, 2])
                e = R.log(R.add(R.exp(a), R.const(1.0)))
                big = R.greater(a, R.const(20.0))
                sp = R.where(big, a, e)                               # softplus
                ng = R.less_equal(a, R.const(0.0))
                w = R.where(ng, R.const(0.0), sp)                     # constant operand
                b = R.permute_dims(s, axes=[0, 3, 1, 2])
                m = R.where(R.greater(b, R.const(0.0)), w, b)        # two permuted operands
                sm = R.nn.softmax(m, axis=1)
                gv = R.permute_dims(sm, axes=[0, 2, 3, 1])
                R.output(gv)
            return gv

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 4, 4, 8), "float32"), s: R.Tensor((1, 4, 4, 8), "float32")
                 ) -> R.Tensor((1, 4, 4, 8), "float32"):
            with R.dataflow():
                e = R.log(R.add(R.exp(x), R.const(1.0)))
                sp = R.where(R.greater(x, R.const(20.0)), x, e)
                w = R.where(R.less_equal(x, R.const(0.0)), R.const(0.0), sp)
                m = R.where(R.greater(s, R.const(0.0)), w, s)
                gv = R.nn.softmax(m, axis=3)
                R.output(gv)
            return gv

    tvm.ir.assert_structural_equal(_rewrite(Before), Expected)


def test_where_with_operands_in_different_layouts_is_left_alone():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 4, 4, 8), "float32"), y: R.Tensor((1, 8, 4, 4), "float32")
                 ) -> R.Tensor((1, 8, 4, 4), "float32"):
            with R.dataflow():
                a = R.permute_dims(x, axes=[0, 3, 1, 2])
                gv = R.where(R.greater(y, R.const(0.0)), a, y)
                R.output(gv)
            return gv

    after = _rewrite(Before)
    ops = []
    relax.analysis.post_order_visit(after["main"].body, lambda e: ops.append(e.op.name) if (
        isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op)) else None)
    assert ops.count("relax.permute_dims") == 1 and "relax.where" in ops


def test_reductions_without_keepdims_read_the_nhwc_map():
    """``x.mean([2, 3])`` after an NHWC conv (MnasNet's pooling, ONNX ``ReduceMean`` with
    ``keepdims=0``): the axes left are already in order, so no transpose is left; where they
    are not, one permute of the (small) result orders them."""
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 4, 6, 8), "float32"), y: R.Tensor((2, 8, 4, 6), "float32")):
            with R.dataflow():
                a = R.permute_dims(x, axes=[0, 3, 1, 2])
                m = R.mean(a, axis=[2, 3], keepdims=False)          # (2, 8)
                s = R.sum(a, axis=[-1], keepdims=False)             # (2, 8, 4): moves 8
                b = R.permute_dims(y, axes=[0, 2, 3, 1])
                h = R.max(b, axis=[1], keepdims=False)              # (2, 6, 8): moves 8
                w = R.min(a, axis=None, keepdims=False)             # all axes: left alone
                gv = (m, s, h, w)
                R.output(gv)
            return gv

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((2, 4, 6, 8), "float32"), y: R.Tensor((2, 8, 4, 6), "float32")):
            with R.dataflow():
                a = R.permute_dims(x, axes=[0, 3, 1, 2])
                m = R.mean(x, axis=[1, 2], keepdims=False)
                s0 = R.sum(x, axis=[2], keepdims=False)
                s = R.permute_dims(s0, axes=[0, 2, 1])
                h0 = R.max(y, axis=[2], keepdims=False)
                h = R.permute_dims(h0, axes=[0, 2, 1])
                w = R.min(a, axis=None, keepdims=False)
                gv = (m, s, h, w)
                R.output(gv)
            return gv

    after = _rewrite(Before)
    tvm.ir.assert_structural_equal(after, _rewrite(Expected))
    rng = np.random.default_rng(1)
    args = [rng.standard_normal((2, 4, 6, 8)).astype(np.float32),
            rng.standard_normal((2, 8, 4, 6)).astype(np.float32)]
    outs = []
    for mod in (Before, after):
        vm = relax.VirtualMachine(tvm.compile(mod, "llvm"), tvm.cpu())
        outs.append([t.numpy() for t in vm["main"](*map(tvm.runtime.tensor, args))])
    for got, want in zip(outs[1], outs[0], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
