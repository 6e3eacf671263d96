"""int8 Winograd F(2, 3) and F(4, 3) in int16 / int32 (targets/x86/winograd_int8.py):
bit-identical to the direct int8 kernel and the numpy reference (residual, requantized output,
odd sizes, channel counts off the vector width and the pair, zero point != 0, an F(4, 3)
output transform that wraps modulo 2**32) on every x86 level the host runs, the overflow
fallbacks, the instructions it uses, and when the library picks which."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

os.environ.setdefault("TVM_NUM_THREADS", "1")

from aiq_tvm import quant, testing  # noqa: E402
from aiq_tvm.quant import ActQParams  # noqa: E402
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel, cpu_model  # noqa: E402
from aiq_tvm.targets.x86 import winograd_int8 as wino8  # noqa: E402
from isa import HASWELL, ISA_TARGETS, ZNVER4, isa_params  # noqa: E402

SKYLAKE = ISA_TARGETS["avx512bw"]
CASES = [
    # (spec, act, residual: None / "f32" / "u8", requantized output)
    (ConvSpec(2, 7, 9, 13, 24, 3, 3, padding=1), "relu", "u8", True),
    (ConvSpec(1, 11, 6, 5, 16, 3, 3, padding=0), ("clip", -0.5, 1.0), "f32", False),
    (ConvSpec(1, 6, 10, 18, 8, 3, 3, padding=1), ("clip", -0.25, 0.5), None, True),
]


def _layer(spec, residual, seed):
    rng = np.random.default_rng(seed)
    x, w, b, res, qp = testing.layer_data(spec, rng, residual=residual is not None, offset=0.5)
    rq = None
    if residual == "u8":
        rq = ActQParams.from_range(float(res.min()), float(res.max()))
        res = quant.quantize_act(res, rq)
    return quant.quantize_act(x, qp), w, b, res, qp, rq


def _both(spec, w, b, target, m=2, scheme="int8", **kw):
    direct = conv2d_kernel(spec, scheme, w, b, target=target, winograd=False, **kw)
    wino = conv2d_kernel(spec, scheme, w, b, target=target, winograd=m, **kw)
    assert wino.info["algorithm"] == f"winograd_f{m}"
    # The direct kernel's interface, less the initial accumulator values only its own
    # accumulators start from (conv2d._corr_in_acc: short reductions on AVX-512).
    assert wino.info["params"] == [p for p in direct.info["params"] if p != "acc_init"]
    return direct, wino


@pytest.mark.parametrize("m", wino8.TILES)
@pytest.mark.parametrize("target", isa_params(("avx512_vnni", "avx512bw", "avx2", "ssse3",
                                               "sse")))
@pytest.mark.parametrize("spec,act,residual,requant", CASES, ids=["u8res_requant", "odd",
                                                                  "clip_requant"])
def test_bit_identical_to_direct(target, spec, act, residual, requant, m):
    xq, w, b, res, qp, rq = _layer(spec, residual, spec.C)
    assert qp.zp != 0
    direct, wino = _both(spec, w, b, target, m, act=act, act_qparams=qp,
                         residual=residual is not None, residual_qparams=rq,
                         out_qparams=qp if requant else None)  # fmt: skip
    y_direct = testing.run_kernel(direct, xq, target, residual=res)
    y_wino = testing.run_kernel(wino, xq, target, residual=res)
    assert y_wino.dtype == (np.uint8 if requant else np.float32)
    np.testing.assert_array_equal(y_wino, y_direct)


@pytest.mark.parametrize("m", wino8.TILES)
@pytest.mark.parametrize("target", isa_params(("avx512_vnni", "avx2", "ssse3", "sse")))
def test_int4_codes_bit_identical_to_direct(target, m):
    """int4 layers run the same int16 Winograd kernels on their 4-bit codes."""
    spec, act, residual, requant = CASES[0]
    xq, w, b, res, qp, rq = _layer(spec, residual, 7)
    direct, wino = _both(spec, w, b, target, m, "int4", act=act, act_qparams=qp,
                         residual=True, residual_qparams=rq, out_qparams=qp)  # fmt: skip
    y_wino = testing.run_kernel(wino, xq, target, residual=res)
    np.testing.assert_array_equal(y_wino, testing.run_kernel(direct, xq, target, residual=res))


@pytest.mark.parametrize("m", wino8.TILES)
@pytest.mark.parametrize("target", isa_params(("avx2", "ssse3")))
def test_accumulator_is_the_direct_one(target, m):
    """debug_acc: the int32 ``acc - corr`` itself (``Y / 2**shift`` with corr = 0), equal to
    the numpy reference's."""
    spec = ConvSpec(1, 6, 5, 34, 8, 3, 3, padding=1)
    xq, w, b, _, qp, _ = _layer(spec, None, 1)
    direct, wino = _both(spec, w, b, target, m, act_qparams=qp, debug_acc=True)
    ref = testing.reference(spec, "int8", testing.layer_data(spec, np.random.default_rng(1),
                            offset=0.5)[0], w, b, act_qparams=qp, target=target)  # fmt: skip
    acc = testing.run_kernel(wino, xq, target)
    np.testing.assert_array_equal(acc, testing.run_kernel(direct, xq, target))
    np.testing.assert_array_equal(acc, ref.acc)


