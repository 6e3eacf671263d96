"""x86 kernel library: numerics vs the numpy references on every ISA level this host runs,
int8 dot instructions in the assembly of every level, saturation, fallbacks, errors."""

from __future__ import annotations

import os
import re
from dataclasses import replace

import numpy as np
import pytest

os.environ.setdefault("TVM_NUM_THREADS", "2")

import tvm  # noqa: E402
import tvm_ffi  # noqa: E402

from aiq_tvm import quant, testing  # noqa: E402
from aiq_tvm.quant import ActQParams  # noqa: E402
from aiq_tvm.schemes import get_precision, precision_names  # noqa: E402
from aiq_tvm.targets import capabilities  # noqa: E402
from aiq_tvm.targets.x86 import (  # noqa: E402
    ConvSpec,
    DenseSpec,
    Kernel,
    UnsupportedLayer,
    conv2d_kernel,
    cpu_model,
    dense_kernel,
    quantize_kernel,
)
from isa import (  # noqa: E402
    ARM_TARGETS,
    BEST_X86,
    HASWELL,
    ISA_TARGETS,
    ZNVER4,
    isa_params,
    requires_host,
    requires_vnni_host,
    runnable,
)

SCHEMES = precision_names()


def is_int(scheme: str) -> bool:
    return get_precision(scheme).quantizes_activations

# Layer cases: odd channel counts (C=3, O=10, 24), stride 2, asymmetric padding, residual
# and every activation kind across them.
CASES = {
    "conv3x3_s2": dict(
        spec=ConvSpec(2, 9, 7, 3, 10, 3, 3, stride=2, padding=(1, 1, 1, 0)),
        act="relu",
        residual=True,
    ),
    "conv3x3_s1": dict(
        spec=ConvSpec(1, 6, 6, 24, 40, 3, 3, padding=1), act=("clip", -1.0, 2.5), residual=False
    ),
    "pointwise": dict(spec=ConvSpec(2, 5, 6, 24, 24, 1, 1), act="relu6", residual=False),
    "depthwise": dict(
        spec=ConvSpec(1, 9, 9, 24, 24, 3, 3, stride=2, padding=1, groups=24),
        act=("clip", -0.5, 1.0),
        residual=True,
    ),
    "dense": dict(spec=DenseSpec(3, 37, 10), act="none", residual=True),
    # MobileNetV2's 1x1 projections at batch 1: 160 channels in blocks of 48 leave a ragged
    # last block whose epilogue loop TVM could not unroll (regression).
    "pointwise_ragged": dict(spec=ConvSpec(1, 1, 1, 576, 160, 1, 1), act="none", residual=True),
    # An RGB stem (7x7 / 2, 3 channels, asymmetric padding): the integer kernels fold the
    # kernel columns into the channel reduction (21 values padded to 24, not 7 x 4).
    "stem7x7_s2": dict(spec=ConvSpec(2, 19, 17, 3, 20, 7, 7, stride=2, padding=(3, 3, 2, 3)),
                       act="relu", residual=True),
}


# Padded convs whose weights outgrow the L2 (ResNet's last stage at batch 1): their tasks are
# output-channel blocks with the padded copy made at the root (a stride-2 one too: the pairs
# formats store that copy by column phase).
SPLIT_CASES = {
    "conv3x3_wide": dict(spec=ConvSpec(1, 7, 7, 512, 256, 3, 3, padding=1), act="relu",
                         residual=True),
    "conv3x3_wide_s2": dict(spec=ConvSpec(1, 14, 14, 512, 256, 3, 3, stride=2, padding=1),
                            act="none", residual=False),
}
# Batch-4 convs whose fp32 weights pass Zen 4's L2 share (3x3: 4.7 MB, 1x1: 2 MB; int8 1.2 MB
# and 512 KB): image tasks that walk the output-channel blocks outermost.
IMAGE_TASK_CASES = {
    "conv3x3_wide_b4": dict(spec=ConvSpec(4, 7, 7, 512, 256, 3, 3, padding=1), act="relu",
                            residual=True),
    "conv1x1_wide_b4": dict(spec=ConvSpec(4, 14, 14, 1024, 512, 1, 1), act="relu",
                            residual=False),
}
# Padded depthwise convs whose channels fill whole vectors at every level (32, and 40 in
# half-width ones on AVX-512): float and strided integer ones read their borders inline,
# without a padded copy (asymmetric padding, a 5x5 window wider than the padding, batch 2, an
# output column tail at stride 2).
BORDER_CASES = {
    "dw_border_3x3": dict(spec=ConvSpec(2, 7, 9, 32, 32, 3, 3, padding=1, groups=32),
                          act="relu6", residual=True),
    "dw_border_5x5_s2": dict(spec=ConvSpec(1, 11, 10, 32, 32, 5, 5, stride=2,
                                           padding=(2, 1, 2, 3), groups=32),
                             act=("clip", -0.5, 1.0), residual=False),
    # 40 channels fill 8-lane vectors, not 16-lane ones: half width on AVX-512 (fp32).
    "dw_border_half": dict(spec=ConvSpec(1, 6, 7, 40, 40, 3, 3, padding=1, groups=40),
                           act="relu", residual=True),
}
# A channel-narrowing pointwise conv: fp32 register blocks run down the rows.
ROW_CASES = {
    "pw_narrow": dict(spec=ConvSpec(2, 14, 9, 48, 16, 1, 1), act="relu", residual=True),
}
ALL_CASES = {**CASES, **SPLIT_CASES, **IMAGE_TASK_CASES, **BORDER_CASES, **ROW_CASES}


def compile_kernel(k: Kernel, target=BEST_X86):
    return tvm.compile(tvm.IRModule({"main": k.prim_func}), tvm.target.Target(target))


def run_kernel(k: Kernel, x: np.ndarray, residual=None, target=BEST_X86, ex=None) -> np.ndarray:
    ex = ex if ex is not None else compile_kernel(k, target)
    args = [tvm.runtime.tensor(x)] + [tvm.runtime.tensor(c) for c in k.consts]
    if residual is not None:
        args.append(tvm.runtime.tensor(residual))
    y = tvm.runtime.tensor(np.zeros(k.out_shape, k.out_dtype))
    ex.mod["main"](*args, y)
    return y.numpy()


def asm_of(ex) -> str:
    mod = ex.mod
    return "".join(m.inspect_source("asm") for m in [mod, *getattr(mod, "imports", [])])


def make_case(name: str, seed: int = 0):
    """Inputs, weights, bias and residual of a case (float activations off-centre)."""
    case = ALL_CASES[name]
    spec = case["spec"]
    rng = np.random.default_rng(seed)
    if isinstance(spec, DenseSpec):
        x = rng.standard_normal((spec.N, spec.K)) + 0.3
        w = rng.standard_normal((spec.O, spec.K)) / np.sqrt(spec.K)
        out_shape = (spec.N, spec.O)
    else:
        x = rng.standard_normal(spec.in_shape) + 0.3
        w = rng.standard_normal(spec.weight_shape) / np.sqrt(np.prod(spec.weight_shape[1:]))
        out_shape = spec.out_shape
    b = rng.standard_normal(w.shape[0])
    res = rng.standard_normal(out_shape) if case["residual"] else None
    qp = ActQParams.from_range(float(x.min()), float(x.max()))
    f32 = np.float32
    res = None if res is None else res.astype(f32)
    return spec, x.astype(f32), w.astype(f32), b.astype(f32), res, qp


def build_case(name: str, scheme: str, target=BEST_X86, debug_acc: bool = False, seed: int = 0,
               numerics_target=None, **conv_kw):  # fmt: skip
    """Kernel for ``target`` and the numpy reference with the numerics target's weight codes
    (``conv_kw``: more :func:`conv2d_kernel` arguments, e.g. ``winograd=False``)."""
    case = ALL_CASES[name]
    spec, x, w, b, res, qp = make_case(name, seed)
    kw = dict(
        act=case["act"],
        act_qparams=qp,
        residual=case["residual"],
        target=target,
        numerics_target=numerics_target,
        debug_acc=debug_acc,
    )
    qmax = testing.int8_qmax(spec, numerics_target or target)
    if isinstance(spec, DenseSpec):
        k = dense_kernel(spec, scheme, w, b, **kw)
        ref = quant.ref_dense(x, w, b, scheme, act=case["act"], act_qparams=qp, residual=res,
                              int8_qmax=qmax)  # fmt: skip
    else:
        k = conv2d_kernel(spec, scheme, w, b, **kw, **conv_kw)
        ref = quant.ref_conv2d(
            x, w, b, scheme, stride=spec.stride, padding=spec.padding, groups=spec.groups,
            act=case["act"], act_qparams=qp, residual=res, int8_qmax=qmax,
        )  # fmt: skip
    xin = quant.quantize_act(x, qp) if is_int(scheme) else x
    return k, xin, res, ref


def assert_close(y, ref, scheme):
    """Tolerances: int schemes only round in the float epilogue; float ones accumulate in fp32."""
    scale = np.abs(ref).max()
    if is_int(scheme):
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6 * scale)
    else:
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * scale)


# ---------------------------------------------------------------------------------------------
# Numerics against the numpy references
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", isa_params())
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("name", list(CASES))
def test_kernel_matches_reference(name, scheme, target):
    k, xin, res, ref = build_case(name, scheme, target)
    assert k.in_dtype == ("uint8" if is_int(scheme) else "float32")
    assert k.out_dtype == "float32"
    y = run_kernel(k, xin, res, target)
    assert y.shape == ref.y.shape
    assert_close(y, ref.y, scheme)


@pytest.mark.parametrize("target", isa_params())
@pytest.mark.parametrize("scheme", ["int8", "int4"])
@pytest.mark.parametrize("name", list(CASES))
def test_int_accumulator_exact(name, scheme, target):
    k, xin, res, ref = build_case(name, scheme, target, debug_acc=True)
    assert k.out_dtype == "int32"
    assert k.info["weight_qmax"] == (7 if scheme == "int4" else
                                     testing.int8_qmax(CASES[name]["spec"], target))  # fmt: skip
    acc = run_kernel(k, xin, res, target)
    np.testing.assert_array_equal(acc, ref.acc)


def test_unscheduled_kernel_matches():
    spec, x, w, b, _, qp = make_case("conv3x3_s2")
    k = conv2d_kernel(spec, "int4", w, b, act_qparams=qp, target=BEST_X86, schedule=False)
    assert "tirx.is_scheduled" not in k.prim_func.attrs
    xq = quant.quantize_act(x, qp)
    ref = quant.ref_conv2d(
        xq, w, b, "int4", stride=spec.stride, padding=spec.padding, act_qparams=qp
    )
    assert_close(run_kernel(k, xq), ref.y, "int4")


