"""Pointwise convs planned on their flattened positions (``conv2d.flat_spec``, opt-in with
``AIQ_FLAT_POINTWISE=1``): which layers get a flat plan, and the kernel's outputs (a last
register block running past the end, residual and activation fused) against numpy."""

import numpy as np
import pytest
import tvm

from aiq_tvm import testing
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.targets.x86.conv2d import conv_choice_for, flat_spec
from isa import ISA_TARGETS, requires_host

SKX = ISA_TARGETS["avx512bw"]


def test_flat_spec_is_one_row_per_image():
    assert flat_spec(ConvSpec(8, 14, 14, 1024, 256, 1, 1)) == ConvSpec(8, 1, 196, 1024, 256,
                                                                       1, 1)


@pytest.mark.parametrize("spec", [
    ConvSpec(1, 14, 14, 64, 64, 3, 3, padding=1),  # a window
    ConvSpec(1, 14, 14, 64, 128, 1, 1, stride=2),  # a stride skips positions
    ConvSpec(1, 14, 14, 64, 64, 1, 1, groups=4),  # groups
    ConvSpec(4, 1, 49, 64, 64, 1, 1),  # one row per image already
])
def test_flat_spec_leaves_other_layers(spec):
    assert flat_spec(spec) is None


@pytest.mark.parametrize("spec, tiles, ocb", [
    # 17 x 17: a row of 17 allowed 17 x 1 or 5-7-wide blocks with 1-4 dead columns per row.
    (ConvSpec(1, 17, 17, 768, 192, 1, 1), (1, 1, 5), 64),
    # 14 x 14 at batch 8: 4 x 4 blocks (2 x 2 positions) on rows; 6 x 4 on each image's 196.
    (ConvSpec(8, 14, 14, 1024, 256, 1, 1), (1, 1, 6), 64),
])
def test_flat_plans_where_rows_block_poorly(monkeypatch, spec, tiles, ocb):
    monkeypatch.setenv("AIQ_FLAT_POINTWISE", "1")
    plan = conv_choice_for(spec, "fp32", SKX).plan
    assert plan.flat and plan.tile.tiles == tiles and plan.tile.ocb == ocb
    assert plan.owp == -(-spec.H * spec.W // tiles[2]) * tiles[2]


def test_rows_kept_where_they_block_well(monkeypatch):
    monkeypatch.setenv("AIQ_FLAT_POINTWISE", "1")
    # Rows of 56 are wider than a register block, so no flat plan is offered: at 256 -> 64,
    # batch 8, flat 6 x 4 ran 0.91x alone and 0.78-0.87x in situ against 8 x 1 x 2 on rows.
    plan = conv_choice_for(ConvSpec(8, 56, 56, 256, 64, 1, 1), "fp32", SKX).plan
    assert not plan.flat and plan.tile.tiles == (1, 8, 1)


@pytest.mark.parametrize("scheme", ["int8", "w8"])
def test_integer_weights_stay_on_rows(monkeypatch, scheme):
    monkeypatch.setenv("AIQ_FLAT_POINTWISE", "1")
    # Only float32 weights were measured flat.
    plan = conv_choice_for(ConvSpec(1, 17, 17, 768, 192, 1, 1), scheme, SKX).plan
    assert not plan.flat


@pytest.mark.parametrize("level, spec", [
    # 289 positions per image: blocks of 2-16 run past the end (AVX-512: rows of 17 fit one).
    pytest.param("avx512bw", ConvSpec(2, 17, 17, 64, 48, 1, 1), id="avx512bw-17x17",
                 marks=requires_host(ISA_TARGETS["avx512bw"])),
    # 49 positions: blocks of 5 run past it (AVX2: 13 accumulators, rows of 7 fit one).
    pytest.param("avx2", ConvSpec(2, 7, 7, 64, 48, 1, 1), id="avx2-7x7",
                 marks=requires_host(ISA_TARGETS["avx2"])),
])
def test_flat_kernel_matches_numpy_with_a_ragged_last_block(monkeypatch, level, spec):
    monkeypatch.setenv("AIQ_FLAT_POINTWISE", "1")
    target = tvm.target.Target(ISA_TARGETS[level])
    plan = conv_choice_for(spec, "fp32", target).plan
    assert plan.flat and plan.owp > spec.H * spec.W  # each image's last block reads past
    rng = np.random.default_rng(0)
    w = rng.standard_normal(spec.weight_shape).astype("float32")
    b = rng.standard_normal(spec.O).astype("float32")
    x = rng.standard_normal(spec.in_shape).astype("float32")
    res = rng.standard_normal(spec.out_shape).astype("float32")
    k = conv2d_kernel(spec, "fp32", w, b, act="relu", residual=True, target=target)
    assert "_flat_" in k.info["schedule"]
    # The kernel takes the layer's own NHWC tensors.
    shapes = [tuple(int(d) for d in p.shape) for p in k.prim_func.params]
    assert shapes[0] == spec.in_shape and shapes[-2:] == [spec.out_shape] * 2
    args = testing.kernel_args(k, x, res)
    testing.compile_prim_func(k.prim_func, target).mod["main"](*args)
    ref = np.maximum(testing.reference(spec, "fp32", x, w, b).y + res, 0)
    np.testing.assert_allclose(args[-1].numpy(), ref, rtol=1e-5, atol=1e-4)


def test_flat_plans_are_opt_in(monkeypatch):
    layer = ConvSpec(1, 17, 17, 768, 192, 1, 1)
    monkeypatch.delenv("AIQ_FLAT_POINTWISE", raising=False)
    assert not conv_choice_for(layer, "fp32", SKX).plan.flat
    monkeypatch.setenv("AIQ_FLAT_POINTWISE", "0")
    assert not conv_choice_for(layer, "fp32", SKX).plan.flat
    monkeypatch.setenv("AIQ_FLAT_POINTWISE", "yes")
    with pytest.raises(ValueError, match="AIQ_FLAT_POINTWISE must be 0 or 1"):
        conv_choice_for(layer, "fp32", SKX)
