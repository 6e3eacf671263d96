"""VectorizableGroupNorm and the CancelTransposes rule that puts group / instance norms on the
channels-last map: which calls it rewrites, the per-channel vector sums, and the result
against torch in float64 (1, several and one-per-channel groups, with and without affine)."""

import numpy as np
import pytest
import torch
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from aiq_tvm.passes import CancelTransposes, VectorizableGroupNorm
from aiq_tvm.testing import glue_pipeline, run_relax

AVX2 = tvm.target.Target({"kind": "llvm", "mcpu": "haswell", "num-cores": 2})  # 8 fp32 lanes


def _module(shape, groups, channel_axis=-1, scale=True, center=True, dtype="float32"):
    rank = len(shape)
    channel_axis %= rank
    channels = shape[channel_axis]
    rng = np.random.default_rng(1)
    gamma = relax.const(rng.standard_normal(channels).astype(dtype))
    beta = relax.const(rng.standard_normal(channels).astype(dtype))
    axes = [a for a in range(1, rank) if a != channel_axis]
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, dtype))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.nn.group_norm(x, gamma, beta, groups, channel_axis,
                                                        axes, 1e-5, center, scale))
        bb.emit_func_output(out)
    return bb.get(), gamma.value.numpy(), beta.value.numpy()


def test_channels_last_group_norm_becomes_one_kernel_with_channel_lane_sums():
    mod, _, _ = _module((2, 6, 5, 32), 4)
    after = VectorizableGroupNorm()(mod)
    call = after["main"].body.blocks[0].bindings[0].value
    assert call.op.name == "relax.call_tir" and call.args[0].name_hint == "group_norm"
    with AVX2:
        scheduled = glue_pipeline(AVX2, lower=False)(mod)
    (kernel,) = [f for _, f in scheduled.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    # Both per-channel sums over the map and the output run along 8 channel lanes.
    assert kernel.script().count("T.vectorized(T.int64(8))") >= 3


@pytest.mark.parametrize("module", [_module((2, 32, 6, 5), 4, channel_axis=1)[0],
                                    _module((2, 6, 5, 32), 4, dtype="float16")[0]],
                         ids=["channels-first", "float16"])
def test_other_group_norms_are_left_to_tvm(module):
    tvm.ir.assert_structural_equal(VectorizableGroupNorm()(module), module)


@pytest.mark.parametrize("groups", [1, 4, 32])
@pytest.mark.parametrize("affine", [True, False])
def test_matches_torch_in_float64(groups, affine):
    shape = (2, 6, 5, 32)
    mod, gamma, beta = _module(shape, groups, scale=affine, center=affine)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 0.5 + 20.0).astype("float32")  # offset >> spread
    y = run_relax(mod, AVX2, x)
    nchw = torch.from_numpy(x).double().permute(0, 3, 1, 2)
    ref = torch.nn.functional.group_norm(
        nchw, groups, torch.from_numpy(gamma).double() if affine else None,
        torch.from_numpy(beta).double() if affine else None, eps=1e-5)
    np.testing.assert_allclose(y, ref.permute(0, 2, 3, 1).numpy(), rtol=0, atol=5e-5)


def test_group_norm_follows_the_channels_last_layout():
    gamma = np.arange(8, dtype=np.float32)

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 4, 4, 8), "float32")) -> R.Tensor((1, 4, 4, 8), "float32"):
            with R.dataflow():
                a = R.permute_dims(x, axes=[0, 3, 1, 2])
                n = R.nn.group_norm(a, R.const(gamma), R.const(gamma), num_groups=2,
                                    channel_axis=1, axes=[2, 3])
                gv = R.permute_dims(n, axes=[0, 2, 3, 1])
                R.output(gv)
            return gv

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 4, 4, 8), "float32")) -> R.Tensor((1, 4, 4, 8), "float32"):
            with R.dataflow():
                gv = R.nn.group_norm(x, R.const(gamma), R.const(gamma), num_groups=2,
                                     channel_axis=3, axes=[1, 2])
                R.output(gv)
            return gv

    after = relax.transform.CanonicalizeBindings()(CancelTransposes()(Before))
    tvm.ir.assert_structural_equal(after, Expected)


def _instance_norm_module(shape, axes):
    rng = np.random.default_rng(1)
    gamma, beta = (relax.const(rng.standard_normal(shape[-1]).astype("float32"))
                   for _ in range(2))
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.nn.instance_norm(x, gamma, beta, len(shape) - 1,
                                                           axes, 1e-5))
        bb.emit_func_output(out)
    return bb.get(), gamma.value.numpy(), beta.value.numpy()


def test_instance_norm_as_torch_decomposes_it_at_batch_one():
    """torch's InstanceNorm reaches Relax as a norm over (0, *spatial) of one sample of N * C
    channels; at batch one that is a group per channel."""
    mod, gamma, beta = _instance_norm_module((1, 6, 5, 16), [0, 1, 2])
    assert VectorizableGroupNorm()(mod)["main"].body.blocks[0].bindings[0].value.op.name == \
        "relax.call_tir"
    x = (np.random.default_rng(0).standard_normal((1, 6, 5, 16)) + 3.0).astype("float32")
    ref = torch.nn.functional.instance_norm(
        torch.from_numpy(x).double().permute(0, 3, 1, 2), weight=torch.from_numpy(gamma).double(),
        bias=torch.from_numpy(beta).double(), eps=1e-5).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(run_relax(mod, AVX2, x), ref, rtol=0, atol=5e-5)
    # With two samples, statistics over axis 0 would mix them: left to TVM.
    two, _, _ = _instance_norm_module((2, 6, 5, 16), [0, 1, 2])
    tvm.ir.assert_structural_equal(VectorizableGroupNorm()(two), two)
