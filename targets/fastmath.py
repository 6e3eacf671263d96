"""Float32 transcendental functions as TIR expressions built from vectorizable operations.

TVM lowers ``tirx.exp`` / ``tirx.sigmoid`` / ``tirx.erf`` to libm calls (``expf``, ``erff``),
one scalar call per element even in a vectorized loop. These builders give the same functions
as plain arithmetic (see :mod:`aiq_tvm.passes.vectorizable_math` for the accuracy): the pass
uses them for TVM's own elementwise kernels, the layer kernels' epilogues for a fused SiLU.
"""

from __future__ import annotations

import math

from tvm import tirx

__all__ = ["constant_power", "fast_erf", "fast_exp", "fast_gelu", "fast_gelu_tanh", "fast_log",
           "fast_sigmoid", "fast_silu", "fast_tanh"]

_EXP_MAX = 88.72283935546875  # log(FLT_MAX): above it expf overflows to inf
_EXP_MIN = -87.33654475055310  # log(FLT_MIN): below it the result would be subnormal
_LN2_HI, _LN2_LO = 0.693359375, -2.12194440e-4  # ln 2 = HI + LO, HI exact in 9 bits
# Cephes expf: exp(r) ~ 1 + r + r^2 * P(r) on |r| <= ln(2) / 2.
_P = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
      1.6666665459e-1, 5.0000001201e-1)


def _f32(v: float) -> tirx.FloatImm:
    return tirx.FloatImm("float32", v)


# Rational approximation of erf on [-4, 4] (beyond, erf is +-1 in float32): odd numerator,
# even denominator; the coefficients of Eigen's generic_fast_erf_float, as TOPI's fast_erf.
_ERF_NUM = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
            -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
            -1.60960333262415e-02)
_ERF_DEN = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
            -7.37332916720468e-03, -1.42647390514189e-02)


# Rational approximation of tanh on [-9, 9] (beyond, tanh is +-1 in float32): odd numerator of
# degree 13, even denominator of degree 6; Eigen's generic_fast_tanh_float, as TOPI's
# fast_tanh.
_TANH_NUM = (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11,
             5.12229709037114e-08, 1.48572235717979e-05, 6.37261928875436e-04,
             4.89352455891786e-03)
_TANH_DEN = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03,
             4.89352518554385e-03)


def _let(value: tirx.PrimExpr, body_fn, name: str = "v") -> tirx.PrimExpr:
    """``body_fn(var)`` with ``var`` bound to ``value``: a value the function reads several
    times is written once. :func:`fast_log` reads its reduced mantissa a dozen times (bound,
    its kernel ran 3 % faster); the other builders are plain expressions, which LLVM merges
    (bound, erf / tanh / GELU ran 4-5 % slower). A kernel's operand, which FuseTIR may
    replace by a producer's whole expression, is bound by the caller
    (``passes.vectorizable_math``)."""
    if isinstance(value, (tirx.Var, tirx.FloatImm, tirx.IntImm)):
        return body_fn(value)
    var = tirx.Var(name, value.ty)
    return tirx.Let(var, value, body_fn(var))


def _horner(coefs: tuple, v: tirx.PrimExpr) -> tirx.PrimExpr:
    acc = _f32(coefs[0])
    for c in coefs[1:]:
        acc = acc * v + _f32(c)
    return acc


def _odd_rational(x: tirx.PrimExpr, bound: float, num: tuple, den: tuple) -> tirx.PrimExpr:
    """``xc P(xc^2) / Q(xc^2)`` with ``xc = x`` clamped to [-bound, bound]; NaN kept. Plain
    expressions: LLVM merges the repeated subexpressions, and binding them to variables made
    the kernels 4-5 % slower (ConvNeXt's GELU)."""
    xc = tirx.Max(tirx.Min(x, _f32(bound)), _f32(-bound))
    x2 = xc * xc
    y = xc * _horner(num, x2) / _horner(den, x2)
    return tirx.Select(tirx.isnan(x), x, y)