@pytest.mark.parametrize("m", wino8.TILES)
@pytest.mark.parametrize("target", isa_params(("avx2",)))
def test_full_range_codes_match_the_exact_path(target, m):
    """8-bit codes of a VNNI numerics target (|q| <= 127) on a vpmaddubsw target: the direct
    kernel takes the exact 32-bit path, Winograd (|U| <= 1143 for F(2, 3), 6223 for F(4, 3)
    in int16) matches it."""
    spec = ConvSpec(1, 8, 7, 16, 16, 3, 3, padding=1)
    xq, w, b, _, qp, _ = _layer(spec, None, 2)
    direct, wino = _both(spec, w, b, target, m, act="relu", act_qparams=qp,
                         numerics_target=ZNVER4)  # fmt: skip
    assert wino.info["weight_qmax"] == 127
    np.testing.assert_array_equal(testing.run_kernel(wino, xq, target),
                                  testing.run_kernel(direct, xq, target))  # fmt: skip


def _asm(kernel, target) -> str:
    mod = testing.compile_prim_func(kernel.prim_func, target).mod
    return "".join(m.inspect_source("asm") for m in [mod, *getattr(mod, "imports", [])])


@pytest.mark.parametrize("target,instr,reg", [(HASWELL, "vpmaddwd", "ymm"),
                                              (SKYLAKE, "vpmaddwd", "zmm"),
                                              (ZNVER4, "vpdpwssd", "zmm")])  # fmt: skip
def test_gemm_instructions(target, instr, reg):
    """Compiled (not run): the GEMM is the 16-bit pair multiply-add of the target."""
    spec = ConvSpec(1, 8, 8, 16, 16, 3, 3, padding=1)
    rng = np.random.default_rng(0)
    w = rng.standard_normal(spec.weight_shape).astype(np.float32)
    k = conv2d_kernel(spec, "int8", w, None, target=target, winograd=True,
                      act_qparams=ActQParams.from_range(-1.0, 1.0))  # fmt: skip
    asm = _asm(k, target)
    # The pair broadcast may be folded into a memory operand ("(%rsi){1to16}").
    assert re.search(rf"\t{instr}\t[^\n]*%{reg}", asm)
    assert "vpmaddubsw" not in asm and "vpdpbusd" not in asm


@pytest.mark.parametrize("tile", wino8.TILES.values(), ids=lambda t: f"f{t.m}")
def test_transform_is_exact_in_integers(tile):
    """at [(g w g^T) * (B^T d B)] at^T is 2**shift * odd x the 3x3 correlation of every tile
    (F(2, 3): 4; F(4, 3): 576), all factors integer."""
    rng = np.random.default_rng(0)
    bt = wino8.matrices(tile.m)[0].astype(np.int64)
    d = rng.integers(-255, 256, (tile.alpha, tile.alpha))
    w = rng.integers(-127, 128, (3, 3))
    y = tile.at @ ((tile.g @ w @ tile.g.T) * (bt @ d @ bt.T)) @ tile.at.T
    ref = [[np.sum(d[i:i + 3, j:j + 3] * w) for j in range(tile.m)] for i in range(tile.m)]
    np.testing.assert_array_equal(y, 2**tile.shift * tile.odd * np.array(ref))
    assert (tile.odd * tile.odd_inverse) % 2**32 == 1
    assert np.abs(tile.g).sum(axis=1).max() ** 2 * 127 < 2**15  # |U| fits int16
    assert np.abs(bt).sum(axis=1).max() ** 2 * 255 < 2**15  # |V| fits int16


