"""Host-side quantizers and numpy references (aiq_tvm.quant; pure numpy, no TVM)."""

from __future__ import annotations

import numpy as np
import pytest

from aiq_tvm import quant
from aiq_tvm.quant import ActQParams
from aiq_tvm.schemes import EPILOGUES, get_precision, precision_names


def _naive_conv(x, w, stride, padding, groups, pad_value):
    """Loop-by-loop NHWC conv in float64 (independent of the vectorized reference)."""
    n, h, wd, c = x.shape
    o, cpg, kh, kw = w.shape
    pt, pl, pb, pr = padding
    xp = np.full((n, h + pt + pb, wd + pl + pr, c), pad_value, np.float64)
    xp[:, pt : pt + h, pl : pl + wd] = x
    oh = (h + pt + pb - kh) // stride[0] + 1
    ow = (wd + pl + pr - kw) // stride[1] + 1
    y = np.zeros((n, oh, ow, o))
    opg = o // groups
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                for oc in range(o):
                    g = oc // opg
                    i0, j0 = i * stride[0], j * stride[1]
                    patch = xp[b, i0 : i0 + kh, j0 : j0 + kw]
                    patch = patch[:, :, g * cpg : (g + 1) * cpg]  # [kh, kw, cpg]
                    y[b, i, j, oc] = np.sum(patch * w[oc].transpose(1, 2, 0))
    return y


class TestActQParams:
    def test_typical_range(self):
        qp = ActQParams.from_range(-1.0, 3.0)
        assert qp.scale == pytest.approx(4.0 / 255)
        assert qp.zp == int(np.rint(1.0 / qp.scale))
        assert qp.inv == float(np.float32(1.0 / qp.scale))

    def test_range_not_containing_zero_is_widened(self):
        pos = ActQParams.from_range(0.5, 2.0)  # lo -> 0
        assert pos.zp == 0 and pos.scale == pytest.approx(2.0 / 255)
        neg = ActQParams.from_range(-3.0, -1.0)  # hi -> 0
        assert neg.zp == 255 and neg.scale == pytest.approx(3.0 / 255)
        # Real 0.0 is exactly representable in both.
        assert quant.quantize_act(np.zeros(3, np.float32), pos).tolist() == [0, 0, 0]
        assert quant.quantize_act(np.zeros(3, np.float32), neg).tolist() == [255] * 3

    def test_degenerate_range(self):
        qp = ActQParams.from_range(0.0, 0.0)
        assert (qp.scale, qp.zp, qp.inv) == (1.0, 0, 1.0)

    def test_quantize_act_ties_and_saturation(self):
        qp = ActQParams.from_range(-1.0, 1.0)
        inv = np.float32(qp.inv)
        ties = (np.arange(-10, 10) + 0.5).astype(np.float32)
        x = np.concatenate([ties / inv, np.float32([1e30, -1e30, np.inf, -np.inf, 7.0, -7.0])])
        x = x.astype(np.float32)
        expect = np.clip(np.rint(x * inv) + np.float32(qp.zp), 0, 255).astype(np.uint8)
        got = quant.quantize_act(x, qp)
        np.testing.assert_array_equal(got, expect)
        # Half-to-even on exact ties (x * inv is exactly k + 0.5 here).
        assert np.all(x[:20] * inv == ties)
        assert got[-6:].tolist() == [255, 0, 255, 0, 255, 0]

    def test_dequantize_roundtrip(self):
        qp = ActQParams.from_range(-2.0, 5.0)
        x = np.linspace(-2.0, 5.0, 101).astype(np.float32)
        back = quant.dequantize_act(quant.quantize_act(x, qp), qp)
        assert np.abs(back - x).max() <= qp.scale / 2 + 1e-6


