"""VectorizableMath: float32 sigmoid, SiLU, exp, log, erf, GELU, GELU-tanh, tanh, constant
powers and round as arithmetic LLVM vectorizes.

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
same coefficients) and ``gelu(x) = x (1 + erf(x / sqrt 2)) / 2``, as TVM writes it. ``tanh``
is Eigen's rational function on [-9, 9] (TOPI's ``fast_tanh``; +-1 beyond): TVM's own,
a formula of scalar ``expf`` calls, took 42 of a random network's 50 ms (a tanh over 8 x 41 x
86 x 256 values, ``docs/runs/s39/seed_prof.py 14``). ``log`` is Cephes' ``logf`` (within 1
ulp; subnormals, 0, inf, negatives and NaN as IEEE): torch.export writes softplus, Mish and
LogSigmoid with it, and libm's scalar ``logf`` made Mish 63x a ReLU network's time.
``gelu_tanh`` (torch's ``GELU(approximate="tanh")``) uses the rational ``tanh``; ``power`` by
a scalar constant 1, 2, 3, 4, -1, -2 or 0.5 becomes products or a square root instead of
libm's ``powf`` (other exponents keep it).

Each kernel binds its operand to a variable: the builders read their argument several times,
and once FuseTIR inlines an elementwise producer (``exp`` into ``log`` into ``tanh`` for
Mish), every read would become a copy of the producer's whole expression.

``relax.round`` becomes ``tirx.round`` (TOPI's ``nearbyint`` keeps a loop from vectorizing;
both round half to even). Calls of other dtypes, and every other operator, are left as they
are.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, te
from tvm.relax.expr_functor import PyExprMutator, mutator

from aiq_tvm._ir import const_value, is_const
from aiq_tvm.targets.fastmath import (
    constant_power,
    fast_erf,
    fast_exp,
    fast_gelu,
    fast_gelu_tanh,
    fast_log,
    fast_sigmoid,
    fast_silu,
    fast_tanh,
)

__all__ = ["VectorizableMath"]

_ELEMENTWISE = {
    "relax.exp": ("exp", fast_exp),
    "relax.sigmoid": ("sigmoid", fast_sigmoid),
    "relax.nn.silu": ("silu", fast_silu),
    "relax.erf": ("erf", fast_erf),
    "relax.nn.gelu": ("gelu", fast_gelu),
    "relax.nn.gelu_tanh": ("gelu_tanh", fast_gelu_tanh),
    "relax.tanh": ("tanh", fast_tanh),
    "relax.log": ("log", fast_log),
    # TOPI's round is tirx.nearbyint, which TVM's VectorizeLoop does not vectorize (it
    # scalarizes the whole loop body around it); tirx.round lowers to the same
    # llvm.nearbyint (half to even) and vectorizes. FuseQuantizeIntoGlue's quantizer needs it.
    "relax.round": ("round", tvm.tirx.round),
}


def _power_fn(exponent):
    """The builder for ``x ** exponent`` (a scalar float32 constant), or None."""
    if not is_const(exponent):
        return None
    value = const_value(exponent)
    if value.size != 1 or value.dtype != np.float32:
        return None
    return constant_power(float(value.reshape(())))


def _evaluated_once(expr_fn, value: tvm.tirx.PrimExpr, dtype: str) -> tvm.tirx.PrimExpr:
    """``expr_fn(value)`` with ``value`` bound to a variable: the builders read their argument
    several times, and once FuseTIR inlines an elementwise producer into this kernel, every
    read would become a copy of the producer's whole expression (Mish, ``x * tanh(log(1 +
    exp(x)))``, grew to thousands of operations per element: 1.5 s for one 56 x 56 x 64 map)."""
    var = tvm.tirx.Var("v", dtype)
    return tvm.tirx.Let(var, value, expr_fn(var))


def _te_kernel(expr_fn):
    def kernel(x: te.Tensor) -> te.Tensor:
        return te.compute(x.shape, lambda *i: _evaluated_once(expr_fn, x(*i), x.dtype),
                          name="compute",
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
        if isinstance(op, tvm.ir.Op) and op.name == "relax.power":
            fn = _power_fn(call.args[1])
            entry = ("power", fn) if fn is not None else None
        sinfo = call.args[0].ty if entry is not None else None
        if not isinstance(sinfo, relax.TensorType) or sinfo.dtype != "float32":
            return call
        name, expr_fn = entry
        self.rewritten += 1
        return self.builder_.call_te(_te_kernel(expr_fn), call.args[0],
                                     primfunc_name_hint=name)


@tvm.transform.module_pass(opt_level=0, name="VectorizableMath")
class VectorizableMath:
    """Legalize float32 ``exp`` / ``sigmoid`` / ``silu`` / ``log`` / ``erf`` / ``gelu`` /
    ``gelu_tanh`` / ``tanh`` / constant ``power`` / ``round`` to vectorizable kernels (see the
    module docstring)."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        legalizer = _MathLegalizer(mod)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                legalizer.builder_.update_func(gv, legalizer.visit_expr(func))
        return legalizer.builder_.get() if legalizer.rewritten else mod
