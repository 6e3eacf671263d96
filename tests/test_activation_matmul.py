"""Matmuls between activations (attention's ``q @ k^T`` and ``scores @ v``): PadMatmulColumns
(Before/Expected, and the shapes it leaves alone), ScheduleGlue's register-tiled matmul with
its epilogue in the tile write-back, and the compiled result against numpy."""

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from aiq_tvm.passes import PadMatmulColumns
from aiq_tvm.passes.pad_matmul_columns import padded_columns
from aiq_tvm.testing import glue_pipeline, run_relax

AVX2 = tvm.target.Target({"kind": "llvm", "mcpu": "haswell", "num-cores": 2})  # 8 fp32 lanes


@pytest.mark.parametrize("columns, lanes, padded", [
    (197, 16, 208), (197, 8, 200), (64, 16, None), (24, 16, None), (5, 16, 8), (13, 8, 16),
    (3, 8, 4),
    # 14 x 14 tokens divide into 4-lane vectors only: 13 padded 16-lane ones are cheaper
    (196, 16, 208), (196, 8, 200), (228, 16, 240), (12, 8, None), (48, 16, None),
])
def test_padded_columns(columns, lanes, padded):
    assert padded_columns(columns, lanes) == padded


def test_ragged_columns_are_padded_and_sliced_off():
    @I.ir_module
    class Before:
        @R.function
        def main(q: R.Tensor((2, 5, 8), "float32"), k: R.Tensor((2, 8, 13), "float32")
                 ) -> R.Tensor((2, 5, 13), "float32"):
            with R.dataflow():
                gv = R.matmul(q, k)
                R.output(gv)
            return gv

    @I.ir_module
    class Expected:
        @R.function
        def main(q: R.Tensor((2, 5, 8), "float32"), k: R.Tensor((2, 8, 13), "float32")
                 ) -> R.Tensor((2, 5, 13), "float32"):
            with R.dataflow():
                padded = R.nn.pad(k, [0, 0, 0, 0, 0, 3])
                product = R.matmul(q, padded, out_dtype="float32")
                gv = R.strided_slice(product, axes=[2], begin=[0], end=[13])
                R.output(gv)
            return gv

    after = PadMatmulColumns(AVX2)(Before)
    tvm.ir.assert_structural_equal(relax.transform.CanonicalizeBindings()(after), Expected)


@pytest.mark.parametrize("shapes, dtype", [
    (((2, 5, 8), (2, 8, 16)), "float32"),   # 16 columns: whole vectors already
    (((2, 5, 8), (2, 8, 13)), "float16"),   # another dtype
])
def test_whole_vectors_and_other_dtypes_are_left_alone(shapes, dtype):
    bb = relax.BlockBuilder()
    a = relax.Var("a", relax.TensorType(shapes[0], dtype))
    b = relax.Var("b", relax.TensorType(shapes[1], dtype))
    with bb.function("main", [a, b]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.matmul(a, b))
        bb.emit_func_output(out)
    mod = bb.get()
    tvm.ir.assert_structural_equal(PadMatmulColumns(AVX2)(mod), mod)


def _matmul_module(lhs_shape, rhs_shape) -> tvm.IRModule:
    """``matmul(a, b) * 0.5 + 1``: the elementwise epilogue FuseOps puts in the matmul's
    kernel."""
    bb = relax.BlockBuilder()
    a = relax.Var("a", relax.TensorType(lhs_shape, "float32"))
    b = relax.Var("b", relax.TensorType(rhs_shape, "float32"))
    with bb.function("main", [a, b]):
        with bb.dataflow():
            y = bb.emit(relax.op.matmul(a, b))
            y = bb.emit(relax.op.add(relax.op.multiply(y, relax.const(0.5)), relax.const(1.0)))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def _scheduled(mod: tvm.IRModule) -> tvm.IRModule:
    with AVX2:
        return glue_pipeline(AVX2, lower=False)(mod)


@pytest.mark.parametrize("lhs_shape, rhs_shape", [
    ((12, 33, 16), (12, 16, 37)),   # ragged columns: padded to 40, sliced
    ((3, 21, 37), (3, 37, 16)),     # ragged rows and reduction: tile rows masked
    ((10, 24), (24, 32)),           # plain 2-D matmul, two vectors per tile row
])
def test_tiled_matmul_matches_numpy(lhs_shape, rhs_shape):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(lhs_shape).astype("float32")
    b = rng.standard_normal(rhs_shape).astype("float32")
    out = run_relax(_matmul_module(lhs_shape, rhs_shape), AVX2, a, b)
    ref = (a.astype(np.float64) @ b.astype(np.float64)) * 0.5 + 1.0
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_matmul_accumulates_in_registers_with_its_epilogue():
    """One kernel: a local (register) accumulator tile, the scale and add applied in its
    write-back (no full-size intermediate buffer), columns in vectors of 8."""
    mod = _scheduled(_matmul_module((4, 32, 16), (4, 16, 32)))
    (kernel,) = [f for _, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    script = kernel.script()
    assert 'scope="local"' in script
    assert script.count("T.sblock_alloc_buffer") == 1  # only the register tile
    assert "T.vectorized(T.int64(8))" in script and "T.parallel(" in script


def test_glue_without_matmul_is_scheduled_as_before():
    # ScheduleGlue's other reductions keep the generic rule (a mean over H, W channels-last).
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 8, 8, 32), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.mean(x, axis=[1, 2], keepdims=True))
        bb.emit_func_output(out)
    mod = _scheduled(bb.get())
    (kernel,) = [f for _, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    assert 'scope="local"' not in kernel.script()


def test_a_transposing_consumer_of_a_square_product_stays_right():
    """Only consumers reading each product point at their own point go into the tile
    write-back (``_pointwise_consumer``); a transpose of a square product has the same shape
    but reads points other tiles write."""
    bb = relax.BlockBuilder()
    a = relax.Var("a", relax.TensorType((3, 16, 8), "float32"))
    b = relax.Var("b", relax.TensorType((3, 8, 16), "float32"))
    with bb.function("main", [a, b]):
        with bb.dataflow():
            y = bb.emit(relax.op.matmul(a, b))
            y = bb.emit(relax.op.add(relax.op.permute_dims(y, [0, 2, 1]), relax.const(1.0)))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 16, 8)).astype("float32")
    w = rng.standard_normal((3, 8, 16)).astype("float32")
    out = run_relax(bb.get(), AVX2, x, w)
    ref = (x.astype(np.float64) @ w).transpose(0, 2, 1) + 1.0
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
