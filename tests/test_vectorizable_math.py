"""VectorizableMath: which calls it rewrites, how close fast_exp / sigmoid / SiLU / log / tanh /
GELU and the constant powers are to float64 references, that the compiled kernels call no libm
``expf`` / ``logf`` / ``powf``, that chains of them stay linear in size (Mish), and the fused
SiLU's operation count."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tvm
import tvm_ffi
from tvm import relax

from aiq_tvm import pipeline
from aiq_tvm.passes import VectorizableMath

TARGET = tvm.target.Target({"kind": "llvm", "mcpu": "haswell"})  # AVX2: runs on any x86-64 CI


def _power(exponent: float, dtype: str = "float32"):
    return lambda x: relax.op.power(x, relax.const(exponent, dtype))


_OPS = {"exp": relax.op.exp, "sigmoid": relax.op.sigmoid, "silu": relax.op.nn.silu,
        "erf": relax.op.erf, "gelu": relax.op.nn.gelu, "tanh": relax.op.tanh,
        "log": relax.op.log, "gelu_tanh": relax.op.nn.gelu_tanh, "sqrt": relax.op.sqrt,
        # torch's Mish as torch.export decomposes it: x * tanh(softplus(x))
        "mish": lambda x: relax.op.multiply(x, relax.op.tanh(relax.op.where(
            relax.op.greater(x, relax.const(20.0)), x,
            relax.op.log(relax.op.add(relax.op.exp(x), relax.const(1.0))))))}
_OPS.update({f"power{p:g}": _power(p) for p in (1.0, 2.0, 3.0, 4.0, -1.0, -2.0, 0.5, 1.5)})


def _unary_module(op_name: str, dtype: str = "float32", shape=(2, 8, 9, 16)) -> tvm.IRModule:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, dtype))
    op = _OPS[op_name] if not op_name.startswith("power") or dtype == "float32" else \
        _power(float(op_name[5:]), dtype)
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit_output(op(x))
        bb.emit_func_output(y)
    return bb.get()


def _compile(mod: tvm.IRModule):
    with TARGET:
        mod = tvm.transform.Sequential(pipeline.legalize_passes(TARGET)
                                       + pipeline.schedule_passes(TARGET)
                                       + pipeline.lower_passes(TARGET))(mod)
    return relax.build(mod, target=TARGET)


def _run(op_name: str, x: np.ndarray) -> np.ndarray:
    ex = _compile(_unary_module(op_name, shape=x.shape))
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


def _ulp_error(y: np.ndarray, ref64: np.ndarray) -> float:
    """Largest distance in float32 ulps at the reference's magnitude."""
    ulp = np.spacing(np.abs(ref64).astype(np.float32)).astype(np.float64)
    return float(np.max(np.abs(y.astype(np.float64) - ref64) / ulp))


def _grid(lo: float, hi: float, n: int = 64 * 1024) -> np.ndarray:
    return np.linspace(lo, hi, n, dtype=np.float32).reshape(4, 16, 32, 32)


def test_float32_exp_sigmoid_silu_become_call_tir():
    for op_name in ("exp", "sigmoid", "silu", "erf", "gelu", "tanh", "log", "gelu_tanh"):
        after = VectorizableMath()(_unary_module(op_name))
        calls = [b.value for b in after["main"].body.blocks[0].bindings]
        assert [c.op.name for c in calls] == ["relax.call_tir"], op_name
        assert calls[0].args[0].name_hint == op_name
    after = VectorizableMath()(_unary_module("power3"))
    call = after["main"].body.blocks[0].bindings[0].value
    assert call.op.name == "relax.call_tir" and call.args[0].name_hint == "power"


@pytest.mark.parametrize("module", [_unary_module("sigmoid", "float16"),
                                    _unary_module("exp", "float64"), _unary_module("sqrt"),
                                    _unary_module("power1.5"), _unary_module("power2", "float64")],
                         ids=["sigmoid-float16", "exp-float64", "sqrt", "power-1.5",
                              "power-float64"])
def test_other_dtypes_and_ops_are_unchanged(module):
    tvm.ir.assert_structural_equal(VectorizableMath()(module), module)


def test_log_within_one_ulp_and_ieee_special_values():
    x = np.exp(np.linspace(-103.0, 88.7, 64 * 1024)).astype(np.float32).reshape(4, 16, 32, 32)
    assert x.min() < 1e-38  # subnormal inputs included
    assert _ulp_error(_run("log", x), np.log(x.astype(np.float64))) <= 1.0
    special = np.array([0.0, -0.0, np.inf, -1.0, -np.inf, np.nan, 1.0, 1e-45],
                       np.float32).reshape(1, 1, 1, 8)
    y = _run("log", special).ravel()
    assert np.isneginf(y[:2]).all() and y[2] == np.inf and np.isnan(y[3:6]).all()
    assert y[6] == 0.0 and y[7] == np.float32(math.log(float(special.ravel()[7])))