class TestWeightQuantizers:
    def test_int8_per_channel(self):
        rng = np.random.default_rng(0)
        w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
        w[2] = 0.0
        q, s = quant.quantize_weight_int8(w)
        assert q.dtype == np.int8 and s.dtype == np.float32 and s.shape == (5,)
        assert s[2] == 1.0 and not q[2].any()
        for o in (0, 1, 3, 4):
            assert np.abs(q[o]).max() == 127
            assert s[o] == np.float32(np.abs(w[o]).max() / 127)
        err = np.abs(q.astype(np.float64) * s[:, None, None, None] - w)
        assert np.all(err <= s[:, None, None, None] / 2 + 1e-7)

    def test_int4_codes_in_range(self):
        rng = np.random.default_rng(1)
        w = rng.standard_normal((4, 37)).astype(np.float32)
        w[1] = 0.0
        q, s = quant.quantize_weight_int4(w)
        assert q.min() >= -7 and q.max() <= 7
        assert s[1] == 1.0 and not q[1].any()
        assert np.all(np.abs(q[[0, 2, 3]]).max(axis=1) == 7)

    @pytest.mark.parametrize("n", [1, 2, 7, 36])
    def test_pack_unpack_roundtrip(self, n):
        rng = np.random.default_rng(n)
        q = rng.integers(-8, 8, size=(3, n)).astype(np.int8)
        packed = quant.pack_int4(q)
        assert packed.dtype == np.uint8 and packed.shape == (3, (n + 1) // 2)
        np.testing.assert_array_equal(quant.unpack_int4(packed, n), q)

    def test_pack_nibble_order(self):
        packed = quant.pack_int4(np.array([-8, 7, 0], np.int8))
        # Low nibble = even index (code + 8); odd tail padded with code 0 (nibble 8).
        assert packed.tolist() == [0x00 | (15 << 4), 8 | (8 << 4)]

    def test_pack_rejects_out_of_range(self):
        with pytest.raises(ValueError):
            quant.pack_int4(np.array([9], np.int8))


class TestSchemeObjects:
    """Each PrecisionScheme owns its quantizer, epilogue kind and kernel constant names."""

    def test_epilogue_and_constant_names(self):
        kinds = {n: get_precision(n).epilogue for n in precision_names()}
        assert kinds == {"fp32": "float", "int8": "int", "int4": "int", "w8": "scale",
                         "w4": "scale"}  # fmt: skip
        for name, kind in kinds.items():
            names = get_precision(name).const_names(requant=True)
            assert names == ["weight", *EPILOGUES[kind], "out_q"]
        assert get_precision("int8").const_names() == ["weight", "corr", "comb", "bias"]

    @pytest.mark.parametrize("int8_qmax", [127, 63])
    def test_weight_qmax_depends_on_numerics_only_for_integer_dots(self, int8_qmax):
        assert get_precision("int8").weight_qmax(int8_qmax) == int8_qmax
        assert get_precision("int4").weight_qmax(int8_qmax) == 7
        assert get_precision("w8").weight_qmax(int8_qmax) == 127  # float accumulation
        assert get_precision("fp32").weight_qmax(int8_qmax) is None
        w = np.random.default_rng(0).standard_normal((6, 9)).astype(np.float32)
        q, s = get_precision("int8").quantize_weight(w, int8_qmax)
        assert np.all(np.abs(q).max(axis=1) == int8_qmax)
        np.testing.assert_array_equal(s, np.abs(w).max(axis=1) / np.float32(int8_qmax))
        with pytest.raises(ValueError, match="int8_qmax"):
            get_precision("int8").weight_qmax(200)

    def test_float_scheme_keeps_weights(self):
        w = np.ones((2, 3), np.float64)
        q, s = get_precision("fp32").quantize_weight(w)
        assert q.dtype == np.float32 and s is None

    def test_reference_uses_the_numerics_codes(self):
        rng = np.random.default_rng(7)
        x = rng.standard_normal((1, 4, 4, 8)).astype(np.float32)
        w = rng.standard_normal((5, 8, 1, 1)).astype(np.float32)
        qp = ActQParams.from_range(x.min(), x.max())
        qx = quant.quantize_act(x, qp)
        for qmax in (127, 63):
            r = quant.ref_conv2d(qx, w, None, "int8", act_qparams=qp, int8_qmax=qmax)
            q = get_precision("int8").quantize_weight(w, qmax)[0][:, :, 0, 0].astype(np.int64)
            expect = (qx.astype(np.int64) - qp.zp) @ q.T
            np.testing.assert_array_equal(r.acc, expect)

    def test_unknown_scheme_never_falls_through(self):
        with pytest.raises(ValueError, match="valid precisions"):
            quant.ref_dense(np.zeros((1, 2), np.float32), np.zeros((1, 2)), None, "int3")


class TestActivations:
    def test_parse(self):
        assert quant.parse_act("relu")[0] == "clip"
        assert quant.parse_act(("clip", -1, 2)) == ("clip", -1.0, 2.0)
        with pytest.raises(ValueError):
            quant.parse_act("gelu")
        with pytest.raises(ValueError):
            quant.parse_act(("clip", 2, 1))

    def test_apply(self):
        y = np.array([-7.0, -0.5, 0.5, 7.0])
        assert quant.apply_act(y, "none").tolist() == y.tolist()
        assert quant.apply_act(y, "relu").tolist() == [0, 0, 0.5, 7]
        assert quant.apply_act(y, "relu6").tolist() == [0, 0, 0.5, 6]
        assert quant.apply_act(y, ("clip", -1, 1)).tolist() == [-1, -0.5, 0.5, 1]


class TestReferences:
    @pytest.mark.parametrize(
        "stride,padding,groups",
        [((1, 1), (1, 1, 1, 1), 1), ((2, 1), (0, 1, 2, 0), 1), ((2, 2), (1, 1, 1, 1), 4)],
    )
    def test_fp32_matches_naive(self, stride, padding, groups):
        rng = np.random.default_rng(2)
        x = rng.standard_normal((2, 6, 5, 4)).astype(np.float32)
        w = rng.standard_normal((4, 4 // groups, 3, 3)).astype(np.float32)
        b = rng.standard_normal(4).astype(np.float32)
        r = quant.ref_conv2d(x, w, b, "fp32", stride=stride, padding=padding, groups=groups)
        np.testing.assert_allclose(r.y, _naive_conv(x, w, stride, padding, groups, 0.0) + b)
        assert r.acc is None

    @pytest.mark.parametrize("scheme", ["int8", "int4"])
    def test_int_accumulator_exact(self, scheme):
        rng = np.random.default_rng(3)
        x = rng.standard_normal((1, 5, 5, 3)).astype(np.float32)
        w = rng.standard_normal((6, 3, 3, 3)).astype(np.float32)
        qp = ActQParams.from_range(x.min(), x.max())
        qx = quant.quantize_act(x, qp)
        r = quant.ref_conv2d(qx, w, None, scheme, stride=(2, 2), padding=(1,) * 4, act_qparams=qp)
        qw = (quant.quantize_weight_int8 if scheme == "int8" else quant.quantize_weight_int4)(w)[0]
        raw = _naive_conv(qx.astype(np.float64), qw.astype(np.float64), (2, 2), (1,) * 4, 1, qp.zp)
        corr = qp.zp * qw.reshape(6, -1).astype(np.int64).sum(1)
        np.testing.assert_array_equal(r.acc, raw.astype(np.int64) - corr)
        # Float inputs are quantized by the reference itself.
        r2 = quant.ref_conv2d(x, w, None, scheme, stride=(2, 2), padding=(1,) * 4, act_qparams=qp)
        np.testing.assert_array_equal(r2.acc, r.acc)
        # Padding with zp means real 0.0: the dequantized result approximates the fp32 conv.
        f = quant.ref_conv2d(x, w, None, "fp32", stride=(2, 2), padding=(1,) * 4)
        tol = 0.05 if scheme == "int8" else 0.35
        assert np.abs(r.y - f.y).max() <= tol * np.abs(f.y).max()

    @pytest.mark.parametrize("scheme", ["w8", "w4"])
    def test_weight_only(self, scheme):
        rng = np.random.default_rng(4)
        x = rng.standard_normal((2, 4, 4, 8)).astype(np.float32)
        w = rng.standard_normal((5, 8, 1, 1)).astype(np.float32)
        b = rng.standard_normal(5).astype(np.float32)
        res = rng.standard_normal((2, 4, 4, 5)).astype(np.float32)
        r = quant.ref_conv2d(x, w, b, scheme, act="relu", residual=res)
        quantizer = quant.quantize_weight_int8 if scheme == "w8" else quant.quantize_weight_int4
        q, s = quantizer(w)
        expect = x.astype(np.float64) @ q[:, :, 0, 0].T.astype(np.float64) * s + b + res
        np.testing.assert_allclose(r.y, np.maximum(expect, 0), rtol=1e-12, atol=1e-12)

    def test_dense_equals_pointwise(self):
        rng = np.random.default_rng(5)
        x = rng.standard_normal((3, 11)).astype(np.float32)
        w = rng.standard_normal((7, 11)).astype(np.float32)
        qp = ActQParams.from_range(x.min(), x.max())
        for scheme in precision_names():
            d = quant.ref_dense(x, w, None, scheme, act="relu6", act_qparams=qp)
            c = quant.ref_conv2d(
                x.reshape(3, 1, 1, 11), w.reshape(7, 11, 1, 1), None, scheme, act="relu6",
                act_qparams=qp,
            )  # fmt: skip
            np.testing.assert_array_equal(d.y, c.y.reshape(3, 7))

    @pytest.mark.parametrize("scheme", precision_names())
    def test_out_qparams_codes(self, scheme):
        rng = np.random.default_rng(6)
        x = rng.standard_normal((2, 5, 5, 4)).astype(np.float32)
        w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
        b = rng.standard_normal(6).astype(np.float32)
        qp = ActQParams.from_range(x.min(), x.max())
        oq = ActQParams.from_range(-2.0, 3.0)
        kw = dict(padding=(1,) * 4, act="relu6", act_qparams=qp)
        plain = quant.ref_conv2d(x, w, b, scheme, **kw)
        r = quant.ref_conv2d(x, w, b, scheme, out_qparams=oq, **kw)
        assert plain.q is None
        np.testing.assert_array_equal(r.y, plain.y)
        assert r.q.dtype == np.uint8 and r.q.shape == r.y.shape
        np.testing.assert_array_equal(r.q, quant.quantize_act(r.y.astype(np.float32), oq))
        # relu6 output lies in [0, 6]: codes from zp (real 0) up to the code of 6.0.
        assert r.q.min() >= oq.zp and (r.q == oq.zp).any()
        assert r.q.max() <= quant.quantize_act(np.float32([6.0]), oq)[0]
        d = quant.ref_dense(x[:, 0, 0], w[:, :, 0, 0], b, scheme, act_qparams=qp, out_qparams=oq)
        np.testing.assert_array_equal(d.q, quant.quantize_act(d.y.astype(np.float32), oq))

    def test_errors(self):
        x = np.zeros((1, 2, 2, 1), np.float32)
        w = np.zeros((1, 1, 1, 1), np.float32)
        with pytest.raises(ValueError):
            quant.ref_conv2d(x, w, None, "int2")
        with pytest.raises(ValueError):
            quant.ref_conv2d(x, w, None, "int8")  # needs act_qparams