def test_large_accumulator_exact():
    """Saturated inputs and weights: the int32 accumulator must not saturate or wrap."""
    spec = ConvSpec(1, 4, 4, 64, 16, 3, 3, padding=1)
    w = np.full(spec.weight_shape, -1.0, np.float32)
    w[:, ::2] = 1.0
    qp = ActQParams.from_range(-1.0, 0.0)  # zp = 255
    xq = np.full(spec.in_shape, 255, np.uint8)
    xq[..., 1::2] = 0
    qmax = capabilities(BEST_X86).int8_weight_qmax
    for scheme in ("int8", "int4"):
        k = conv2d_kernel(spec, scheme, w, None, act_qparams=qp, target=BEST_X86, debug_acc=True)
        ref = quant.ref_conv2d(xq, w, None, scheme, padding=spec.padding, act_qparams=qp,
                               int8_qmax=qmax)  # fmt: skip
        np.testing.assert_array_equal(run_kernel(k, xq), ref.acc)


@requires_vnni_host
def test_int4_long_reduction_uses_unscaled_blocks():
    """Reductions too long for the x16-scaled int4 blocks fall back to the 16x4 int4 blocks."""
    from aiq_tvm.targets.x86.vnni import I4X16_MAX_REDUCTION

    spec = DenseSpec(2, I4X16_MAX_REDUCTION + 5, 16)
    rng = np.random.default_rng(3)
    w = rng.standard_normal((spec.O, spec.K)).astype(np.float32)
    qp = ActQParams.from_range(-1.0, 1.0)
    xq = rng.integers(0, 256, (spec.N, spec.K)).astype(np.uint8)
    k = dense_kernel(spec, "int4", w, None, act_qparams=qp, target=BEST_X86, debug_acc=True)
    assert k.info["weight_format"] == "v4s"
    np.testing.assert_array_equal(
        run_kernel(k, xq), quant.ref_dense(xq, w, None, "int4", act_qparams=qp).acc
    )
    small = dense_kernel(
        DenseSpec(2, 64, 16), "int4", w[:, :64], None, act_qparams=qp, target=BEST_X86
    )
    assert small.info["weight_format"] == "v4"


# ---------------------------------------------------------------------------------------------
# Requantizing epilogue (uint8 output)
# ---------------------------------------------------------------------------------------------


def quantize_with_kernel(y: np.ndarray, qp: ActQParams) -> np.ndarray:
    """The unfused path: the standalone quantize kernel on a float kernel output."""
    f = quantize_kernel(y.shape, qp, target=BEST_X86)
    ex = tvm.compile(tvm.IRModule({"main": f}), tvm.target.Target(BEST_X86))
    q = tvm.runtime.tensor(np.zeros(y.shape, np.uint8))
    ex.mod["main"](tvm.runtime.tensor(y), q)
    return q.numpy()


def tie_case(name: str, scheme: str, seed: int = 1):
    """Data on which every epilogue value is exact in float32 and ``y * inv`` is a multiple of
    1/2, so about half of the unsaturated outputs are exact .5 ties.

    Weights are small integers times a power of two with one +-qmax entry per output channel
    (so the per-channel weight scale is that power of two exactly); activations are
    ``{-1, 0, 1}`` steps of 0.25 (codes ``zp + {-1, 0, 1}`` for int schemes); every product and
    partial sum is then an exact multiple of ``Q = 0.25 * s_w``, and ``inv = 1 / (2 Q)``.
    """
    case = CASES[name]
    spec = case["spec"]
    rng = np.random.default_rng(seed)
    dense = isinstance(spec, DenseSpec)
    qmax = get_precision(scheme).weight_qmax(capabilities(BEST_X86).int8_weight_qmax) or 127
    wexp = 3 if qmax == 7 else 7
    w_shape = (spec.O, spec.K) if dense else spec.weight_shape
    in_shape = (spec.N, spec.K) if dense else spec.in_shape
    out_shape = (spec.N, spec.O) if dense else spec.out_shape
    q = rng.integers(-3, 4, w_shape)
    q.reshape(spec.O, -1)[:, 0] = qmax * rng.choice([-1, 1], spec.O)
    w = (q * 2.0**-wexp).astype(np.float32)
    step = 0.25
    quantum = step * 2.0**-wexp
    codes = rng.integers(-1, 2, in_shape)
    act_qp = ActQParams(scale=step, zp=128, inv=1 / step)
    if is_int(scheme):
        xin = (codes + act_qp.zp).astype(np.uint8)
    else:
        xin = (codes * step).astype(np.float32)
    b = (quantum * rng.integers(-40, 41, spec.O)).astype(np.float32)
    res = None
    if case["residual"]:
        res = (quantum * rng.integers(-40, 41, out_shape)).astype(np.float32)
    out_qp = ActQParams(scale=2 * quantum, zp=128, inv=1 / (2 * quantum))
    return spec, xin, w, b, res, act_qp, out_qp


def build_requant_pair(name, scheme, spec, w, b, act_qp, out_qp):
    """The float kernel and its requantizing twin, plus the numpy reference function."""
    case = CASES[name]
    kw = dict(act=case["act"], act_qparams=act_qp, residual=case["residual"], target=BEST_X86)
    if isinstance(spec, DenseSpec):
        build, ref = dense_kernel, quant.ref_dense
        rkw = dict(act=case["act"], act_qparams=act_qp)
    else:
        build, ref = conv2d_kernel, quant.ref_conv2d
        rkw = dict(
            stride=spec.stride, padding=spec.padding, groups=spec.groups, act=case["act"],
            act_qparams=act_qp,
        )  # fmt: skip
    rkw["int8_qmax"] = testing.int8_qmax(spec, BEST_X86)
    k_float = build(spec, scheme, w, b, **kw)
    k_uint8 = build(spec, scheme, w, b, out_qparams=out_qp, **kw)
    return k_float, k_uint8, lambda x, res: ref(x, w, b, scheme, residual=res, **rkw,
                                                 out_qparams=out_qp)  # fmt: skip


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("name", list(CASES))
def test_requant_epilogue_bit_exact_with_quantize_kernel(name, scheme):
    """Fused uint8 output == float kernel followed by quantize_kernel, bit for bit: on random
    data (FMA contraction and rounding must match) and on data full of exact .5 ties."""
    # Random data, output range inside the value range so both clips are exercised.
    k, xin, res, _ = build_case(name, scheme)
    y = run_kernel(k, xin, res)
    out_qp = ActQParams.from_range(0.7 * float(y.min()), 0.7 * float(y.max()))
    spec, _, w, b, _, act_qp = make_case(name)
    k_float, k_uint8, ref = build_requant_pair(name, scheme, spec, w, b, act_qp, out_qp)
    assert k_uint8.out_dtype == "uint8" and k_float.out_dtype == "float32"
    assert k_uint8.info["params"][len(k_uint8.consts)] == "out_q"  # the last constant
    q = run_kernel(k_uint8, xin, res)
    assert q.dtype == np.uint8
    np.testing.assert_array_equal(q, quantize_with_kernel(run_kernel(k_float, xin, res), out_qp))
    assert (q == 0).any() and (q == 255).any()
    # The reference quantizes its float64 value rounded to float32: at most one code apart.
    assert np.abs(q.astype(int) - ref(xin, res).q.astype(int)).max() <= 1

    # Exact data with ties.
    spec, xin, w, b, res, act_qp, out_qp = tie_case(name, scheme)
    k_float, k_uint8, ref = build_requant_pair(name, scheme, spec, w, b, act_qp, out_qp)
    y = run_kernel(k_float, xin, res)
    scaled = y.astype(np.float64) * out_qp.inv
    inside = np.abs(scaled) < 100
    ties = inside & (scaled - np.floor(scaled) == 0.5)
    assert ties.sum() >= 3 and ties.sum() >= 0.2 * inside.sum()
    # Half to even: ties round both up and down.
    assert (np.floor(scaled[ties]) % 2 == 0).any() and (np.floor(scaled[ties]) % 2 == 1).any()
    q = run_kernel(k_uint8, xin, res)
    np.testing.assert_array_equal(q, quantize_with_kernel(y, out_qp))
    expect = ref(xin, res)
    np.testing.assert_array_equal(y, expect.y)  # exact data: the float path is exact too
    np.testing.assert_array_equal(q, expect.q)


def _out_block_reads(k: Kernel) -> set[str]:
    from aiq_tvm._ir import tir_blocks

    out = next(b for b in tir_blocks(k.prim_func.body) if b.name_hint == "out")
    return {r.source.name for r in out.reads}


@pytest.mark.parametrize("name, target, expect_init", [
    ("depthwise", ISA_TARGETS["avx2"], True),  # depthwise: every x86 level, float sums
    ("depthwise", ISA_TARGETS["avx512bw"], True),
    ("conv3x3_s2", ISA_TARGETS["avx512_vnni"], True),  # 27-value reduction on AVX-512
    ("conv3x3_s2", ISA_TARGETS["avx2"], False),  # 16 vector registers: keeps the subtraction
    ("conv3x3_s1", ISA_TARGETS["avx512_vnni"], False),  # 216 values: beyond the bound
])  # fmt: skip
def test_accumulators_start_at_minus_the_correction(name, target, expect_init, monkeypatch):
    """Where ``conv2d._corr_in_acc`` says so, the accumulators start at ``acc_init`` (minus the
    zero-point correction, padded channels 0) and the epilogue reads no ``corr``: outputs equal
    the subtracting kernel's bit for bit (run where the host executes the level)."""
    spec, x, w, b, res, qp = make_case(name)
    xin = quant.quantize_act(x, qp)
    out_qp = ActQParams.from_range(-0.5, 2.0)
    kw = dict(act=ALL_CASES[name]["act"], act_qparams=qp, residual=res is not None,
              target=target, out_qparams=out_qp)
    k = conv2d_kernel(spec, "int8", w, b, **kw)
    monkeypatch.setenv("AIQ_CORR_IN_ACC", "0")
    k_sub = conv2d_kernel(spec, "int8", w, b, **kw)
    assert ("acc_init" in k.info["params"]) is expect_init
    assert "acc_init" not in k_sub.info["params"] and "corr" in _out_block_reads(k_sub)
    if not expect_init:
        return
    assert "corr" not in _out_block_reads(k)
    names = k.info["params"][1:]
    corr, init = (k.consts[names.index(nm)] for nm in ("corr", "acc_init"))
    np.testing.assert_array_equal(init[: corr.size], -corr)
    assert not init[corr.size:].any()
    if runnable(target):
        np.testing.assert_array_equal(run_kernel(k, xin, res, target),
                                      run_kernel(k_sub, xin, res, target))


def test_requant_params_shared_across_output_ranges():
    """``out_q`` is a parameter: kernels that differ only in the output range are one PrimFunc
    (one compiled function, one tuning record)."""
    spec, _, w, b, _, qp = make_case("conv3x3_s1")
    ka = conv2d_kernel(spec, "int8", w, b, act_qparams=qp, target=BEST_X86,
                       out_qparams=ActQParams.from_range(-1.0, 3.0))  # fmt: skip
    kb = conv2d_kernel(spec, "int8", w, b, act_qparams=qp, target=BEST_X86,
                       out_qparams=ActQParams.from_range(0.0, 9.0))  # fmt: skip
    assert tvm_ffi.structural_equal(ka.prim_func, kb.prim_func)
    assert ka.info["params"] == ["x", "weight", "corr", "comb", "bias", "out_q", "y"]
    assert ka.consts[-1].dtype == np.float32 and ka.consts[-1].tolist() != kb.consts[-1].tolist()
    with pytest.raises(ValueError, match="exclusive"):
        conv2d_kernel(spec, "int8", w, b, act_qparams=qp, target=BEST_X86, debug_acc=True,
                      out_qparams=qp)  # fmt: skip
    with pytest.raises(ValueError, match="exclusive"):
        dense_kernel(DenseSpec(2, 8, 4), "int8", np.zeros((4, 8)), None, act_qparams=qp,
                     target=BEST_X86, debug_acc=True, out_qparams=qp)  # fmt: skip