def test_gelu_tanh_matches_float64():
    x = _grid(-10.0, 10.0)
    x64 = x.astype(np.float64)
    ref = 0.5 * x64 * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x64 + 0.044715 * x64 ** 3)))
    y = _run("gelu_tanh", x)
    assert (np.abs(y - ref) <= 1e-6 * np.maximum(1.0, np.abs(x64))).all()


@pytest.mark.parametrize("exponent", [1.0, 2.0, 3.0, 4.0, -1.0, -2.0, 0.5])
def test_constant_powers_match_powf(exponent):
    x = _grid(-30.0, 30.0) if exponent != 0.5 else _grid(0.0, 1e4)
    with np.errstate(divide="ignore"):
        ref = np.power(x.astype(np.float64), exponent)
    y = _run(f"power{exponent:g}", x)
    finite = np.isfinite(ref)
    assert _ulp_error(y[finite], ref[finite]) <= 2.0
    special = np.array([-np.inf, -4.0, np.nan, 0.0, np.inf, 1.0, 2.0, 3.0],
                       np.float32).reshape(1, 1, 1, 8)
    with np.errstate(all="ignore"):
        expected = np.power(special, np.float32(exponent))
    np.testing.assert_array_equal(_run(f"power{exponent:g}", special), expected)


def test_mish_compiles_linear_in_size_and_matches_float64():
    """Mish chains exp, log and tanh; every builder reads its argument several times, and
    without binding it FuseTIR's inlining copied the producers into each read (exponential
    growth: 38 ms for one 56 x 56 x 64 map with libm's log, 1.5 s with an inlined one)."""
    x = _grid(-30.0, 30.0)
    x64 = x.astype(np.float64)
    ref = x64 * np.tanh(np.where(x64 > 20.0, x64, np.log1p(np.exp(x64))))
    y = _run("mish", x)
    # log(1 + exp(x)) in float32 (the graph's formula, not log1p) loses the low bits of a
    # small exp(x): an absolute error of float32 rounding at 1.0, times x; tanh is within 5e-7
    # of 1.0 (test above).
    assert (np.abs(y - ref) <= 5e-7 * np.maximum(1.0, np.abs(x64))).all()
    fast = _asm(_unary_module("mish"), pipeline.legalize_passes(TARGET))
    assert "logf" not in fast and "expf" not in fast
    # One fused kernel holding each function once: no larger than exp's, log's and tanh's
    # kernels together (the copies made it over 100x larger).
    kernels = _scheduled_kernels("mish")
    assert len(kernels) == 1
    parts = sum(len(f.script()) for op in ("exp", "log", "tanh") for f in _scheduled_kernels(op))
    assert len(kernels[0].script()) < parts


def _scheduled_kernels(op_name: str) -> list:
    with TARGET:
        mod = tvm.transform.Sequential(pipeline.legalize_passes(TARGET)
                                       + pipeline.schedule_passes(TARGET))(_unary_module(op_name))
    return [f for _, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]


def test_exp_within_two_ulp_over_the_float32_range():
    x = _grid(-87.3, 88.7)
    y = _run("exp", x)
    assert _ulp_error(y, np.exp(x.astype(np.float64))) <= 2.0


def test_exp_overflow_underflow_and_nan_follow_ieee_float32():
    x = np.array([100.0, 88.73, np.inf, -87.35, -200.0, -np.inf, np.nan, 0.0],
                 np.float32).reshape(1, 1, 1, 8)
    y = _run("exp", x).ravel()
    assert np.isposinf(y[:3]).all()
    assert (y[3:6] == 0.0).all()  # true values are subnormal or 0: flushed to zero
    assert np.isnan(y[6]) and y[7] == 1.0


@pytest.mark.parametrize("op_name", ["sigmoid", "silu"])
def test_sigmoid_and_silu_match_float64(op_name):
    x = _grid(-120.0, 120.0)
    x64 = x.astype(np.float64)
    sig = 1.0 / (1.0 + np.exp(-x64))
    ref = sig if op_name == "sigmoid" else x64 * sig
    y = _run(op_name, x)
    assert np.max(np.abs(y - ref) / np.maximum(np.abs(ref), 1e-30)) < 1e-6
    assert np.isfinite(y).all()


def test_erf_and_gelu_match_float64():
    x = _grid(-6.0, 6.0)
    x64 = x.astype(np.float64)
    erf = np.vectorize(math.erf)(x64)
    assert np.max(np.abs(_run("erf", x) - erf)) < 5e-7  # a few ulp of 1.0
    gelu = 0.5 * x64 * (1.0 + np.vectorize(math.erf)(x64 / math.sqrt(2.0)))
    y = _run("gelu", x)
    assert (np.abs(y - gelu) <= 1e-6 * np.maximum(1.0, np.abs(x64))).all()