def test_overflow_guard():
    """Layers whose transformed values could exceed int32 stay direct (F(2, 3)); F(4, 3)
    also needs every GEMM sum and |Y| < 2**25 within bounds."""
    small = wino8.transform_weight(np.full((8, 64, 3, 3), 63, np.int8), 8)
    big = wino8.transform_weight(np.full((8, 1024, 3, 3), 127, np.int8), 8)
    assert np.abs(big).max() == 9 * 127
    assert wino8.fits_int32(small, 128) and not wino8.fits_int32(big, 0)
    q = np.full((8, 64, 3, 3), 127, np.int8)  # fits F(2, 3), not F(4, 3)'s GEMM
    assert wino8.fits(wino8.F2, wino8.transform_weight(q, 8), q, 0)
    assert not wino8.fits(wino8.F4, wino8.transform_weight(q, 8, wino8.F4), q, 0)
    q = np.full((8, 24, 3, 3), 127, np.int8)  # 24 channels fit
    assert wino8.fits(wino8.F4, wino8.transform_weight(q, 8, wino8.F4), q, 0)
    # |Y| <= 255 * 9 * 127 * C < 2**25 up to C = 115.
    assert wino8.output_fits(wino8.F4, np.full((8, 115, 3, 3), 127, np.int8), 0)
    assert not wino8.output_fits(wino8.F4, np.full((8, 116, 3, 3), 127, np.int8), 0)


@pytest.mark.parametrize("target", isa_params(("avx2",)))
def test_f4_overflow_falls_back_to_f2(target):
    """Forced F(4, 3) on a layer past its GEMM bound (96 channels of code 127): F(2, 3),
    still bit-identical to the direct kernel."""
    spec = ConvSpec(1, 6, 6, 96, 16, 3, 3, padding=1)
    xq, _, b, _, qp, _ = _layer(spec, None, 3)
    w = np.full(spec.weight_shape, 0.5, np.float32)
    kw = dict(target=target, act_qparams=qp, numerics_target=ZNVER4)
    wino = conv2d_kernel(spec, "int8", w, b, winograd=4, **kw)
    assert wino.info["algorithm"] == "winograd_f2"
    direct = conv2d_kernel(spec, "int8", w, b, winograd=False, **kw)
    np.testing.assert_array_equal(testing.run_kernel(wino, xq, target),
                                  testing.run_kernel(direct, xq, target))  # fmt: skip


@pytest.mark.parametrize("target", isa_params(("avx512bw", "avx2", "ssse3", "sse")))
def test_f4_output_transform_wraps(target):
    """Inputs near the top code with zp = 0 and weight codes near 63 over 40 channels:
    576 |Y| passes 2**31, so the output transform wraps modulo 2**32, and the accumulator
    is still the numpy reference's."""
    spec = ConvSpec(1, 8, 8, 40, 16, 3, 3, padding=1)
    rng = np.random.default_rng(4)
    x = rng.uniform(0.9, 1.0, spec.in_shape).astype(np.float32)
    w = rng.uniform(0.8, 1.0, spec.weight_shape).astype(np.float32)
    qp = ActQParams.from_range(0.0, 1.0)
    assert qp.zp == 0
    direct, wino = _both(spec, w, None, target, 4, act_qparams=qp, debug_acc=True)
    ref = testing.reference(spec, "int8", x, w, None, act_qparams=qp, target=target)
    assert 576 * np.abs(ref.acc).max() >= 2**31
    acc = testing.run_kernel(wino, quant.quantize_act(x, qp), target)
    np.testing.assert_array_equal(acc, ref.acc)


def _choice(spec, target, scheme="int8"):
    from aiq_tvm.targets.x86 import conv2d as conv_mod
    from aiq_tvm.targets.x86.layer import layer_args

    cpu = cpu_model(target)
    w = np.zeros(spec.weight_shape, np.float32)
    args = layer_args(scheme, w, spec.weight_shape, None, act="none",
                      act_qparams=ActQParams.from_range(-1.0, 1.0), out_qparams=None,
                      debug_acc=False, target=target, numerics_target=None)  # fmt: skip
    fmt = cpu.weight_formats(args.scheme, args.qmax, 9 * spec.C, False)[0]
    return conv_mod._winograd_choice(spec, args, fmt, None, cpu, None, None, 0)


