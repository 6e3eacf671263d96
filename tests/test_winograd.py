"""fp32 Winograd conv2d F(2, 3) / F(4, 3): numerics vs the numpy reference (bias, residual,
activations, padding 1 and 0, odd sizes that need tile padding, channel counts that are not
a multiple of the vector), and when the library picks it."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TVM_NUM_THREADS", "2")

from aiq_tvm import quant, testing  # noqa: E402
from aiq_tvm.quant import ActQParams  # noqa: E402
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel  # noqa: E402
from aiq_tvm.targets.x86 import winograd as wino  # noqa: E402
from isa import BEST_X86, HASWELL, ISA_TARGETS, requires_host  # noqa: E402

CASES = [
    # (spec, act, residual, tile edge)
    (ConvSpec(2, 7, 9, 16, 10, 3, 3, padding=1), "relu", True, 2),
    (ConvSpec(1, 11, 6, 5, 24, 3, 3, padding=0), ("clip", -0.5, 1.0), False, 4),
    (ConvSpec(1, 9, 13, 24, 16, 3, 3, padding=1), "none", True, 4),
    (ConvSpec(2, 6, 6, 8, 40, 3, 3, padding=(1, 0, 1, 0)), "relu6", False, 2),
]


@requires_host(HASWELL)
@pytest.mark.parametrize("spec,act,residual,m", CASES, ids=lambda v: str(v)[:40])
def test_winograd_matches_reference(spec, act, residual, m):
    rng = np.random.default_rng(m + spec.C)
    x, w, b, res, _ = testing.layer_data(spec, rng, residual=residual)
    k = conv2d_kernel(spec, "fp32", w, b, act=act, residual=residual, target=HASWELL,
                      winograd=m)  # fmt: skip
    assert k.info["algorithm"] == f"winograd_f{m}"
    assert k.info["params"] == ["x", "weight", "bias"] + (["residual"] if residual else []) + [
        "y"
    ]
    y = testing.run_kernel(k, x, HASWELL, residual=res)
    ref = testing.reference(spec, "fp32", x, w, b, act=act, residual=res).y
    assert y.shape == spec.out_shape
    # F(4, 3) multiplies by up to 8 in the transforms: a few ulps more than the direct kernel.
    assert testing.relative_error(y, ref) < (2e-6 if m == 2 else 1e-5)


@requires_host(HASWELL)
def test_winograd_uint8_residual():
    """A shortcut its producer requantized to uint8 is dequantized in the epilogue."""
    spec = ConvSpec(1, 8, 8, 8, 16, 3, 3, padding=1)
    rng = np.random.default_rng(3)
    x, w, b, res, _ = testing.layer_data(spec, rng, residual=True)
    rq = ActQParams.from_range(float(res.min()), float(res.max()))
    codes = quant.quantize_act(res, rq)
    k = conv2d_kernel(spec, "fp32", w, b, act="relu", residual=True, residual_qparams=rq,
                      target=HASWELL, winograd=4)  # fmt: skip
    y = testing.run_kernel(k, x, HASWELL, residual=codes)
    deq = (codes.astype(np.float32) - rq.zp) * np.float32(rq.scale)
    ref = testing.reference(spec, "fp32", x, w, b, act="relu", residual=deq).y
    assert testing.relative_error(y, ref) < 1e-5


def test_weight_transform_is_exact_in_float64():
    """A^T [(G w G^T) * (B^T d B)] A is the 3x3 correlation of every tile."""
    rng = np.random.default_rng(0)
    for m in wino.TILE_SIZES:
        bt, g, at = wino.matrices(m)
        d = rng.standard_normal((m + 2, m + 2))
        w = rng.standard_normal((3, 3))
        y = at @ ((g @ w @ g.T) * (bt @ d @ bt.T)) @ at.T
        ref = np.array([[np.sum(d[i:i + 3, j:j + 3] * w) for j in range(m)] for i in range(m)])
        np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


def _cpu():
    from aiq_tvm.targets.x86 import cpu_model

    return cpu_model(BEST_X86)


def test_selection(monkeypatch):
    """Winograd where the cost model says it wins (ResNet 3x3 stride-1 layers), direct for
    other shapes, other precisions, or when turned off."""
    from aiq_tvm.targets.x86 import conv2d as conv_mod
    from aiq_tvm.targets.x86.layer import layer_args

    monkeypatch.delenv("AIQ_WINOGRAD", raising=False)
    cpu = _cpu()

    def choice(spec, scheme="fp32", winograd=None):
        w = np.zeros(spec.weight_shape, np.float32)
        args = layer_args(scheme, w, spec.weight_shape, None, act="none",
                          act_qparams=ActQParams.from_range(-1.0, 1.0), out_qparams=None,
                          debug_acc=False, target=BEST_X86, numerics_target=None)  # fmt: skip
        fmt = cpu.weight_formats(args.scheme, args.qmax, 9 * spec.C, False)[0]
        return conv_mod._winograd_choice(spec, args, fmt, None, cpu, winograd, None, 0)

    resnet = [ConvSpec(n, hw, hw, c, c, 3, 3, padding=1)
              for n in (1, 8) for hw, c in ((56, 64), (28, 128), (14, 256))]  # fmt: skip
    assert all(choice(s) is not None for s in resnet)
    assert choice(resnet[0], winograd=False) is None
    # int8: F(4, 3) in int16 (vpmaddwd, or vpdpwssd where it beats vpdpbusd, winograd_int8.py);
    # int4 codes take the same kernel.
    assert choice(resnet[0], "int8").m == 4 and choice(resnet[0], "int4").m == 4
    assert choice(resnet[0], "w8") is None
    assert choice(ConvSpec(1, 56, 56, 64, 64, 3, 3, stride=2, padding=1)) is None
    assert choice(ConvSpec(1, 56, 56, 64, 64, 1, 1)) is None
    assert choice(ConvSpec(1, 4, 4, 8, 8, 3, 3, padding=1)) is None  # too small to pay off
    monkeypatch.setenv("AIQ_WINOGRAD", "0")
    assert choice(resnet[0]) is None
    monkeypatch.setenv("AIQ_WINOGRAD", "2")
    assert choice(resnet[0]).m == 2


SKX = ISA_TARGETS["avx512bw"]


def test_wide_layers_read_their_transformed_weights_in_few_passes():
    """Every group of tile rows (a pass over all output channels) reads all of U again; where a
    core's part of U exceeds half its L2 (``cached_weight_bytes``) the passes after the first
    are priced at the stream rate. VGG-16's 3x3 512 -> 512 at 28 x 28 then takes F(2, 3) in
    passes of 2 tile rows, its fastest plan measured in a cold cache (7.6 ms against 14.6 ms
    for the F(4, 3) plan of one tile row and 32 channels per task chosen before:
    docs/runs/s31/wino_fit.txt)."""
    from aiq_tvm.targets.x86 import cpu_model

    cpu = cpu_model(SKX)
    vgg = ConvSpec(1, 28, 28, 512, 512, 3, 3, padding=1)
    plan = wino.winograd_plan(vgg, cpu)
    assert (plan.m, plan.ocb, plan.tiles, plan.rows, plan.kgroup) == (2, 32, 7, 2, 64)
    compute, u_bytes, reread = wino.winograd_parts(vgg, 2, 7, 1, 1, 16, cpu)
    assert u_bytes == 16 * 512 * 512 * 4
    passes = 14  # one tile row per task
    assert reread == (passes - 1) * u_bytes / (wino.WEIGHT_STREAM_BYTES_PER_CYCLE * 2)
    assert plan.cost >= wino.weight_read_cycles(plan.weight_bytes) + plan.reread
    small = ConvSpec(1, 14, 14, 16, 16, 3, 3, padding=1)  # U stays in cache
    assert wino.winograd_parts(small, 2, 7, 1, 1, 16, cpu)[2] == 0.0
    # Channel groups small enough to cache one slice do not escape: the other groups' slices
    # pass through the core between an image's pass and the next one's.
    two_images = ConvSpec(2, 7, 7, 256, 256, 3, 3, padding=1)
    assert wino.winograd_parts(two_images, 2, 4, 1, 4, 16, cpu)[2] > 0.0


def test_the_plan_is_the_cheapest_the_planner_weighs():
    """``winograd_plans`` lists every candidate with its cost and ``winograd_plan`` picks the
    cheapest (the first of equal costs); ResNet-20's 3x3 32 -> 32 at 16 x 16, batch 16: both
    tile edges and, for F(4, 3), register blocks of every tile count dividing a row of its 4
    tiles."""
    from aiq_tvm.targets.x86 import cpu_model

    cpu = cpu_model(SKX)
    spec = ConvSpec(16, 16, 16, 32, 32, 3, 3, padding=1)
    plans = list(wino.winograd_plans(spec, cpu))
    assert {p.m for p in plans} == set(wino.TILE_SIZES)
    assert {p.tiles for p in plans if p.m == 4} == {1, 2, 4}
    cheapest = min(p.cost for p in plans)
    assert wino.winograd_plan(spec, cpu) == next(p for p in plans if p.cost == cheapest)
    assert wino.winograd_plan(spec, cpu, tile_sizes=()) is None


@requires_host(SKX)
def test_copy_out_in_channel_vectors(monkeypatch):
    """A register block of 3 channel vectors is copied out one 16-lane vector at a time: a
    copy vectorized over all 48 channels made LLVM keep the accumulators as scalars (8.4x
    slower, docs/runs/s31/copyout.txt). Outputs as the reference."""
    spec = ConvSpec(1, 11, 11, 48, 48, 3, 3, padding=1)
    plan = wino.WinoPlan(m=4, tiles=3, ocv=3, lanes=16, rows=1, kgroup=48, cost=0.0)
    monkeypatch.setattr(wino, "winograd_plan", lambda *a, **k: plan)
    rng = np.random.default_rng(5)
    x, w, b, _, _ = testing.layer_data(spec, rng)
    k = conv2d_kernel(spec, "fp32", w, b, act="relu", target=SKX, winograd=True)
    assert k.info["schedule"] == "nhwc_winograd_f4_oc48_tile3_rows1_k48"
    script = k.prim_func.script()
    copy_loop = script[: script.index('T.sblock("acc_global")')].rsplit("T.vectorized(", 1)[1]
    assert copy_loop.startswith("16)")
    y = testing.run_kernel(k, x, SKX)
    ref = testing.reference(spec, "fp32", x, w, b, act="relu").y
    assert testing.relative_error(y, ref) < 1e-5


def test_transformed_weights_stay_cached_within_half_the_l2():
    """A core's part of U is re-read per pass only above half its L2 (the target's): 3x3
    96 -> 96 at 14 x 14, F(4, 3) in fp32 holds 1.3 MB of U, 648 KiB per core in two channel
    groups on two cores: re-read with a 1 MiB L2, cached with 2 MiB."""
    import dataclasses

    from aiq_tvm.targets.x86 import cpu_model

    spec = ConvSpec(8, 14, 14, 96, 96, 3, 3, padding=1)
    cpu = cpu_model(SKX)
    assert cpu.threads == 2

    def reread(l2_bytes):
        c = dataclasses.replace(cpu, caps=dataclasses.replace(cpu.caps, l2_bytes=l2_bytes))
        assert wino.cached_weight_bytes(c) == l2_bytes / 2
        return wino.winograd_parts(spec, 4, 4, 1, 1, 48, c)[2]  # two channel groups

    assert reread(1 << 20) > 0.0
    assert reread(2 << 20) == 0.0
