"""VectorizableMath: float32 sigmoid, SiLU, exp, erf and GELU as arithmetic LLVM vectorizes.

TVM legalizes ``relax.sigmoid`` / ``relax.nn.silu`` / ``relax.exp`` / ``relax.nn.gelu`` to
``tirx.sigmoid``, ``tirx.exp`` and ``tirx.erf``, which the LLVM backend lowers to libm's
``expf`` / ``erff``: one scalar call per element, even inside a loop ScheduleGlue vectorized.
EfficientNet-B0 applies SiLU or a sigmoid 65 times,
mostly to 56 x 56 to 112 x 112 maps, and those calls took 51 of the 61 ms its FP32 kernels ran
per inference (one thread, 224 x 224, ``scripts/profile_insitu.py``).

This pass legalizes those float32 calls itself, before ``LegalizeOps``, into TE kernels whose
exponential is Cephes' ``expf`` algorithm (TOPI's ``fast_exp`` uses the same): ``n =
round(x / ln 2)``, ``r = x - n ln 2`` in two parts, a degree-6 polynomial for ``exp(r)`` and
``2**n`` written straight into the float's exponent bits. Every step is a plain vector
instruction, and the result is within a few ulp of ``expf`` (tests/test_vectorizable_math.py
measures it against float64). Range as IEEE float32: ``exp(x)`` is ``inf`` above 88.72 and, a
difference, ``0`` below -87.34, where the true value is a subnormal (below 1.2e-38); NaN stays
NaN. ``sigmoid(x) = 1 / (1 + exp(-x))`` and ``silu(x) = x * sigmoid(x)`` inherit it. ``erf``
is a rational function on [-4, 4] (erf is +-1 in float32 beyond; TOPI's ``fast_erf`` uses the
same coefficients) and ``gelu(x) = x (1 + erf(x / sqrt 2)) / 2``, as TVM writes it.

Calls of other dtypes, and every other operator, are left as they are.
"""

from __future__ import annotations

import math

import tvm
from tvm import relax, te, tirx
from tvm.relax.expr_functor import PyExprMutator, mutator

__all__ = ["VectorizableMath", "fast_erf", "fast_exp", "fast_gelu", "fast_sigmoid"]

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


def _horner(coefs: tuple, v: tirx.PrimExpr) -> tirx.PrimExpr:
    acc = _f32(coefs[0])
    for c in coefs[1:]:
        acc = acc * v + _f32(c)
    return acc


def fast_erf(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """``erf(x)`` of a float32 expression, built from vectorizable operations."""
    xc = tirx.Max(tirx.Min(x, _f32(4.0)), _f32(-4.0))
    x2 = xc * xc
    y = xc * _horner(_ERF_NUM, x2) / _horner(_ERF_DEN, x2)
    return tirx.Select(tirx.isnan(x), x, y)


def fast_gelu(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """``x * (1 + erf(x / sqrt(2))) / 2`` (``relax.nn.gelu``), with :func:`fast_erf`."""
    return _f32(0.5) * x * (_f32(1.0) + fast_erf(x * _f32(1.0 / math.sqrt(2.0))))


def fast_exp(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """``exp(x)`` of a float32 expression, built from vectorizable operations."""
    xc = tirx.Max(tirx.Min(x, _f32(_EXP_MAX)), _f32(_EXP_MIN))
    n = tirx.floor(xc * _f32(1.0 / math.log(2.0)) + _f32(0.5))
    r = xc - n * _f32(_LN2_HI) - n * _f32(_LN2_LO)
    mantissa = _horner(_P, r) * r * r + r + _f32(1.0)
    # n runs from -126 to 128, and 2**128 has no float32: take one factor 2 out of it.
    ni = tirx.Cast("int32", n)
    over = ni > tirx.IntImm("int32", 127)
    biased = ni - tirx.Select(over, tirx.IntImm("int32", 1), tirx.IntImm("int32", 0)) + 127
    two_n = tirx.reinterpret("float32", tirx.shift_left(biased, tirx.IntImm("int32", 23)))
    y = mantissa * tirx.Select(over, _f32(2.0), _f32(1.0)) * two_n
    y = tirx.Select(x > _f32(_EXP_MAX), _f32(math.inf), y)
    y = tirx.Select(x < _f32(_EXP_MIN), _f32(0.0), y)
    return tirx.Select(tirx.isnan(x), x, y)


def fast_sigmoid(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """``1 / (1 + exp(-x))`` of a float32 expression, with :func:`fast_exp`."""
    return _f32(1.0) / (_f32(1.0) + fast_exp(-x))


_ELEMENTWISE = {
    "relax.exp": ("exp", fast_exp),
    "relax.sigmoid": ("sigmoid", fast_sigmoid),
    "relax.nn.silu": ("silu", lambda v: v * fast_sigmoid(v)),
    "relax.erf": ("erf", fast_erf),
    "relax.nn.gelu": ("gelu", fast_gelu),
}


def _te_kernel(expr_fn):
    def kernel(x: te.Tensor) -> te.Tensor:
        return te.compute(x.shape, lambda *i: expr_fn(x(*i)), name="compute",
                          tag="elemwise")
    return kernel


@mutator
class _MathLegalizer(PyExprMutator):
    def __init__(self, mod: tvm.IRModule):
        super().__init__(mod)
        self.rewritten = 0

    def visit_call_(self, call):
        call = self.visit_expr_post_order(call)
        op = call.op
        entry = _ELEMENTWISE.get(op.name) if isinstance(op, tvm.ir.Op) else None
        sinfo = call.args[0].ty if entry is not None else None
        if not isinstance(sinfo, relax.TensorType) or sinfo.dtype != "float32":
            return call
        name, expr_fn = entry
        self.rewritten += 1
        return self.builder_.call_te(_te_kernel(expr_fn), call.args[0],
                                     primfunc_name_hint=name)


@tvm.transform.module_pass(opt_level=0, name="VectorizableMath")
class VectorizableMath:
    """Legalize float32 ``exp`` / ``sigmoid`` / ``silu`` to vectorizable kernels (see the
    module docstring)."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        legalizer = _MathLegalizer(mod)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                legalizer.builder_.update_func(gv, legalizer.visit_expr(func))
        return legalizer.builder_.get() if legalizer.rewritten else mod