@pytest.mark.parametrize("scheme", ["fp32", "int8", "int4"])
@pytest.mark.parametrize("name", ["conv3x3_s2", "depthwise", "dense"])
def test_uint8_residual_adds_its_dequantized_value(name, scheme):
    """A uint8 shortcut (``residual_qparams``) adds ``(q - zp) * scale``: the same output as
    the float kernel given that value, up to FMA contraction of the dequantize."""
    k_float, xin, res, _ = build_case(name, scheme)
    rqp = ActQParams.from_range(float(res.min()), float(res.max()))
    codes = quant.quantize_act(res, rqp)
    dequant = (codes.astype(np.float32) - np.float32(rqp.zp)) * np.float32(rqp.scale)
    case = CASES[name]
    spec, _, w, b, _, qp = make_case(name)
    build = dense_kernel if isinstance(spec, DenseSpec) else conv2d_kernel
    k_u8 = build(spec, scheme, w, b, act=case["act"], act_qparams=qp, residual=True,
                 residual_qparams=rqp, target=BEST_X86)
    assert k_u8.info["params"][-2:] == ["residual", "y"]
    y = run_kernel(k_u8, xin, codes)
    ref = run_kernel(k_float, xin, dequant)
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())
    assert not np.array_equal(dequant, res)  # the shortcut really was rounded
    with pytest.raises(ValueError, match="residual_qparams given without residual"):
        build(spec, scheme, w, b, act_qparams=qp, residual_qparams=rqp, target=BEST_X86)


