"""VectorizableLayerNorm: which layer norms it rewrites (last axis, float32, static shape, a row
length a vector part divides), the vectorized partial sums, and the result against torch in
float64 with and without scale / shift."""

import numpy as np
import pytest
import torch
import tvm
from tvm import relax

from aiq_tvm.passes import VectorizableLayerNorm
from aiq_tvm.testing import glue_pipeline, run_relax

AVX2 = tvm.target.Target({"kind": "llvm", "mcpu": "haswell", "num-cores": 2})  # 8 fp32 lanes


def _module(shape, axes=(-1,), scale=True, center=True, dtype="float32", seed=1):
    rng = np.random.default_rng(seed)
    norm_shape = [shape[a] for a in axes]
    gamma = relax.const(rng.standard_normal(norm_shape).astype(dtype))
    beta = relax.const(rng.standard_normal(norm_shape).astype(dtype))
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, dtype))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.nn.layer_norm(x, gamma, beta, axes=list(axes),
                                                        epsilon=1e-5, center=center,
                                                        scale=scale))
        bb.emit_func_output(out)
    return bb.get(), gamma.value.numpy(), beta.value.numpy()


def test_last_axis_layer_norm_becomes_one_kernel_with_vector_partial_sums():
    mod, _, _ = _module((4, 50, 32))
    after = VectorizableLayerNorm(AVX2)(mod)
    call = after["main"].body.blocks[0].bindings[0].value
    assert call.op.name == "relax.call_tir" and call.args[0].name_hint == "layer_norm"
    with AVX2:
        scheduled = glue_pipeline(AVX2, lower=False)(mod)
    (kernel,) = [f for _, f in scheduled.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    script = kernel.script()
    # The two partial sums along 8 lanes and the output, each under a parallel row loop.
    assert script.count("T.vectorized(T.int64(8))") >= 3 and "T.parallel(" in script


@pytest.mark.parametrize("shape, axes, dtype", [
    ((4, 50, 30), (-1,), "float32"),    # 30: no vector part of 8 lanes divides it
    ((4, 50, 32), (1, 2), "float32"),   # two axes
    ((4, 50, 32), (1,), "float32"),     # not the last axis
    ((4, 50, 32), (-1,), "float16"),
])
def test_other_layer_norms_are_left_to_tvm(shape, axes, dtype):
    mod, _, _ = _module(shape, axes, dtype=dtype)
    tvm.ir.assert_structural_equal(VectorizableLayerNorm(AVX2)(mod), mod)


@pytest.mark.parametrize("shape", [(2, 197, 64), (1, 7, 7, 96), (3, 4)])
@pytest.mark.parametrize("scale, center", [(True, True), (False, True), (True, False),
                                           (False, False)])
def test_matches_torch_in_float64(shape, scale, center):
    mod, gamma, beta = _module(shape, scale=scale, center=center)
    rng = np.random.default_rng(0)
    # An offset much larger than the spread: E[x^2] - E[x]^2 would lose the variance.
    x = (rng.standard_normal(shape) * 0.5 + 30.0).astype("float32")
    y = run_relax(mod, AVX2, x)
    ref = torch.nn.functional.layer_norm(
        torch.from_numpy(x).double(), shape[-1:],
        torch.from_numpy(gamma).double() if scale else None,
        torch.from_numpy(beta).double() if center else None, eps=1e-5).numpy()
    np.testing.assert_allclose(y, ref, rtol=0, atol=5e-5)