def fast_erf(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """``erf(x)`` of a float32 expression, built from vectorizable operations."""
    return _odd_rational(x, 4.0, _ERF_NUM, _ERF_DEN)


def fast_tanh(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """``tanh(x)`` of a float32 expression, built from vectorizable operations."""
    return _odd_rational(x, 9.0, _TANH_NUM, _TANH_DEN)


def fast_gelu(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """``x * (1 + erf(x / sqrt(2))) / 2`` (``relax.nn.gelu``), with :func:`fast_erf`."""
    return _f32(0.5) * x * (_f32(1.0) + fast_erf(x * _f32(1.0 / math.sqrt(2.0))))


def fast_gelu_tanh(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """``x * (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) / 2`` (``relax.nn.gelu_tanh``,
    torch's ``GELU(approximate="tanh")``), with :func:`fast_tanh`."""
    inner = _f32(math.sqrt(2.0 / math.pi)) * (x + _f32(0.044715) * x * x * x)
    return _f32(0.5) * x * (_f32(1.0) + fast_tanh(inner))


def _reduce(xc: tirx.PrimExpr) -> tuple[tirx.PrimExpr, tirx.PrimExpr]:
    """``(n, exp(xc - n ln 2))`` with ``n = round(xc / ln 2)``: Cephes' range reduction and
    polynomial, shared by :func:`fast_exp` and :func:`_exp_core`."""
    n = tirx.floor(xc * _f32(1.0 / math.log(2.0)) + _f32(0.5))
    r = xc - n * _f32(_LN2_HI) - n * _f32(_LN2_LO)
    return n, _horner(_P, r) * r * r + r + _f32(1.0)


def _pow2(biased: tirx.PrimExpr) -> tirx.PrimExpr:
    """The float32 with exponent bits ``biased`` (1 .. 254) and a zero mantissa."""
    return tirx.reinterpret("float32", tirx.shift_left(biased, tirx.IntImm("int32", 23)))


def _exp_core(xc: tirx.PrimExpr) -> tirx.PrimExpr:
    """``exp(xc)`` for ``xc`` in [-87.34, 88.0]: no branches, selects or NaN handling."""
    n, mantissa = _reduce(xc)
    return mantissa * _pow2(tirx.Cast("int32", n) + 127)  # 2**n, n in -126 .. 127


def fast_exp(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """``exp(x)`` of a float32 expression, built from vectorizable operations."""
    n, mantissa = _reduce(tirx.Max(tirx.Min(x, _f32(_EXP_MAX)), _f32(_EXP_MIN)))
    # n runs from -126 to 128, and 2**128 has no float32: take one factor 2 out of it. The
    # test and the correction are float operations: in integers, Relax's TE conversion widened
    # them to int64 vectors (16-lane int64 compares and conversions), which made the exp
    # kernel 2.7x slower (328 against 122 us for 56 x 56 x 64 on haswell).
    over = n > _f32(127.0)
    biased = tirx.Cast("int32", n - tirx.Select(over, _f32(1.0), _f32(0.0))) + 127
    y = mantissa * tirx.Select(over, _f32(2.0), _f32(1.0)) * _pow2(biased)
    y = tirx.Select(x > _f32(_EXP_MAX), _f32(math.inf), y)
    y = tirx.Select(x < _f32(_EXP_MIN), _f32(0.0), y)
    return tirx.Select(tirx.isnan(x), x, y)


def fast_sigmoid(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """``1 / (1 + exp(-x))`` of a float32 expression, with :func:`fast_exp`."""
    return _f32(1.0) / (_f32(1.0) + fast_exp(-x))


# SiLU's exponential (see fast_silu): q0 + q1 r + ... + q5 r^5 ~ exp(r) on |r| <= ln(2) / 2, a
# minimax fit for relative error (scripts/fit_exp_polynomial.py --degree 5): 7.5e-8 exact,
# 2.1e-7 evaluated in float32 Horner steps. Cephes' degree 7 (_P) is two FMAs more per vector.
_Q = (1.0000001192092896, 0.9999997019767761, 0.49998894333839417, 0.16667574644088745,
      0.04191538318991661, 0.008297654800117016)
# Adding 1.5 * 2**23 + 127 to v (|v| < 2**22) rounds it to an integer n, and leaves n + 127 in
# the float's low mantissa bits: shifted left by 23, the biased exponent of 2**n.
_ROUND_SHIFT = 12583039.0  # 0x4B40007F


def _round(v: tirx.PrimExpr) -> tuple[tirx.PrimExpr, tirx.PrimExpr]:
    """``(v + _ROUND_SHIFT, round(v))``: the sum's bits and the rounded value as a float."""
    z = v + _f32(_ROUND_SHIFT)
    # The subtracted shift as reinterpreted bits, not the same FloatImm: TVM's simplifier
    # folds (v + c) - c to v for a float constant c, which would drop the rounding.
    shift_bits = tirx.reinterpret("float32", tirx.IntImm("int32", 0x4B40007F))
    return z, z - shift_bits


def fast_silu(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """``x * sigmoid(x)`` (SiLU, swish) as ``x / (1 + exp(-x))`` for fused epilogues: no
    selects; ``-x`` clamped to [-87.34, 88.0] (changes ``sigmoid`` by less than 1e-38), NaN
    propagates through the division. It runs once per output element of a layer, where it
    costs as much as a 1 x 1 conv's 24 multiply-adds, so every vector op counts (13 and one
    division, 22 with :func:`fast_exp`'s polynomial and reduction): ``-x`` is folded into the
    reduction and the polynomial's odd coefficients, ``n = round(-x / ln 2)`` and ``2**n``
    come from one addition (:func:`_round`), the polynomial is degree 5, ``1 + p 2**n``
    is one FMA and the quotient one division. Within 4 ulp on [-20, 20] and 1e-6 relative
    over [-120, 120] (tests/test_vectorizable_math.py)."""
    xc = tirx.Max(tirx.Min(x, _f32(-_EXP_MIN)), _f32(-88.0))
    z, n = _round(xc * _f32(-1.0 / math.log(2.0)))  # n = round(-xc / ln 2)
    r_neg = xc + n * _f32(_LN2_HI) + n * _f32(_LN2_LO)  # -(-xc - n ln 2), Cody-Waite
    p = _horner(tuple(c if k % 2 == 0 else -c for k, c in enumerate(_Q))[::-1], r_neg)
    pow2 = tirx.reinterpret("float32", tirx.shift_left(tirx.reinterpret("int32", z),
                                                       tirx.IntImm("int32", 23)))
    return x / (p * pow2 + _f32(1.0))


# Cephes logf: log(1 + f) ~ f - f^2 / 2 + f^3 P(f) on sqrt(1/2) - 1 <= f < sqrt(2) - 1.
_LOG_P = (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1,
          1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1,
          3.3333331174e-1)
_FLT_MIN = 1.1754943508222875e-38  # smallest normal float32
_SQRT_HALF = 0.707106781186547524


def _int32(v: int) -> tirx.IntImm:
    return tirx.IntImm("int32", v)


def fast_log(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """``log(x)`` of a float32 expression, built from vectorizable operations (Cephes' logf:
    ``x = m 2**e`` read from the float's bits, ``m`` in [sqrt(1/2), sqrt(2)), a degree-8
    polynomial for ``log(m)``, ``e ln 2`` added in two parts). Subnormal inputs are scaled by
    2**23 first; ``log(0) = -inf``, ``log(inf) = inf``, negative inputs and NaN give NaN, as
    IEEE ``logf``."""
    def at(xv):
        tiny = xv < _f32(_FLT_MIN)
        # Only float values are bound: Relax's TE conversion widens int32 variables to int64,
        # which would change the bit casts' widths.
        y = _let(tirx.Select(tiny, xv * _f32(8388608.0), xv),  # 2**23: subnormals to normal
                 lambda xs: _log_parts(tirx.reinterpret("int32", xs), tirx.Select(
                     tiny, _int32(-23 - 126), _int32(-126))), "xs")
        y = tirx.Select(xv == _f32(math.inf), xv, y)
        y = tirx.Select(xv == _f32(0.0), _f32(-math.inf), y)
        return tirx.Select(xv < _f32(0.0), _f32(math.nan), tirx.Select(tirx.isnan(xv), xv, y))
    return _let(x, at, "x")


def _log_parts(bits: tirx.PrimExpr, bias: tirx.PrimExpr) -> tirx.PrimExpr:
    """``log(m 2**e)`` for the float ``m`` in [0.5, 1) made of ``bits``' mantissa and ``e``
    its exponent field plus ``bias``."""
    e = tirx.shift_right(bits, _int32(23)) + bias
    m = tirx.reinterpret("float32", tirx.bitwise_or(tirx.bitwise_and(bits, _int32(0x007FFFFF)),
                                                    _int32(0x3F000000)))

    def at(mv):
        low = mv < _f32(_SQRT_HALF)
        f = tirx.Select(low, mv + mv, mv) - _f32(1.0)
        fe = tirx.Cast("float32", e - tirx.Select(low, _int32(1), _int32(0)))

        def poly(fv, fev):
            return _let(fv * fv, lambda z: fv + (fv * z * _horner(_LOG_P, fv)
                                                 + fev * _f32(_LN2_LO) - _f32(0.5) * z)
                        + fev * _f32(_LN2_HI), "z")
        return _let(f, lambda fv: _let(fe, lambda fev: poly(fv, fev), "fe"), "f")
    return _let(m, at, "m")


def _square(v: tirx.PrimExpr) -> tirx.PrimExpr:
    return v * v


# x ** c for the constants c with an exact vectorizable form: small integer powers as products
# (within 2 ulp of powf's correctly rounded result), 0.5 as a square root.
_POWERS = {
    1.0: lambda v: v,
    2.0: _square,
    3.0: lambda v: _square(v) * v,
    4.0: lambda v: _let(_square(v), _square, "x2"),
    -1.0: lambda v: _f32(1.0) / v,
    -2.0: lambda v: _f32(1.0) / _square(v),
    # torch's pow(x, 0.5) is sqrt(x) down to pow(-inf, 0.5) = NaN and pow(-0, 0.5) = -0
    # (C's powf gives +inf and +0 there).
    0.5: tirx.sqrt,
}


def constant_power(exponent: float):
    """The builder of ``x ** exponent`` (float32 ``x``) for an exponent in 1, 2, 3, 4, -1, -2,
    0.5, else None (TVM lowers a power to libm's scalar ``powf``)."""
    return _POWERS.get(exponent)