# ---------------------------------------------------------------------------------------------
# Quantize kernel
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (1001,), (64, 300)])
def test_quantize_kernel_bit_exact(shape):
    qp = ActQParams.from_range(-1.7, 2.3)
    inv = np.float32(qp.inv)
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(int(np.prod(shape))) * 2).astype(np.float32)
    ties = ((np.arange(-60, 60) + 0.5).astype(np.float32) / inv).astype(np.float32)
    ties = ties[(ties * inv) == (np.arange(-60, 60) + 0.5)]  # keep exact float32 ties only
    assert len(ties) > 50
    extremes = np.float32([1e30, -1e30, 3e9, -3e9, 1e-30, -0.0, 255.0, -255.0])
    x[: len(ties)] = ties
    x[len(ties) : len(ties) + len(extremes)] = extremes
    x = x.reshape(shape)
    f = quantize_kernel(shape, qp, target=BEST_X86)
    assert f.attrs["op_pattern"] == 8
    ex = tvm.compile(tvm.IRModule({"main": f}), tvm.target.Target(BEST_X86))
    q = tvm.runtime.tensor(np.zeros(shape, np.uint8))
    ex.mod["main"](tvm.runtime.tensor(x), q)
    expect = np.clip(np.rint(x * inv) + np.float32(qp.zp), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(q.numpy(), expect)
    np.testing.assert_array_equal(q.numpy(), quant.quantize_act(x, qp))


def _vectorized_tir(func, target=BEST_X86) -> str:
    """TIR of ``func`` after TVM's lowering up to loop vectorization."""
    from tvm import s_tir, tirx

    tgt = tvm.target.Target(target)
    mod = tvm.IRModule({"main": func.with_attr("target", tgt)})
    passes = [
        s_tir.transform.LowerInitBlock(),
        s_tir.transform.PlanAndUpdateBufferAllocationLocation(),
        s_tir.transform.ConvertBlocksToOpaque(),
        s_tir.transform.CompactBufferAllocation(),
        s_tir.transform.LowerMatchBuffer(),
        s_tir.transform.LowerOpaqueBlock(),
        tirx.transform.FlattenBuffer(),
        s_tir.transform.LoopPartition(),
        tirx.transform.VectorizeLoop(True),
        tirx.transform.StmtSimplify(),
    ]
    with tgt:
        for p in passes:
            mod = p(mod)
    return mod.script()


@pytest.mark.parametrize("shape", [(4, 8, 8, 24), (2, 4, 4, 144), (2, 16, 16, 3)])
def test_quantize_kernel_vector_accesses_are_contiguous(shape):
    """Vectors stay inside rows: no per-lane div/mod gathers for channel counts that are not
    powers of two (10-30x slower)."""
    text = _vectorized_tir(quantize_kernel(shape, ActQParams.from_range(-1, 1), target=BEST_X86))
    assert "T.Ramp" in text
    assert "% T.Broadcast" not in text and "// T.Broadcast" not in text


@pytest.mark.parametrize("target", isa_params(("avx512_vnni", "avx2"), run=False))
@pytest.mark.parametrize("o", [32, 24])
def test_requant_epilogue_is_vectorized(o, target):
    """Neither the rounding of the uint8 epilogue (``round``, or on x86 the rounding
    conversion ``llvm.lrint``) nor a ragged channel block (24 channels in a 32-channel block)
    may make TVM scalarize the epilogue loop; vectors are as wide as the target's (16 or 8
    lanes), or the largest power of two dividing the channel count."""
    lanes = min(capabilities(target).lanes32, o & -o)
    spec = ConvSpec(2, 6, 6, 16, o, 3, 3, padding=1)
    w = np.random.default_rng(0).standard_normal(spec.weight_shape).astype(np.float32)
    k = conv2d_kernel(spec, "fp32", w, None, act="relu", target=target,
                      out_qparams=ActQParams.from_range(0.0, 4.0))  # fmt: skip
    text = _vectorized_tir(k.prim_func, target)
    rounding = (f'T.call_llvm_pure_intrin("int32x{lanes}", "llvm.lrint"'
                if capabilities(target).rounding_convert else "T.round(")
    assert rounding in text and f'T.Cast("uint8x{lanes}"' in text
    assert 'T.Cast("uint8", ' not in text  # no scalar store left


# ---------------------------------------------------------------------------------------------
# Code generation: VNNI and the non-VNNI fallback
# ---------------------------------------------------------------------------------------------


# Per ISA level: weight formats of int8 / int4 (regular layers), the inner instructions that
# must be in their assembly (AT&T syntax), and int8 dot instructions that must not be.
DOT_ASM = {
    "avx512_vnni": (("v8", "v4"), r"\bvpdpbusd\s[^\n]*%zmm", (r"vpmaddubsw", r"\{vex\}")),
    "avx512bw": (("m8", "m4"), r"\bvpmaddubsw\s[^\n]*%zmm", (r"vpdpbusd",)),
    "avx_vnni": (("v8", "v4"), r"\{vex\}\s*vpdpbusd\s[^\n]*%ymm", (r"vpmaddubsw", r"%zmm")),
    "avx2": (("m8", "m4"), r"\bvpmaddubsw\s[^\n]*%ymm", (r"vpdpbusd", r"%zmm")),
    # Goldmont (Atom): SSSE3's legacy-encoded pmaddubsw, no VEX, no 256-bit registers.
    "ssse3": (("m8", "m4"), r"\bpmaddubsw\s[^\n]*%xmm", (r"vpdpbusd", r"\bv[a-z]", r"%[yz]mm")),
    # x86-64 (SSE2): int8 widened to int16 in registers, pmaddwd; no SSSE3 byte multiply.
    "sse": (("w8", "w4"), r"\bpmaddwd\s[^\n]*%xmm",
            (r"pmaddubsw", r"vpdpbusd", r"\bv[a-z]", r"%[yz]mm")),
}


@pytest.mark.parametrize("target", isa_params(run=False))
@pytest.mark.parametrize("scheme", ["int8", "int4"])
def test_int_kernels_use_the_isa_dot_instruction(scheme, target):
    """Compile-only (every level on every host): each level's int8 dot instruction, at its
    vector width, is what the integer kernels run."""
    caps = capabilities(target)
    formats, pattern, absent = DOT_ASM[caps.isa]
    # The direct kernel (the int16 Winograd one has its own tests: test_winograd_int8.py).
    k, *_ = build_case("conv3x3_s1", scheme, target, winograd=False)
    assert k.info["isa"] == caps.isa
    # int4 may run decoded once into int8 (format name + "d", tests/test_int4_decode.py).
    assert k.info["weight_format"].removesuffix("d") == formats[scheme == "int4"]
    asm = asm_of(compile_kernel(k, target))
    assert len(re.findall(pattern, asm)) >= 4
    for bad in absent:
        assert not re.search(bad, asm), bad
    if caps.isa == "avx_vnni":  # AVX-VNNI: every vpdpbusd is the VEX form
        assert asm.count("vpdpbusd") == len(re.findall(r"\{vex\}\s*vpdpbusd", asm))


@pytest.mark.parametrize("target", isa_params(run=False))
def test_fp32_kernels_use_fma_at_the_target_width(target):
    caps = capabilities(target)
    k, *_ = build_case("conv3x3_s1", "fp32", target)
    assert k.plan.lanes == caps.lanes32 and k.plan.ocb % caps.lanes32 == 0
    asm = asm_of(compile_kernel(k, target))
    if "fma" not in caps.features:  # SSSE3 (Atom): a multiply and an add on xmm
        assert len(re.findall(r"\bmulps\s[^\n]*%xmm", asm)) >= 8
        assert "vfmadd" not in asm and not re.search(r"%[yz]mm", asm)
        return
    reg = "zmm" if caps.vector_bits == 512 else "ymm"
    assert len(re.findall(rf"\bvfmadd\w+\s[^\n]*%{reg}", asm)) >= 8
    if reg == "ymm":
        assert "%zmm" not in asm


@pytest.mark.parametrize("mcpu,fma", [("sandybridge", False), ("bdver2", True)])
def test_avx_without_avx2_runs_float_layers_on_ymm(mcpu, fma):
    """AVX without AVX2 (Sandy Bridge; Piledriver with FMA): ymm registers hold floats but
    not integers, so fp32 and weight-only layers take 8 lanes while int8 keeps the ssse3
    level's xmm; numerics checked where this host runs the target."""
    target = {"kind": "llvm", "mcpu": mcpu, "num-cores": 2}
    caps = capabilities(target)
    assert (caps.isa, caps.vector_bits, caps.float_vector_bits) == ("ssse3", 128, 256)
    multiply = r"vfmadd\w+" if fma else r"vmulps"
    for scheme, lanes in (("fp32", 8), ("w8", 8), ("int8", 4)):
        k, xin, res, ref = build_case("pointwise", scheme, target)
        assert k.plan.lanes == lanes, scheme
        ex = compile_kernel(k, target)
        asm = asm_of(ex)
        if lanes == 8:
            assert len(re.findall(rf"\b{multiply}\s[^\n]*%ymm", asm)) >= 8, scheme
        else:
            assert re.search(r"\bvpmaddubsw\s[^\n]*%xmm", asm)
            # No AVX2 integer arithmetic (AVX's own vptest on ymm is fine).
            assert not re.search(r"\bvp(maddubsw|maddwd|addd|mulld)\s[^\n]*%ymm", asm)
        if runnable(target):
            assert_close(run_kernel(k, xin, res, target, ex), ref.y, scheme)


@pytest.mark.parametrize("mcpu,lanes", [("znver4", 8), ("skylake-avx512", 16)])
def test_fp32_half_width_vectors_where_fma_pipes_are_half_width(mcpu, lanes):
    """24 output channels fill three 8-lane vectors exactly but two 16-lane ones only to
    three quarters: on a core whose 512-bit FMAs issue as two 256-bit halves (Zen 4) the
    planner takes ymm FMAs for them, on a full-width one (Skylake-X) zmm ones; int8 keeps
    the target's width. Compile-time facts (numerics: test_kernel_matches_reference)."""
    target = {"kind": "llvm", "mcpu": mcpu, "num-cores": 2}
    assert capabilities(target).fma_pipe_bits == (256 if mcpu == "znver4" else 512)
    spec = ConvSpec(1, 56, 56, 144, 24, 1, 1)
    w = np.ones(spec.weight_shape, np.float32)
    k = conv2d_kernel(spec, "fp32", w, None, target=target)
    assert k.plan.lanes == lanes and k.plan.ocb % lanes == 0
    reg = "ymm" if lanes == 8 else "zmm"
    asm = asm_of(compile_kernel(k, target))
    assert len(re.findall(rf"\bvfmadd\w+\s[^\n]*%{reg}", asm)) >= 8
    qp = ActQParams.from_range(-1.0, 1.0)
    k8 = conv2d_kernel(spec, "int8", w, None, act_qparams=qp, target=target)
    assert k8.plan.lanes == 16


@pytest.mark.parametrize("scheme,threads,lead", [("fp32", 2, "s0"), ("fp32", 1, "o"),
                                                  ("int8", 2, "o")])
@pytest.mark.usefixtures("zen4_caches")  # 600 KB within its L2 share, 1.6 MB past it
def test_float_1x1_splits_rows_like_its_padded_neighbours(scheme, threads, lead):
    """A 1x1 conv whose weights (600 KB) outweigh its input (7 x 7 x 160) splits output rows
    over several threads in fp32, as the depthwise layers around it do (each core then reads
    the rows it wrote); one thread and the integer formats keep the output-channel order.
    Zen 4's 1 MiB L2 (pinned by zen4_caches on any host) holds the 600 KB."""
    from aiq_tvm.targets.x86 import conv2d as conv_mod

    spec = ConvSpec(1, 7, 7, 160, 960, 1, 1)
    target = {"kind": "llvm", "mcpu": "znver4", "num-cores": threads}
    assert capabilities(target).l2_bytes >= 800 << 10
    assert conv_mod.conv_choice_for(spec, scheme, target).plan.tile.order[0] == lead
    big = ConvSpec(1, 7, 7, 320, 1280, 1, 1)  # 1.6 MB of weights: re-read per row group
    assert conv_mod.conv_choice_for(big, "fp32", target).plan.tile.order[0] == "o"


def _znver4_with_l2(l2_kib: int):
    """The two-core znver4 model with its L2 set to ``l2_kib`` KiB (0: unknown)."""
    from dataclasses import replace

    cpu = cpu_model({"kind": "llvm", "mcpu": "znver4", "num-cores": 2})
    return replace(cpu, caps=replace(cpu.caps, l2_bytes=l2_kib << 10))


@pytest.mark.parametrize("l2_kib,lead", [(1024, "o"), (0, "s0")])
def test_padded_conv_with_weights_past_l2_splits_output_channels(l2_kib, lead):
    """A padded 3x3 conv at 7 x 7 with 4.7 MB of fp32 weights: row tasks would each stream all
    of them (past the L2), so its tasks are output-channel blocks, which read each weight once.
    Where the L2 is unknown the model does not see the re-reads and keeps the row split; a
    conv whose weights stay in the L2 keeps it too."""
    from aiq_tvm.targets.x86 import conv2d as conv_mod

    cpu = _znver4_with_l2(l2_kib)

    def plan_of(spec, scheme="fp32"):
        qmax = cpu.caps.int8_weight_qmax if scheme == "int8" else None
        fmts = conv_mod._layer_formats(spec, get_precision(scheme), qmax, cpu)
        return conv_mod._plan_conv(spec, fmts, cpu)[1].tile

    plan = plan_of(SPLIT_CASES["conv3x3_wide"]["spec"])
    assert plan.order[0] == lead and (plan.par == ("o",)) == (lead == "o")
    assert plan_of(ConvSpec(1, 56, 56, 64, 64, 3, 3, padding=1)).order[0] == "s0"  # 147 KB
    assert plan_of(SPLIT_CASES["conv3x3_wide"]["spec"], "int8").order[0] == lead  # 1.2 MB


@pytest.mark.parametrize("target", isa_params())
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("name", list(SPLIT_CASES))
@pytest.mark.usefixtures("zen4_caches")  # 1.2 MB int8 weights: past Zen 4's L2 share
def test_output_channel_split_conv_matches_reference(name, scheme, target):
    # The direct kernel (4-lane FP32 takes Winograd for these shapes).
    k, xin, res, ref = build_case(name, scheme, target, winograd=False)
    assert k.plan.order[0] == "o"
    body = k.prim_func.script()
    # The padded copy's block comes before the parallel loop: made once.
    assert body.index('T.sblock("pad")') < body.index("T.parallel")
    assert_close(run_kernel(k, xin, res, target), ref.y, scheme)


@pytest.mark.parametrize("scheme,orders", [
    ("fp32", {"conv3x3_wide_b4": "image", "conv1x1_wide_b4": "image"}),
    # int8's 512 KB of 1x1 weights stay in the L2: positions outermost, as before.
    ("int8", {"conv3x3_wide_b4": "image", "conv1x1_wide_b4": ("s0", "s1", "s2", "o")}),
])
@pytest.mark.usefixtures("zen4_caches")
def test_image_tasks_walk_channel_blocks_outermost_past_the_l2(scheme, orders):
    """Image tasks over weights past the L2 share loop over output-channel blocks, then the
    image's positions: each block stays cached while it is used, so a task reads each weight
    once instead of once per row or position block. Batch 1 keeps the channel split."""
    from aiq_tvm.targets.x86 import conv2d as conv_mod

    target = ISA_TARGETS["avx512_vnni"]
    for name, want in orders.items():
        spec = IMAGE_TASK_CASES[name]["spec"]
        tile = conv_mod.conv_choice_for(spec, scheme, target, winograd=False).plan.tile
        want = conv_mod.IMAGE_CHANNEL_ORDER if want == "image" else want
        assert tile.order == want, name
        assert tile.order[0] == "s0" and tile.par[0] == "s0"
        one = conv_mod.conv_choice_for(replace(spec, N=1), scheme, target, winograd=False)
        assert one.plan.tile.order[0] == "o", name


@pytest.mark.usefixtures("zen4_caches")
def test_image_tasks_keep_their_padded_copy_within_the_l2():
    """Image tasks pad a whole image group: past the L2 share that copy goes out to L3 or
    memory and back, so a batch-8 int8 5x5 depthwise conv at 112 x 112 x 96 (a 1.2 MB copy
    per image, past Zen 4's 768 KB share) splits output rows; at 28 x 28 (86 KB) it keeps
    image tasks. (Float and integer 3x3 depthwise convs read their borders inline, no copy.)"""
    from aiq_tvm.targets.x86 import conv2d as conv_mod

    target = ISA_TARGETS["avx512_vnni"]

    def plan(spec, scheme="int8"):
        return conv_mod.conv_choice_for(spec, scheme, target).plan

    big = ConvSpec(8, 112, 112, 96, 96, 5, 5, padding=2, groups=96)
    small = ConvSpec(8, 28, 28, 96, 96, 5, 5, padding=2, groups=96)
    assert plan(big).need_pad and plan(big).tile.par == ("s0", "s1")
    assert plan(small).need_pad and plan(small).tile.par == ("s0",)


@pytest.mark.parametrize("scheme", ["fp32", "int8"])
@pytest.mark.parametrize("name", list(IMAGE_TASK_CASES))
@pytest.mark.usefixtures("zen4_caches")
def test_image_channel_order_conv_matches_reference(name, scheme):
    k, xin, res, ref = build_case(name, scheme, winograd=False)
    assert k.plan.order[0] == "s0"
    assert_close(run_kernel(k, xin, res), ref.y, scheme)


@pytest.mark.usefixtures("zen4_caches")
def test_batch1_float_plans_weigh_the_weights_each_thread_reads_first(monkeypatch):
    """Inception-v3's 3x3 448 -> 384 at 8 x 8, fp32 batch 1 (6.2 MB of weights): row and
    output-channel tasks tie in the compute model, but each row task's thread reads all the
    weights from memory and each channel task's thread half, so the planner takes the
    channel split; without the first-read term the rows win the tie."""
    from aiq_tvm.targets.x86 import conv2d as conv_mod

    spec = ConvSpec(1, 8, 8, 448, 384, 3, 3, padding=1)
    target = ISA_TARGETS["avx512_vnni"]

    def par():
        return conv_mod.conv_choice_for(spec, "fp32", target).plan.tile.par

    assert par() == ("o",)
    monkeypatch.setattr(conv_mod, "FIRST_READ_MAX_BATCH", 0)
    assert par() == ("s0", "s1")


@pytest.mark.usefixtures("zen4_caches")
def test_first_read_counts_the_bytes_a_thread_reads_first():
    """Row tasks: every weight (float32); channel tasks: the thread's half of them plus the
    input the root copy reads; nothing at batch 8 or for int8 weights."""
    from aiq_tvm.targets.x86 import conv2d as conv_mod

    cpu = cpu_model(ISA_TARGETS["avx512_vnni"])
    spec = ConvSpec(1, 8, 8, 448, 384, 3, 3, padding=1)
    choice = conv_mod.conv_choice_for(spec, "fp32", ISA_TARGETS["avx512_vnni"])
    channel = choice.plan
    rows = replace(channel, tile=replace(channel.tile, order=("s0", "s1", "o", "s2"),
                                         par=("s0", "s1")))
    weights = 384 * 448 * 9 * 4
    read = conv_mod._first_read_cycles
    assert read(spec, choice.fmt, rows, cpu, 1.0) == weights
    assert read(spec, choice.fmt, channel, cpu, 1.0) == weights / 2 + 8 * 8 * 448 * 4
    assert read(replace(spec, N=8), choice.fmt, rows, cpu, 1.0) == 0.0
    int8 = conv_mod.conv_choice_for(spec, "int8", ISA_TARGETS["avx512_vnni"])
    assert read(spec, int8.fmt, int8.plan, cpu, 1.0) == 0.0


@pytest.mark.parametrize("l2_kib,lead", [(1024, "s0"), (256, "o"), (0, "o")])
def test_row_split_weights_are_sized_by_the_targets_l2(l2_kib, lead):
    """The row split re-reads a 1x1 conv's weights from each core's L2, so it takes weights
    up to 3/4 of the target's L2 (600 KB: split under 1 MiB, not under 256 KiB) and none
    where the L2 is unknown (0)."""
    from aiq_tvm.targets.x86 import conv2d as conv_mod
    from aiq_tvm.targets.x86.isa import plain_format

    cpu = _znver4_with_l2(l2_kib)
    fmt = plain_format(32, "float32", cpu.throughput)
    weights, inputs = 960 * 160, 7 * 7 * 160
    assert conv_mod._unpadded_order(weights, inputs, 4, fmt, cpu)[0] == lead


@pytest.mark.parametrize("target", isa_params(("avx512_vnni", "avx512bw", "avx_vnni", "avx2"),
                                               run=False))
@pytest.mark.parametrize("scheme", ["int8", "int4"])
def test_rgb_stem_folds_kernel_columns_into_the_reduction(scheme, target):
    """3 input channels pad to a dot group of 4 (or 8): the stem's integer kernels reduce
    over a window row's 7 x 3 values at once, int4 both when it unpacks in the loop and when
    it decodes once (the int8 blocks over the folded scratch); fp32 (no group padding) keeps
    the plain loop."""
    spec, _, w, b, _, qp = make_case("stem7x7_s2")
    for decode in (False, True) if scheme == "int4" else (None,):
        k = conv2d_kernel(spec, scheme, w, b, act_qparams=qp, target=target, decode_once=decode)
        assert "foldkw" in k.info["schedule"]
        assert k.info["decode_once"] == bool(decode)
    k = conv2d_kernel(spec, "fp32", w, b, target=target)
    assert "foldkw" not in k.info["schedule"]


@pytest.mark.parametrize("mcpu,level", [("goldmont", "ssse3"), ("tremont", "ssse3"),
                                        ("sandybridge", "ssse3"), ("x86-64-v2", "ssse3"),
                                        ("x86-64", "sse"), ("haswell", "avx2")])
def test_x86_level_follows_the_targets_features(mcpu, level):
    """SSSE3 without AVX2 (Atom / Celeron, AVX-only cores) gets pmaddubsw on xmm, the SSE2
    baseline pmaddwd on int16-widened bytes (compile-time facts)."""
    caps = capabilities({"kind": "llvm", "mcpu": mcpu})
    assert caps.isa == level and caps.vector_bits == (256 if level == "avx2" else 128)
    assert caps.int8_dot == ("vpmaddwd" if level == "sse" else "vpmaddubsw")
    assert caps.int8_weight_qmax == (127 if level == "sse" else 63)


def test_int8_formats_follow_the_dot_family():  # compile-time facts: no host requirement
    for level, target in ISA_TARGETS.items():
        cpu = cpu_model(target)
        assert cpu.caps.isa == level and cpu.lanes == cpu.caps.lanes32
        assert cpu.dot.weight_qmax == cpu.caps.int8_weight_qmax
    assert capabilities(HASWELL).int8_weight_qmax == 63
    assert capabilities(ZNVER4).int8_weight_qmax == 127


def test_sse_int4_in_loop_format_packs_channel_pairs_per_byte():  # compile-time only
    """SSE2's in-loop int4 (``w4p``): byte j of an output channel's 4-channel block holds
    channels 2j (low nibble) and 2j + 1 (high), each ``q + 8``, so one zero-extension to int16
    words and a mask / shift give the ``(w0, w2)`` / ``(w1, w3)`` words of ``pmaddwd``."""
    from aiq_tvm.targets.x86.common import pack_weight

    sse = ISA_TARGETS["sse"]
    fmts = cpu_model(sse).weight_formats(get_precision("int4"), 7, 36, depthwise=False)
    [w4p] = [f for f in fmts if f.name == "w4p"]
    assert w4p.layout == "v4p" and w4p.group == 4
    q = np.arange(-8, 8, dtype=np.int8)[np.random.default_rng(0).permutation(16)]
    q = q[:8].reshape(1, 8, 1, 1)  # one output channel, 8 input channels: two blocks
    packed = pack_weight(q, w4p, ocb=4)
    assert packed.shape == (1, 1, 1, 2, 4, 2)
    codes = q.reshape(2, 4).astype(int) + 8
    np.testing.assert_array_equal(packed[0, 0, 0, :, 0, :],
                                  codes[:, 0::2] | codes[:, 1::2] << 4)  # fmt: skip
    spec, _, w, b, _, qp = make_case("conv3x3_s1")
    k = conv2d_kernel(spec, "int4", w, b, act_qparams=qp, target=sse, decode_once=False)
    assert k.info["weight_format"] == "w4p"


def test_depthwise_keeps_full_int8_codes_where_pair_sums_saturate():  # compile-time only
    """vpmaddubsw targets narrow 8-bit weights to 7-bit codes (|q| <= 63) because adjacent
    products are summed in int16; depthwise convs reduce over no channels, multiply in int32
    vectors and keep |q| <= 127 (half the rounding error). Numerics: test_int_accumulator_exact
    runs the "depthwise" case at every level."""
    dw = CASES["depthwise"]["spec"]
    for level, target in ISA_TARGETS.items():
        caps = capabilities(target)
        assert caps.layer_int8_weight_qmax(depthwise=True) == 127
        assert caps.layer_int8_weight_qmax(depthwise=False) == caps.int8_weight_qmax
        _, _, w, b, _, qp = make_case("depthwise")
        k = conv2d_kernel(dw, "int8", w, b, act_qparams=qp, target=target)
        assert k.info["weight_qmax"] == 127, level
        assert k.info["weight_format"] == "i8", level  # the exact 32-bit path
    k = conv2d_kernel(dw, "int8", w, b, act_qparams=qp, target=ZNVER4, numerics_target=HASWELL)
    assert k.info["weight_qmax"] == 127
    spec, _, w, b, _, qp = make_case("conv3x3_s1")
    assert conv2d_kernel(spec, "int8", w, b, act_qparams=qp,
                         target=HASWELL).info["weight_qmax"] == 63  # fmt: skip


@requires_vnni_host
@pytest.mark.parametrize("name,fmt", [("conv3x3_s1", "v4"), ("conv3x3_s2", "v4s")])
def test_int4_vnni_block_choice(name, fmt):
    """C=24 takes the 8-channel blocks; C=3 the 4-channel ones (less channel padding)."""
    k, xin, res, ref = build_case(name, "int4", ZNVER4)
    assert k.info["weight_format"] == fmt
    assert_close(run_kernel(k, xin, res, ZNVER4), ref.y, "int4")


def _saturating_pmaddubsw_acc(xq: np.ndarray, q: np.ndarray) -> np.ndarray:
    """What a bare vpmaddubsw chain would compute for a 1x1 conv: byte-pair sums saturated
    to int16, then summed exactly (the failure mode 7-bit weights exist to prevent)."""
    pairs = xq.astype(np.int64)[..., None, :] * q[:, :, 0, 0].astype(np.int64)  # [..., O, C]
    sums = pairs[..., 0::2] + pairs[..., 1::2]
    return np.clip(sums, -(2**15), 2**15 - 1).sum(-1)


def extreme_case(spec: ConvSpec):
    """Weights of equal magnitude (quantized to the largest code) with mixed signs across
    input channels and output channels, all-255 activations (zero point 255): every pair sum
    of a vpmaddubsw chain is as large as the codes allow."""
    sign = np.where(np.arange(spec.C) % 3 == 0, -1.0, 1.0)
    w = np.ones(spec.weight_shape, np.float32) * sign[None, :, None, None]
    w[1::2] *= -1.0
    qp = ActQParams.from_range(-1.0, 0.0)  # zp = 255
    return w, qp, np.full(spec.in_shape, 255, np.uint8)


@pytest.mark.parametrize("target", isa_params(("avx512bw", "avx2")))
def test_vpmaddubsw_saturation_case_is_exact(target):
    """All-255 activations x +-63 weights: every vpmaddubsw pair sum is +-32130, one step from
    saturating; the accumulator is exact. 8-bit codes (127) of a VNNI numerics target on the
    same host run the exact 32-bit path, where the vpmaddubsw chain would saturate."""
    spec = ConvSpec(1, 3, 3, 64, 32, 1, 1)
    w, qp, xq = extreme_case(spec)
    for numerics, fmt in ((None, "m8"), (ZNVER4, "i8")):
        qmax = capabilities(numerics or target).int8_weight_qmax
        k = conv2d_kernel(spec, "int8", w, None, act_qparams=qp, target=target,
                          numerics_target=numerics, debug_acc=True)  # fmt: skip
        assert k.info["weight_format"] == fmt and k.info["weight_qmax"] == qmax
        ref = quant.ref_conv2d(xq, w, None, "int8", act_qparams=qp, int8_qmax=qmax)
        q = get_precision("int8").quantize_weight(w, qmax)[0]
        assert np.abs(q).max() == qmax
        np.testing.assert_array_equal(run_kernel(k, xq, target=target), ref.acc)
        exact = ref.acc + int(qp.zp) * q.reshape(32, -1).astype(np.int64).sum(1)
        saturates = not np.array_equal(_saturating_pmaddubsw_acc(xq, q), exact)
        assert saturates == (qmax > 64)


@requires_host(HASWELL)
@pytest.mark.parametrize("name", ["conv3x3_s2", "dense", "pointwise"])
def test_cross_numerics_codes_reproduced_exactly(name):
    """A host (vpmaddubsw) build with a VNNI deploy target's numerics reproduces its 8-bit
    codes exactly: same accumulators as the reference with int8_qmax 127."""
    kd, xin, res, ref = build_case(name, "int8", HASWELL, debug_acc=True, numerics_target=ZNVER4)
    assert kd.info["weight_qmax"] == 127 and kd.info["weight_format"] == "i8"
    np.testing.assert_array_equal(run_kernel(kd, xin, res, HASWELL), ref.acc)
    own, *_ = build_case(name, "int8", HASWELL, debug_acc=True)
    assert own.info["weight_qmax"] == 63 and own.consts[0].tobytes() != kd.consts[0].tobytes()


# ---------------------------------------------------------------------------------------------
# Kernel record, specs and error handling
# ---------------------------------------------------------------------------------------------


def test_kernel_record_and_attrs():
    k, *_ = build_case("conv3x3_s2", "int8")
    attrs = k.prim_func.attrs
    assert attrs["op_pattern"] == 8
    assert attrs["tirx.is_scheduled"] and attrs["tirx.noalias"]
    assert attrs["tir.is_scheduled"] and attrs["tir.noalias"]
    params = k.prim_func.params
    # acc_init: a 27-value reduction on AVX-512 starts its accumulators at -corr
    assert k.info["params"] == ["x", "weight", "corr", "comb", "bias", "acc_init", "residual",
                                "y"]  # fmt: skip
    assert len(params) == len(k.consts) + 3
    for p, c in zip(params[1 : 1 + len(k.consts)], k.consts, strict=True):
        assert tuple(int(s) for s in p.shape) == c.shape and str(p.dtype) == str(c.dtype)
    assert k.consts[1].dtype == np.int32 and k.consts[2].dtype == np.float32
    kf, *_ = build_case("dense", "w4")
    assert kf.info["params"] == ["x", "weight", "scale", "bias", "residual", "y"]
    assert kf.consts[0].dtype == np.uint8


def test_conv_spec_normalization_and_validation():
    s = ConvSpec(1, 8, 8, 4, 4, 3, 3, stride=2, padding=1)
    assert s.stride == (2, 2) and s.padding == (1, 1, 1, 1) and s.out_shape == (1, 4, 4, 4)
    assert ConvSpec(1, 8, 8, 4, 4, 3, 3, padding=(1, 2)).padding == (1, 2, 1, 2)
    for bad in (
        dict(groups=3),  # does not divide C=4
        dict(padding=-1),
        dict(stride=0),
        dict(KH=0),
        dict(H=1, KH=3),  # empty output
    ):
        kw = dict(N=1, H=8, W=8, C=4, O=4, KH=3, KW=3) | bad
        with pytest.raises(ValueError):
            ConvSpec(**kw)
    with pytest.raises(ValueError):
        DenseSpec(1, 0, 3)


@pytest.mark.parametrize(
    "spec,needle",
    [
        (ConvSpec(1, 8, 8, 8, 8, 3, 3, padding=1, groups=4), "grouped"),
        (ConvSpec(1, 8, 8, 4, 8, 3, 3, padding=1, groups=4), "multiplier"),
    ],
)
def test_unsupported_layers(spec, needle):
    w = np.zeros(spec.weight_shape, np.float32)
    with pytest.raises(UnsupportedLayer, match=needle) as err:
        conv2d_kernel(spec, "fp32", w, None, target=BEST_X86)
    assert isinstance(err.value, ValueError)


def test_bad_arguments():
    spec = ConvSpec(1, 4, 4, 4, 4, 1, 1)
    w = np.zeros(spec.weight_shape, np.float32)
    with pytest.raises(ValueError, match="unknown precision 'int2'; valid precisions: fp32"):
        conv2d_kernel(spec, "int2", w, None, target=BEST_X86)
    with pytest.raises(ValueError, match="act_qparams"):
        conv2d_kernel(spec, "int8", w, None, target=BEST_X86)
    with pytest.raises(ValueError, match="debug_acc"):
        conv2d_kernel(spec, "fp32", w, None, target=BEST_X86, debug_acc=True)
    with pytest.raises(ValueError, match="weight shape"):
        conv2d_kernel(spec, "fp32", np.zeros((4, 4, 3, 3), np.float32), None, target=BEST_X86)
    with pytest.raises(ValueError, match="activation"):
        dense_kernel(DenseSpec(1, 4, 4), "fp32", np.zeros((4, 4)), None, act="gelu",
                     target=BEST_X86)
    with pytest.raises(TypeError):
        conv2d_kernel(spec, "fp32", w, None, target="llvm -mcpu=znver4")


@pytest.mark.parametrize("act", ["relu", "relu6", ("clip", -0.5, 1.25), ("clip", 2.0, 3.0),
                                 ("clip", -30.0, -20.0)])  # fmt: skip
@pytest.mark.parametrize("zp", [0, 3, 128, 255])
@pytest.mark.parametrize("rounding_convert, truncating_narrow",
                         [(False, False), (True, False), (True, True)])
def test_activation_folded_into_the_code_clip(act, zp, rounding_convert, truncating_narrow):
    """``quantize_clipped`` (the requantizing epilogues' activation + quantizer in one clip of
    the codes) == numpy's clip-then-quantize in float32, bit for bit, with ties, bounds whose
    codes fall outside [0, 255] and clip ranges entirely below zero; also in its
    rounding-conversion form (``lrint``, saturating packs), with values beyond int32, and
    narrowed by truncation (no final [0, 255] clip)."""
    from tvm import te

    from aiq_tvm.targets.x86.common import quantize_clipped

    inv = np.float32(4.0)  # scale 0.25: exact ties at x = k / 8
    _, lo, hi = quant.parse_act(act)
    rng = np.random.default_rng(zp)
    x = np.concatenate([(rng.standard_normal(4000) * 40).astype(np.float32),
                        (np.arange(-400, 400) / 8).astype(np.float32),
                        np.float32([lo, hi, -0.0, 1e30, -1e30] if np.isfinite(hi)
                                   else [lo, -0.0, 1e30, -1e30])])  # fmt: skip
    xt = te.placeholder(x.shape, "float32", name="x")
    q_params = te.placeholder((2,), "float32", name="q")
    y = te.compute(x.shape, lambda i: quantize_clipped(xt[i], q_params[0], q_params[1], act,
                                                       rounding_convert, truncating_narrow))
    ex = tvm.compile(tvm.IRModule({"main": te.create_prim_func([xt, q_params, y])}),
                     tvm.target.Target(BEST_X86))  # fmt: skip
    out = tvm.runtime.tensor(np.zeros(x.shape, np.uint8))
    ex.mod["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(np.float32([inv, zp])), out)
    clipped = np.clip(x, np.float32(lo), np.float32(hi)).astype(np.float32)
    expect = np.clip(np.rint(clipped * inv) + np.float32(zp), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(out.numpy(), expect)
    bounds = np.clip(np.rint(np.float32([lo, min(hi, 1e6)]) * inv) + zp, 0, 255)
    assert (expect.min(), expect.max()) == tuple(bounds)  # both code bounds are reached


def _quantize_asm_and_codes(x: np.ndarray, zp: float, truncating_narrow: bool, mcpu: str):
    from tvm import te

    from aiq_tvm.targets.x86.common import quantize_clipped

    xt = te.placeholder(x.shape, "float32", name="x")
    q_params = te.placeholder((2,), "float32", name="q")
    y = te.compute(x.shape, lambda i: quantize_clipped(xt[i], q_params[0], q_params[1], "relu6",
                                                       True, truncating_narrow))
    sch = tvm.s_tir.Schedule(te.create_prim_func([xt, q_params, y]))
    _, vec = sch.split(sch.get_loops(sch.get_sblock("compute"))[0], [None, 16])
    sch.vectorize(vec)
    ex = tvm.compile(sch.mod, tvm.target.Target({"kind": "llvm", "mcpu": mcpu}))
    out = tvm.runtime.tensor(np.zeros(x.shape, np.uint8))
    ex.mod["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(np.float32([4.0, zp])), out)
    return ex.mod.inspect_source("asm"), out.numpy()


@requires_host(ISA_TARGETS["avx512bw"])
def test_truncating_narrow_drops_the_clip_and_keeps_the_codes():
    """On AVX-512 the codes narrow with one truncating ``vpmovdb`` and no [0, 255] clip
    (``TargetCaps.truncating_narrow``), giving the saturating form's codes, NaN included (the
    clip to the activation's code bounds turns it into a bound first)."""
    x = np.float32(np.concatenate([np.linspace(-40, 40, 1024), [np.nan, np.inf, -np.inf,
                                                                 1e30, -1e30, 0.125]]))
    x = np.concatenate([x, np.zeros(16 - x.size % 16, np.float32)])
    asm_t, codes_t = _quantize_asm_and_codes(x, 3.0, True, "skylake-avx512")
    asm_s, codes_s = _quantize_asm_and_codes(x, 3.0, False, "skylake-avx512")
    np.testing.assert_array_equal(codes_t, codes_s)
    assert "vpmovdb" in asm_t and "vpmovusdb" not in asm_t
    assert "vpmovusdb" in asm_s


def test_truncating_narrow_is_an_avx512_capability():
    """Only AVX-512 levels (``vpmovdb`` at every vector width) narrow by truncation; AVX2 and
    older keep the clip and its saturating packs, Arm its own epilogue."""
    narrows = {level: capabilities(ISA_TARGETS[level]).truncating_narrow
               for level in ISA_TARGETS}
    assert narrows == {"avx512_vnni": True, "avx512bw": True, "avx_vnni": False, "avx2": False,
                       "ssse3": False, "sse": False}
    assert not capabilities(ARM_TARGETS["neon_dotprod"]).truncating_narrow


def test_fold_acc_shift():
    """comb / 2**s is returned only where it is exact, and float32(2**s a) * (comb / 2**s)
    equals float32(a) * comb for accumulators beyond float32's 24-bit mantissa."""
    from aiq_tvm.targets.x86.common import fold_acc_shift

    comb = np.float32([3.1e-4, 1.7, 0.05, 7.3e-6])
    folded = fold_acc_shift(comb, 2)
    np.testing.assert_array_equal(folded * np.float32(4), comb)
    a = np.array([1, -7, 2**24 + 1, 2**28 - 3, -(2**27) - 5], np.int64)
    for c, f in zip(comb, folded, strict=True):
        np.testing.assert_array_equal((4 * a).astype(np.float32) * f, a.astype(np.float32) * c)
    assert fold_acc_shift(np.float32([1e-45, 0.5]), 2) is None  # denormal: not exact


# ---------------------------------------------------------------------------------------------
# Depthwise borders read inline (no padded copy)
# ---------------------------------------------------------------------------------------------


def inline_expected(spec, scheme: str, target) -> bool:
    """Float depthwise convs, strided integer ones and 3x3 integer ones whose channels fill
    whole vectors (the layer's: half-width ones on AVX-512 where they fill those) read their
    borders inline (on these small maps the model picks inline wherever it is offered)."""
    from aiq_tvm.targets.x86.conv2d import layer_lanes

    lanes = layer_lanes(spec, cpu_model(tvm.target.Target(target)), scheme)
    return (not is_int(scheme) or spec.stride != (1, 1)
            or (spec.KH * spec.KW <= 9 and spec.C % lanes == 0))


@pytest.mark.parametrize("target", isa_params())
@pytest.mark.parametrize("scheme", ["fp32", "int8", "int4"])
@pytest.mark.parametrize("name", list(BORDER_CASES))
def test_depthwise_border_read_inline_matches_reference(name, scheme, target):
    k, xin, res, ref = build_case(name, scheme, target)
    inline = inline_expected(BORDER_CASES[name]["spec"], scheme, target)
    assert k.info["inline_border"] == inline
    assert k.info["padded_copy"] == (not inline)
    assert _has_block(k.prim_func, "pad") == (not inline)
    assert_close(run_kernel(k, xin, res, target), ref.y, scheme)


def _has_block(func, name: str) -> bool:
    try:
        tvm.s_tir.Schedule(func).get_sblock(name)
    except tvm.s_tir.schedule.ScheduleError:
        return False
    return True


@pytest.mark.parametrize("scheme", ["fp32", "int8"])
def test_inline_border_switch_keeps_the_outputs(scheme, monkeypatch):
    """``AIQ_INLINE_BORDER=0`` makes the padded copy, ``1`` (and the planner, on this small
    3x3 conv) reads inline: the same outputs bit for bit; a bad value is an error naming the
    valid ones."""
    outs = {}
    for env in ("0", "1", ""):
        monkeypatch.setenv("AIQ_INLINE_BORDER", env)
        k, xin, res, ref = build_case("dw_border_3x3", scheme)
        assert k.info["inline_border"] == (env != "0")
        outs[env] = run_kernel(k, xin, res)
    np.testing.assert_array_equal(outs["0"], outs["1"])
    np.testing.assert_array_equal(outs["0"], outs[""])
    monkeypatch.setenv("AIQ_INLINE_BORDER", "yes")
    with pytest.raises(ValueError, match="AIQ_INLINE_BORDER must be 0 or 1"):
        build_case("dw_border_3x3", scheme)


def _unrolled_taps(func) -> bool:
    """Whether the depthwise reduction's ``kh`` and ``kw`` loops are unrolled."""
    sch = tvm.s_tir.Schedule(func)
    kinds = {str(sch.get(lp).loop_var.name): sch.get(lp).kind
             for lp in sch.get_loops(sch.get_sblock("acc_update"))}
    taps = [kind for name, kind in kinds.items() if name in ("kh", "kw")]
    assert len(taps) == 2, kinds
    return all(kind == tvm.tirx.ForKind.UNROLLED for kind in taps)


@pytest.mark.parametrize("scheme", ["fp32", "int8", "int4"])
def test_unrolled_depthwise_taps_keep_the_outputs(scheme, monkeypatch):
    """Depthwise taps are unrolled unless ``AIQ_DW_UNROLL_TAPS=0``; with them as loops an
    integer conv at stride 1 keeps its padded copy (inline reads paid only once unrolled).
    The outputs are the same bit for bit and match numpy's; a bad value is an error."""
    outs = {}
    for env in ("0", "1"):
        monkeypatch.setenv("AIQ_DW_UNROLL_TAPS", env)
        k, xin, res, ref = build_case("dw_border_3x3", scheme)
        assert _unrolled_taps(k.prim_func) == (env == "1")
        assert k.info["inline_border"] == (env == "1" or scheme == "fp32")
        outs[env] = run_kernel(k, xin, res)
        assert_close(outs[env], ref.y, scheme)
    np.testing.assert_array_equal(outs["0"], outs["1"])
    monkeypatch.setenv("AIQ_DW_UNROLL_TAPS", "on")
    with pytest.raises(ValueError, match="AIQ_DW_UNROLL_TAPS must be 0 or 1"):
        build_case("dw_border_3x3", scheme)


def test_large_copied_depthwise_windows_keep_their_row_loop(monkeypatch):
    """Both tap loops are unrolled, except ``kh`` of a window over 25 taps that reads a padded
    copy (7x7 fp32 at 56 x 56 batch 8 ran 0.94x with it unrolled); none with the switch off.
    Only depthwise tiles take unrolled taps."""
    from aiq_tvm.targets.x86.schedules import TilePlan, dw_unrolled_taps

    assert [dw_unrolled_taps(k, k, inline) for k in (3, 5, 7) for inline in (True, False)] == [
        2, 2, 2, 2, 2, 1]
    monkeypatch.setenv("AIQ_DW_UNROLL_TAPS", "0")
    assert dw_unrolled_taps(3, 3, True) == 0
    with pytest.raises(ValueError, match="unrolled_taps=2 needs mode 'dw'"):
        TilePlan((1, 1, 8), 16, 16, "bcast", ("s0",), ("s0",), reduce_names=("kh", "kw"),
                 unrolled_taps=2)


@pytest.mark.parametrize("target", isa_params())
@pytest.mark.parametrize("scheme", ["fp32", "int8"])
def test_narrowing_pointwise_blocks_run_down_the_rows(scheme, target, monkeypatch):
    """fp32 pointwise convs that narrow the channels take register blocks of more than 4 rows
    on AVX-512 where the model ties (``AIQ_PW_ROWS=0``: at most 4, as before); the outputs
    are the same bit for bit and match numpy's. Integer kernels and widening convs keep
    their tiles."""
    rows, outs = {}, {}
    for env in ("0", "1"):
        monkeypatch.setenv("AIQ_PW_ROWS", env)
        k, xin, res, ref = build_case("pw_narrow", scheme, target)
        rows[env] = k.plan.tiles[1]
        outs[env] = run_kernel(k, xin, res, target)
        assert_close(outs[env], ref.y, scheme)
    np.testing.assert_array_equal(outs["0"], outs["1"])
    assert rows["0"] <= 4
    if scheme != "fp32":
        assert rows["1"] == rows["0"]
    elif cpu_model(tvm.target.Target(target)).lanes == 16:  # 14 blocked positions
        assert rows["1"] > 4, rows
    else:  # fewer accumulators: blocks of at most 4 positions, more rows on ties
        assert rows["1"] >= rows["0"], rows
    from aiq_tvm.targets.x86 import conv2d as conv_mod

    widening = ConvSpec(2, 14, 9, 16, 48, 1, 1)
    assert conv_mod.conv_choice_for(widening, "fp32", target).plan.tile.tiles[1] <= 4
    monkeypatch.setenv("AIQ_PW_ROWS", "2")
    with pytest.raises(ValueError, match="AIQ_PW_ROWS must be 0 or 1"):
        build_case("pw_narrow", scheme, target)


@pytest.mark.parametrize("kernel,inline", [(3, True), (5, False), (7, False)])
def test_integer_stride1_depthwise_reads_inline_only_for_3x3(kernel, inline, monkeypatch):
    """Unrolled int8 depthwise convs at stride 1 that widen their uint8 input in place read
    their borders inline only for 3x3 windows: 5x5 ran 0.71-0.75x and 7x7 0.83-1.08x inline
    (docs/runs/s28/dw_border_int8.txt), though the model would read a batch-1 5x5 inline."""
    from aiq_tvm.targets.x86 import conv2d as conv_mod

    monkeypatch.setenv("AIQ_DW_FLOAT_INPUT", "0")  # the in-place conversion

    spec = ConvSpec(1, 28, 28, 240, 240, kernel, kernel, padding=kernel // 2, groups=240)
    plan = conv_mod.conv_choice_for(spec, "int8", ISA_TARGETS["avx512_vnni"]).plan
    assert (plan.inline_border, plan.need_pad) == (inline, not inline)


def _level_with_l2(level: str, l2_kib: int):
    """The CPU model of ``level``'s test target with its L2 set to ``l2_kib`` KiB (the rule
    below depends on it, and the targets take this host's)."""
    from dataclasses import replace

    cpu = cpu_model(ISA_TARGETS[level])
    return replace(cpu, caps=replace(cpu.caps, l2_bytes=l2_kib << 10))


def _float_reads(spec: ConvSpec, scheme: str, level: str, l2_kib: int = 2048) -> bool:
    from aiq_tvm.targets.x86 import conv2d as conv_mod

    return conv_mod._float_input(spec, get_precision(scheme), _level_with_l2(level, l2_kib))


@pytest.mark.parametrize("n,h,c,kernel,stride,level,l2_kib,expected", [
    (1, 28, 192, 7, 1, "avx512_vnni", 2048, True),
    (1, 14, 672, 5, 1, "avx512bw", 2048, True),
    (1, 28, 192, 7, 1, "avx512_vnni", 1024, False),  # a 602 KB copy: past half a 1 MiB L2
    (1, 28, 240, 3, 1, "avx512_vnni", 2048, False),  # 9 taps: the in-place widening pays
    (1, 28, 40, 5, 1, "avx512_vnni", 2048, False),  # few channels keep cheap in-place tiles
    (1, 56, 144, 5, 2, "avx512_vnni", 2048, False),  # stride 2: the copy converts 4x the outputs
    (8, 28, 240, 5, 1, "avx512_vnni", 2048, False),  # a 6 MB copy
    (1, 28, 192, 7, 1, "avx2", 2048, False),  # lost on haswell
])
def test_integer_depthwise_reads_a_float_copy_where_it_pays(n, h, c, kernel, stride, level,
                                                            l2_kib, expected):  # fmt: skip
    """int8 / int4 depthwise convs of more than 9 taps read a float32 copy of their input on
    AVX-512 levels (``conv2d._float_input``), and then plan on float reads."""
    from aiq_tvm.targets.x86 import conv2d as conv_mod

    spec = ConvSpec(n, h, h, c, c, kernel, kernel, stride=stride, padding=kernel // 2,
                    groups=c)  # fmt: skip
    for scheme in ("int8", "int4"):
        assert _float_reads(spec, scheme, level, l2_kib) == expected, scheme
        cpu = _level_with_l2(level, l2_kib)
        fmts = conv_mod._layer_formats(spec, get_precision(scheme), 127, cpu)
        assert [f.in_dtype == "float32" for f in fmts] == [expected], fmts
    assert not _float_reads(spec, "fp32", level, l2_kib)  # float layers have nothing to convert


def test_float_copy_switch_forces_or_keeps_the_in_place_widening(monkeypatch):
    """``AIQ_DW_FLOAT_INPUT``: ``1`` takes the copy wherever an integer depthwise conv sums in
    float (here a 3x3 on haswell, which the rule leaves in place), ``0`` never."""
    small = ConvSpec(1, 14, 14, 32, 32, 3, 3, padding=1, groups=32)
    big = ConvSpec(1, 28, 28, 192, 192, 7, 7, padding=3, groups=192)
    assert not _float_reads(small, "int8", "avx2") and _float_reads(big, "int8", "avx512bw")
    monkeypatch.setenv("AIQ_DW_FLOAT_INPUT", "1")
    assert _float_reads(small, "int8", "avx2")
    monkeypatch.setenv("AIQ_DW_FLOAT_INPUT", "0")
    assert not _float_reads(big, "int8", "avx512bw")
    monkeypatch.setenv("AIQ_DW_FLOAT_INPUT", "yes")
    with pytest.raises(ValueError, match="AIQ_DW_FLOAT_INPUT must be 0 or 1"):
        _float_reads(big, "int8", "avx512bw")


@requires_host(ISA_TARGETS["avx512bw"])
@pytest.mark.parametrize("scheme", ["int8", "int4"])
def test_float_copy_depthwise_matches_reference_and_in_place(scheme, monkeypatch):
    """The float-copy depthwise kernel gives the numpy reference's outputs and the in-place
    kernel's bit for bit (same products and float-exact sums), borders included."""
    target = ISA_TARGETS["avx512bw"]
    spec = ConvSpec(2, 9, 11, 64, 64, 7, 7, padding=(3, 2, 3, 4), groups=64)
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(spec.in_shape) + 0.3).astype(np.float32)
    w = (rng.standard_normal(spec.weight_shape) / 7).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    qp = ActQParams.from_range(float(x.min()), float(x.max()))
    xq = quant.quantize_act(x, qp)
    outs = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("AIQ_DW_FLOAT_INPUT", flag)
        k = conv2d_kernel(spec, scheme, w, b, act="relu6", act_qparams=qp, target=target)
        assert k.info["float_input"] == (flag == "1") and k.in_dtype == "uint8"
        outs[flag] = run_kernel(k, xq, target=target)
    ref = quant.ref_conv2d(x, w, b, scheme, stride=spec.stride, padding=spec.padding,
                           groups=spec.groups, act="relu6", act_qparams=qp,
                           int8_qmax=testing.int8_qmax(spec, target))  # fmt: skip
    assert_close(outs["1"], ref.y, scheme)
    np.testing.assert_array_equal(outs["1"], outs["0"])
    monkeypatch.setenv("AIQ_DW_FLOAT_INPUT", "1")
    k = conv2d_kernel(spec, scheme, w, b, act="relu6", act_qparams=qp, target=target,
                      debug_acc=True)  # fmt: skip
    np.testing.assert_array_equal(run_kernel(k, xq, target=target), ref.acc)


def test_int4_depthwise_weights_are_float_codes_unless_a_decode_form_is_asked():
    """int4 depthwise convs store their 4-bit codes as float32 constants (int8's format; no
    nibble unpacking per block or per call) unless ``decode_once`` asks for a 4-bit form."""
    spec = ConvSpec(1, 8, 8, 32, 32, 3, 3, padding=1, groups=32)
    w = np.random.default_rng(0).standard_normal(spec.weight_shape).astype(np.float32)
    qp = ActQParams.from_range(-0.2, 3.0)
    k = conv2d_kernel(spec, "int4", w, None, act_qparams=qp, target=ISA_TARGETS["avx512bw"])
    assert k.info["weight_format"] == "i8" and k.consts[0].dtype == np.float32
    assert np.abs(k.consts[0]).max() <= 8
    for decode in (True, False):
        k = conv2d_kernel(spec, "int4", w, None, act_qparams=qp,
                          target=ISA_TARGETS["avx512bw"], decode_once=decode)  # fmt: skip
        assert k.info["weight_format"].startswith("i4"), k.info["weight_format"]


@pytest.mark.parametrize("c,kernel,stride,lanes,unroll", [
    (72, 3, 1, 8, "1"), (72, 5, 2, 8, "1"), (200, 3, 1, 8, "1"), (120, 5, 1, 8, "1"),
    (120, 5, 1, 16, "0"), (72, 3, 1, 8, "0"), (96, 3, 1, 16, "1")])
def test_float_depthwise_narrows_vectors_to_read_borders_inline(c, kernel, stride, lanes,
                                                                unroll, monkeypatch):
    """On AVX-512, depthwise channels that fill 8-lane vectors but not 16-lane ones take 8
    lanes and read their borders inline; with the taps as loops not 5x5 windows at stride 1
    (full width with a copy). int8 takes the same lanes (its full-width kernel computed and
    dropped half of the last vector: 1.0-1.6x slower, docs/runs/s36/dw_int8_half.txt). AVX2's
    8 lanes are whole vectors for them already."""
    from aiq_tvm.targets.x86 import conv2d as conv_mod

    monkeypatch.setenv("AIQ_DW_UNROLL_TAPS", unroll)
    spec = ConvSpec(1, 28, 28, c, c, kernel, kernel, stride=stride, padding=kernel // 2,
                    groups=c)
    avx512 = ISA_TARGETS["avx512_vnni"]
    plan = conv_mod.conv_choice_for(spec, "fp32", avx512).plan
    assert (plan.tile.lanes, plan.inline_border) == (lanes, c % lanes == 0)
    assert plan.need_pad == (not plan.inline_border)
    assert conv_mod.conv_choice_for(spec, "int8", avx512).plan.tile.lanes == lanes
    avx2 = conv_mod.conv_choice_for(spec, "fp32", ISA_TARGETS["avx2"]).plan
    assert (avx2.tile.lanes, avx2.inline_border) == (8, True)


# ---------------------------------------------------------------------------------------------
# Integer depthwise convs accumulate in float32 where that is exact
# ---------------------------------------------------------------------------------------------


def _acc_dtype(func) -> str:
    sch = tvm.s_tir.Schedule(func)
    return str(sch.get(sch.get_sblock("acc")).writes[0].source.dtype)


@pytest.mark.parametrize("scheme", ["int8", "int4"])
@pytest.mark.parametrize("name", ["depthwise", "dw_border_3x3", "dw_border_5x5_s2"])
def test_integer_depthwise_float_accumulation_is_bit_exact(name, scheme, monkeypatch):
    """The float32 sum of uint8 x code products is exact (below 2**24): the int32 accumulator
    the debug output shows, and the outputs, are those of the int32 path bit for bit
    (``AIQ_DW_FLOAT_ACC=0``)."""
    outs = {}
    for env in ("0", ""):
        monkeypatch.setenv("AIQ_DW_FLOAT_ACC", env)
        plain = build_case(name, scheme, schedule=False)[0].prim_func  # blocks as written
        assert _acc_dtype(plain) == ("int32" if env == "0" else "float32")
        for debug in (False, True):
            k, xin, res, ref = build_case(name, scheme, debug_acc=debug)
            outs[env, debug] = run_kernel(k, xin, res)
        np.testing.assert_array_equal(outs[env, True], ref.acc)
    np.testing.assert_array_equal(outs["0", False], outs["", False])


def test_float_accumulation_stops_where_sums_could_pass_2_to_the_24(monkeypatch):
    from aiq_tvm.targets.x86 import conv2d as conv_mod

    def spec(k):
        return ConvSpec(1, 30, 30, 16, 16, k, k, padding=k // 2, groups=16)

    assert conv_mod._float_exact_depthwise(spec(21))  # 441 taps x 255 x 128 < 2**24
    assert not conv_mod._float_exact_depthwise(spec(23))  # 529 taps
    monkeypatch.setenv("AIQ_DW_FLOAT_ACC", "on")
    with pytest.raises(ValueError, match="AIQ_DW_FLOAT_ACC must be 0 or 1"):
        conv_mod._float_exact_depthwise(spec(3))


@pytest.mark.parametrize("name", ["depthwise", "dw_border_3x3", "dw_border_5x5_s2"])
def test_float_summed_depthwise_keeps_int8_weight_codes_as_floats(name, monkeypatch):
    """Where an int8 depthwise conv sums in float32, its weight codes are float32 constants
    (no widening per tap) holding the same integers; the outputs are bit for bit those of the
    int8 constants (``AIQ_DW_FLOAT_WEIGHTS=0``), and the int32 path keeps int8 constants."""
    cases = {}
    for acc, weights in (("", ""), ("", "0"), ("0", "")):
        monkeypatch.setenv("AIQ_DW_FLOAT_ACC", acc)
        monkeypatch.setenv("AIQ_DW_FLOAT_WEIGHTS", weights)
        k, xin, res, ref = build_case(name, "int8")
        cases[acc, weights] = (k.consts[0], run_kernel(k, xin, res))
        assert_close(cases[acc, weights][1], ref.y, "int8")
    floats, codes = cases["", ""][0], cases["", "0"][0]
    assert (floats.dtype, codes.dtype, cases["0", ""][0].dtype) == (np.float32, np.int8, np.int8)
    np.testing.assert_array_equal(floats, codes.astype(np.float32))
    np.testing.assert_array_equal(cases["", ""][1], cases["", "0"][1])
    monkeypatch.setenv("AIQ_DW_FLOAT_WEIGHTS", "yes")
    with pytest.raises(ValueError, match="AIQ_DW_FLOAT_WEIGHTS must be 0 or 1"):
        build_case(name, "int8")


@pytest.mark.parametrize("n,h,c,inline", [(1, 56, 96, True), (8, 56, 96, False),
                                          (8, 28, 192, False), (8, 14, 384, True),
                                          (8, 7, 768, True)])
def test_planner_weighs_inline_borders_against_the_copy(n, h, c, inline):
    """ConvNeXt's fp32 7x7 depthwise layers with a 2 MiB L2 (the host they were timed on):
    the bounds checks on 49 taps cost more than a copy made once per image at batch 8 on the
    large maps (the copy ran 1.22x and 1.11x faster there), less elsewhere; 3x3 layers always
    read inline. With a 1 MiB L2 the 56 x 56 image's copy (1.5 MB) no longer fits and would
    be made per row group (with overlap), so the model reads inline there too."""
    from aiq_tvm.targets.x86 import conv2d as conv_mod

    def plan(spec, l2_kib=2048):
        cpu = _znver4_with_l2(l2_kib)
        fmts = conv_mod._layer_formats(spec, get_precision("fp32"), None, cpu)
        return conv_mod._plan_conv(spec, fmts, cpu)[1]

    spec = ConvSpec(n, h, h, c, c, 7, 7, padding=3, groups=c)
    assert plan(spec).inline_border == inline
    assert plan(replace(spec, KH=3, KW=3, padding=(1, 1, 1, 1))).inline_border
    if (n, h) == (8, 56):
        assert plan(spec, 1024).inline_border


@pytest.mark.parametrize("target", isa_params(("avx512_vnni", "avx512bw")))
@pytest.mark.parametrize("c", [72, 58])
def test_ragged_channels_requantize_in_whole_vectors(c, target, monkeypatch):
    """72 or 58 channels in 16-lane blocks (int8 depthwise at full width, uint8 output): the
    epilogue stores 8-lane vectors; 72 = 9 of them, 58 leaves one that straddles the edge,
    which the loop partition runs lane by lane. A lane-wise guard on every vector made
    VectorizeLoop run the requantize per lane (72: 231 against 106 us, one thread, this host;
    docs/runs/s36/kt_epilogue.txt), and 2-lane vectors for 58 ran 1.7x the 8-lane ones
    (docs/runs/s36/store_width.txt)."""
    from aiq_tvm.targets.x86 import conv2d as conv_mod

    monkeypatch.setattr(conv_mod, "DW_HALF_WIDTH_INT", False)
    spec = ConvSpec(1, 6, 7, c, c, 3, 3, padding=1, groups=c)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 3, spec.in_shape).astype(np.float32)
    w = rng.standard_normal(spec.weight_shape).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    qp, oq = ActQParams.from_range(0.0, 3.0), ActQParams.from_range(0.0, 6.0)
    k = conv2d_kernel(spec, "int8", w, b, act="relu", act_qparams=qp, out_qparams=oq,
                      target=target)
    assert (k.plan.lanes, k.out_dtype) == (16, "uint8")
    sch = tvm.s_tir.Schedule(k.prim_func)
    store = sch.get(sch.get_loops(sch.get_sblock("out"))[-1])
    assert int(store.extent) == 8 and store.kind == tvm.tirx.ForKind.VECTORIZED
    ref = testing.reference(spec, "int8", x, w, b, target=target, act="relu", act_qparams=qp,
                            out_qparams=oq)
    y = run_kernel(k, quant.quantize_act(x, qp), target=target).astype(np.int32)
    # the float32 epilogue may round a tie the other way than the float64 reference
    assert np.abs(y - ref.q.astype(np.int32)).max() <= 1
    assert np.mean(y == ref.q) > 0.99
