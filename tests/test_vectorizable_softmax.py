"""VectorizableSoftmax: which softmax calls it rewrites (last axis, float32, static shape), the
``-inf`` padding of ragged rows, the vectorized reductions, and softmax / log-softmax against
float64 references (masked entries, large logits, a row of -inf)."""

import math

import numpy as np
import pytest
import tvm
from tvm import relax

from aiq_tvm.passes import VectorizableSoftmax
from aiq_tvm.testing import glue_pipeline, run_relax

AVX2 = tvm.target.Target({"kind": "llvm", "mcpu": "haswell", "num-cores": 2})  # 8 fp32 lanes


def _module(shape, log=False, axis=-1, dtype="float32") -> tvm.IRModule:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, dtype))
    op = relax.op.nn.log_softmax if log else relax.op.nn.softmax
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(op(x, axis=axis))
        bb.emit_func_output(out)
    return bb.get()


def _ops(mod) -> list[str]:
    ops = []
    relax.analysis.post_order_visit(mod["main"].body, lambda e: ops.append(e.op.name) if (
        isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op)) else None)
    return ops


def test_ragged_rows_are_padded_with_minus_inf_and_sliced():
    after = VectorizableSoftmax(AVX2)(_module((3, 5, 13)))
    assert _ops(after) == ["relax.nn.pad", "relax.call_tir", "relax.strided_slice"]
    pad = next(b.value for b in after["main"].body.blocks[0].bindings
               if b.value.op.name == "relax.nn.pad")
    assert list(pad.attrs.pad_width) == [0, 0, 0, 0, 0, 3]
    assert math.isinf(float(pad.attrs.pad_value)) and float(pad.attrs.pad_value) < 0


def test_rows_of_narrow_vectors_only_are_padded_to_whole_wide_ones():
    # 196 scores (14 x 14 tokens) divide into 4-lane vectors: 49 of them per row against
    # 25 padded 8-lane ones on AVX2.
    after = VectorizableSoftmax(AVX2)(_module((2, 196, 196)))
    assert _ops(after) == ["relax.nn.pad", "relax.call_tir", "relax.strided_slice"]
    pad = next(b.value for b in after["main"].body.blocks[0].bindings
               if b.value.op.name == "relax.nn.pad")
    assert list(pad.attrs.pad_width)[-1] == 4
    x = np.random.default_rng(0).standard_normal((2, 196, 196)).astype("float32")
    out = run_relax(_module((2, 196, 196)), AVX2, x)
    ref = np.exp(x - x.max(-1, keepdims=True))
    np.testing.assert_allclose(out, ref / ref.sum(-1, keepdims=True), rtol=2e-6, atol=1e-9)


def test_padded_rows_are_computed_in_vectors_before_the_slice_copies_them():
    # 49 scores (a Swin window) pad to 56 on AVX2; the exponentials and the normalization stay
    # a vectorized loop nest of their own instead of running in the slice's scalar loop.
    with AVX2:
        mod = glue_pipeline(AVX2, lower=False)(_module((6, 49, 49)))
    (kernel,) = [f for gv, f in mod.functions_items()
                 if isinstance(f, tvm.tirx.PrimFunc) and "softmax" in gv.name_hint]
    script = kernel.script()
    softmax_loop = script[:script.index('T.sblock("softmax")')].rsplit("for ", 1)[1]
    assert "T.vectorized(T.int64(8))" in softmax_loop, softmax_loop
    x = np.random.default_rng(1).standard_normal((6, 49, 49)).astype("float32")
    out = run_relax(_module((6, 49, 49)), AVX2, x)
    ref = np.exp(x - x.max(-1, keepdims=True))
    np.testing.assert_allclose(out, ref / ref.sum(-1, keepdims=True), rtol=2e-6, atol=1e-9)


def test_whole_vector_rows_need_no_padding_and_reduce_in_vector_lanes():
    after = VectorizableSoftmax(AVX2)(_module((3, 5, 16)))
    assert _ops(after) == ["relax.call_tir"]
    with AVX2:
        mod = glue_pipeline(AVX2, lower=False)(_module((3, 50, 16)))
    (kernel,) = [f for _, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    script = kernel.script()
    # Partial maxima and sums: 8 lanes along each row's 2 vectors, under a parallel row loop.
    assert script.count("T.vectorized(T.int64(8))") >= 3 and "T.parallel(" in script
    assert "T.exp(" not in script


@pytest.mark.parametrize("module", [_module((3, 5, 13), axis=1),
                                    _module((3, 5, 13), dtype="float16")],
                         ids=["not-last-axis", "float16"])
def test_other_softmax_calls_are_left_to_tvm(module):
    tvm.ir.assert_structural_equal(VectorizableSoftmax(AVX2)(module), module)


def _softmax64(x: np.ndarray, log: bool) -> np.ndarray:
    x64 = x.astype(np.float64)
    shifted = x64 - x64.max(axis=-1, keepdims=True)
    logsum = np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return shifted - logsum if log else np.exp(shifted - logsum)


@pytest.mark.parametrize("shape", [(2, 7, 13), (4, 3, 32), (2, 3), (40,)])
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_matches_float64(shape, log):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 8).astype("float32")
    x.reshape(-1)[::5] = -np.inf  # masked entries (attention)
    x.reshape(-1)[1] = 80.0       # a large logit: exp would overflow without the max
    y = run_relax(_module(shape, log), AVX2, x)
    ref = _softmax64(x, log)
    if log:
        finite = np.isfinite(ref)
        assert np.array_equal(np.isneginf(y), np.isneginf(ref))
        np.testing.assert_allclose(y[finite], ref[finite], rtol=2e-6, atol=2e-6)
    else:
        np.testing.assert_allclose(y, ref, rtol=2e-6, atol=1e-7)
        assert (y[np.isneginf(x)] == 0.0).all()


def test_a_row_of_minus_inf_gives_nan_as_torch():
    x = np.full((2, 16), -np.inf, np.float32)
    x[1] = np.arange(16, dtype=np.float32)
    y = run_relax(_module(x.shape), AVX2, x)
    assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()