def test_tanh_matches_float64_and_saturates():
    """Eigen's rational tanh: within a few float32 ulp of 1.0 over [-12, 12] (+-1 beyond 9),
    odd, NaN kept."""
    x = _grid(-12.0, 12.0)
    y = _run("tanh", x)
    assert np.max(np.abs(y - np.tanh(x.astype(np.float64)))) < 5e-7
    small = _grid(-1e-3, 1e-3)
    ref = np.tanh(small.astype(np.float64))
    assert np.max(np.abs(_run("tanh", small) - ref) / np.maximum(np.abs(ref), 1e-30)) < 1e-6
    np.testing.assert_array_equal(y, -y[::-1, ::-1, ::-1, ::-1])
    special = np.array([np.inf, -np.inf, 40.0, -40.0, np.nan, 0.0, 0.0, 0.0],
                       np.float32).reshape(1, 1, 1, 8)
    out = _run("tanh", special).ravel()
    np.testing.assert_array_equal(out[:4], [1.0, -1.0, 1.0, -1.0])
    assert np.isnan(out[4]) and out[5] == 0.0


def _asm(mod: tvm.IRModule, legalize: list) -> str:
    with TARGET:
        mod = tvm.transform.Sequential(legalize + pipeline.schedule_passes(TARGET)
                                       + pipeline.lower_passes(TARGET))(mod)
    ex = relax.build(mod, target=TARGET)
    return "".join(m.inspect_source("asm") for m in [ex.mod, *ex.mod.imports])


@pytest.mark.parametrize("op_name, libm", [("silu", "expf"), ("gelu", "erff"),
                                           ("tanh", "expf"),  # TVM: a formula of expf calls
                                           ("log", "logf"), ("gelu_tanh", "expf"),
                                           ("power3", "powf")])
def test_compiled_kernels_call_no_libm(op_name, libm):
    from tvm.relax.backend.cpu_generic import pipeline as cpu_pipeline

    tvm_default = _asm(_unary_module(op_name), cpu_pipeline.legalize_passes(TARGET))
    assert libm in tvm_default  # what the pass replaces: a libm call per element
    fast = _asm(_unary_module(op_name), pipeline.legalize_passes(TARGET))
    assert libm not in fast
    if not op_name.startswith("power"):
        assert "vfmadd" in fast  # the polynomials, in vector FMA instructions


def test_silu_within_four_ulp_where_activations_live():
    # Over [-120, 120] the bound above is relative; here, where a network's activations are,
    # it is in ulps (3.5 measured; the degree-7 polynomial of fast_exp gave 2.3).
    x = _grid(-20.0, 20.0)
    x64 = x.astype(np.float64)
    assert _ulp_error(_run("silu", x), x64 / (1.0 + np.exp(-x64))) <= 4.0


def test_silu_special_values():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, 1e-30, -1e-30, 3e38, -1000.0],
                 np.float32).reshape(1, 1, 1, 8)
    y = _run("silu", x).ravel()
    assert np.isnan(y[0]) and y[1] == np.inf and y[3] == 0.0
    assert y[2] == -np.inf  # -inf / (1 + e**88): torch gives NaN (-inf * 0)
    np.testing.assert_allclose(y[4:6], [5e-31, -5e-31], rtol=1e-6)
    # Below x = -88 the exponential is clamped: x / (1 + e**88), 6e-36 here, not 0.
    assert y[6] == np.float32(3e38) and abs(y[7]) < 1e-35


def _distinct_nodes(expr) -> dict[str, int]:
    """Distinct subexpressions of a TIR expression (a DAG printed as a tree) by kind."""
    seen, counts = set(), {}

    def visit(node):
        key = tvm_ffi.structural_hash(node)
        if key in seen:
            return
        seen.add(key)
        call = isinstance(node, tvm.ir.expr.Call)
        kind = node.op.name if call else type(node).__name__
        counts[kind] = counts.get(kind, 0) + 1
        children = node.args if call else [
            getattr(node, f) for f in ("a", "b", "value")
            if isinstance(getattr(node, f, None), tvm.ir.expr.Expr)]
        for child in children:
            visit(child)

    visit(expr)
    return counts


def test_fused_silu_is_thirteen_vector_ops_and_one_division():
    # The SiLU runs once per output element of a fused layer, where it costs as much as a
    # 1 x 1 conv's two dozen multiply-adds: guard its operation count. 21 TIR operations are
    # 13 vector instructions once LLVM fuses multiplies and adds (fast_exp's form took 22).
    from aiq_tvm.targets.fastmath import fast_silu

    counts = _distinct_nodes(fast_silu(tvm.tirx.Var("x", "float32")))
    assert counts.get("Div") == 1 and "Select" not in counts
    assert sum(counts.get(k, 0) for k in ("Add", "Sub", "Mul", "Min", "Max")) == 21