def test_selection(monkeypatch):
    """vpmaddwd targets take F(4, 3) for ResNet-20's 3x3 layers at batch 16 (not the
    3-channel stem), int4 layers too; AVX-512 VNNI targets keep the direct vpdpbusd kernel at
    batch 1 and for the 16-channel layer, take F(4, 3) for its 32- and 64-channel layers at
    batch 16 (since the two-pass transforms are priced as such, session 38: on Zen 4 F(4, 3)
    ran 1.05-1.39x faster than direct there, see ``VPDPWSSD_MARGIN``) and at ResNet-18's
    28x28x128; AIQ_WINOGRAD=0 turns it off, 2 / 4 restrict the tile edge."""
    monkeypatch.delenv("AIQ_WINOGRAD", raising=False)
    # (At batch 1 on two cores the 8x8 layer has too few tile rows per thread: direct.)
    resnet20 = [ConvSpec(n, hw, hw, c, c, 3, 3, padding=1)
                for n, hw, c in ((1, 32, 16), (1, 16, 32), (16, 32, 16), (16, 16, 32),
                                 (16, 8, 64))]  # fmt: skip
    for target in (HASWELL, SKYLAKE):
        assert all(_choice(s, target) is not None for s in resnet20)
        assert all(_choice(s, target).m == 4 for s in resnet20[2:])
        assert _choice(ConvSpec(16, 32, 32, 3, 16, 3, 3, padding=1), target) is None
        # int4 codes take the int8 layers' Winograd kernel (same int16 U, no slower plan).
        assert all(_choice(s, target, "int4").m == _choice(s, target).m for s in resnet20[2:])
    assert all(_choice(s, ZNVER4) is None for s in resnet20[:3])
    assert all(_choice(s, ZNVER4).m == 4 for s in resnet20[3:])
    assert _choice(ConvSpec(1, 28, 28, 128, 128, 3, 3, padding=1), ZNVER4).m == 4
    monkeypatch.setenv("AIQ_WINOGRAD", "0")
    assert _choice(resnet20[0], HASWELL) is None
    for m in wino8.TILES:
        monkeypatch.setenv("AIQ_WINOGRAD", str(m))
        assert _choice(resnet20[3], HASWELL).m == m


def test_two_pass_transforms_and_the_odd_multiply_are_priced():
    """The int16 kernel computes F(4, 3)'s input transform and every output transform in two
    passes (rows, then columns), and the model counts them so: per tile and channel vector
    one op per non-zero of B^T (22) per column in each pass, 2 * 6 * 22 = 264 for F(4, 3)'s
    input, and of A^T (18) per column and then per output row, (6 + 4) * 18 = 180, where the
    one-pass fp32 kernel's Kronecker products are 22**2 = 484 and 18**2 = 324; F(2, 3)'s
    one-pass input keeps 8**2 = 64 and its output 36 either way. F(4, 3)'s output ends with a
    multiply per pixel (16 per tile): one pmulld, or EMULATED_MULLD_OPS without SSE4.1."""
    from aiq_tvm.targets.x86 import winograd as wino

    for arith in (wino8.PMADDWD_ARITH, wino8.VPDPWSSD_ARITH):
        assert wino.transform_ops(4, arith) == (264, 180 + 16)
        assert wino.transform_ops(2, arith) == (64, 36)
    assert wino.transform_ops(4, wino.FP32_ARITH) == (484, 324)
    assert wino.transform_ops(2, wino.FP32_ARITH) == (64, 36)
    sse2, sse41 = (cpu_model(ISA_TARGETS[level]) for level in ("sse", "ssse3"))
    assert "sse4.1" not in sse2.caps.features and "sse4.1" in sse41.caps.features
    assert wino.transform_ops(4, wino8.arith(sse2), sse2)[1] == 180 + 16 * wino.EMULATED_MULLD_OPS
    assert wino.transform_ops(4, wino8.arith(sse41), sse41)[1] == 180 + 16
    # ResNet-20's 3 -> 16 stem at batch 16 on the SSE2 baseline: F(2, 3), the fastest of the
    # three there (0.291 ms against F(4, 3)'s 0.335 and direct's 0.478).
    assert _choice(ConvSpec(16, 32, 32, 3, 16, 3, 3, padding=1), ISA_TARGETS["sse"]).m == 2


def test_resnet20_8x8_layer_takes_f4_on_pmaddwd_targets():
    """ResNet-20's 64 -> 64 layer at 8 x 8, batch 16: U of F(4, 3) is 288 KiB of int16, within
    half of a 1 MiB L2, so it is not priced as re-read per image and the model puts F(4, 3)
    well below F(2, 3) (it ran 1.47x faster on skylake-avx512 code, and the model had put
    them level: docs/runs/s38/wino_tiles_skx16.txt)."""
    import dataclasses

    from aiq_tvm.targets.x86 import winograd as wino

    spec = ConvSpec(16, 8, 8, 64, 64, 3, 3, padding=1)
    for target in (HASWELL, SKYLAKE):
        cpu = cpu_model(target)
        cpu = dataclasses.replace(cpu, caps=dataclasses.replace(cpu.caps, l2_bytes=1 << 20))
        f2, f4 = (wino.winograd_plan(spec, cpu, (m,), wino8.arith(cpu)) for m in (2, 4))
        assert f4.reread == 0.0 and f4.cost * wino8.F4_MARGIN < f2.cost
        assert wino8.winograd_plan(spec, cpu, (2, 4)).m == 4
