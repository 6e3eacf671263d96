"""FuseQuantizeIntoGlue: the quantize after a squeeze-and-excitation scale becomes Relax ops that
TVM fuses into the scale's kernel (no float32 tensor between them), with the same codes."""

import numpy as np
import pytest
import torch
import tvm
from random_cnns import FP32_TOL, INT8_TOL, CnnCase, build_and_compare
from tvm import relax

from aiq_tvm.passes import FuseQuantizeIntoGlue
from aiq_tvm.pipeline import legalize_passes, schedule_passes
from aiq_tvm.quant import ActQParams, quantize_act
from aiq_tvm.targets.x86 import quantize_kernel
from relax_cases import compile_run

QP = ActQParams.from_range(-0.5, 3.0)
X, G = (2, 8, 8, 16), (1, 1, 1, 16)


def _se_scale_then_quantize(target, keep_float: bool = False) -> tvm.IRModule:
    """main(x, g) = quantize(x * sigmoid(g)), NHWC; ``keep_float`` also returns the product."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(X, "float32"))
    g = relax.Var("g", relax.TensorType(G, "float32"))
    qf = quantize_kernel(X, QP, target=target).without_attr("global_symbol")
    with bb.function("main", [x, g]):
        with bb.dataflow():
            scaled = bb.emit(relax.op.multiply(x, bb.emit(relax.op.sigmoid(g))))
            q = bb.emit(relax.call_tir(bb.add_func(qf, "conv_quantize"), [scaled],
                                       out_ty=relax.TensorType(X, "uint8")))
            out = bb.emit_output(relax.Tuple([q, scaled]) if keep_float else q)
        bb.emit_func_output(out)
    return bb.get()


def _calls(mod) -> list[tuple[str, str, tuple]]:
    """(callee, output dtype, output shape) of main's call_tir calls."""
    out = []

    def visit(e):
        if isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op) \
                and e.op.name == "relax.call_tir":
            out.append((e.args[0].name_hint, str(e.ty.dtype),
                        tuple(int(d) for d in e.ty.shape)))

    relax.analysis.post_order_visit(mod["main"].body, visit)
    return out


def test_the_quantize_fuses_into_the_scale_with_the_same_codes(target):
    before = _se_scale_then_quantize(target)
    after = FuseQuantizeIntoGlue()(before)
    assert not _calls(after)  # the quantize kernel call is gone
    with tvm.target.Target(target):
        legalized = tvm.transform.Sequential(legalize_passes(target))(after)
    # One kernel for the scale and the quantize: no kernel writes the float32 product.
    assert [dt for _, dt, shape in _calls(legalized) if shape == X] == ["uint8"]
    # Its rounding is tirx.round (VectorizableMath), which vectorizes; TOPI's nearbyint made
    # the whole fused loop scalar (EfficientNet-B0 int8 1.4x slower than the quantize kernel).
    with tvm.target.Target(target):
        scheduled = tvm.transform.Sequential(schedule_passes(target))(legalized)
    fused = [f.script() for _, f in scheduled.functions_items()
             if isinstance(f, tvm.tirx.PrimFunc) and "uint8" in f.script()]
    assert len(fused) == 1 and "T.round(" in fused[0] and "nearbyint" not in fused[0]
    assert "T.vectorized" in fused[0]
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(X) * 2).astype(np.float32)
    g = rng.standard_normal(G).astype(np.float32)
    got, ref = compile_run(after, target, x, g).numpy(), compile_run(before, target, x, g)
    np.testing.assert_array_equal(got, ref.numpy())
    # The float product computed as the kernel does, quantized by the numpy reference.
    scaled = compile_run(_product(), target, x, g).numpy()
    np.testing.assert_array_equal(got, quantize_act(scaled, QP))


def _product() -> tvm.IRModule:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(X, "float32"))
    g = relax.Var("g", relax.TensorType(G, "float32"))
    with bb.function("main", [x, g]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.multiply(x, relax.op.sigmoid(g)))
        bb.emit_func_output(out)
    return bb.get()


@pytest.mark.parametrize("case", ["float product also returned", "not after a glue op"])
def test_other_quantizes_are_left_alone(target, case):
    if case == "float product also returned":
        before = _se_scale_then_quantize(target, keep_float=True)
    else:
        before = _se_scale_then_quantize(target)
        before = relax.transform.LegalizeOps()(before)  # the scale is a call_tir now
    after = FuseQuantizeIntoGlue()(before)
    tvm.ir.assert_structural_equal(after, before)


def _nchw_add_then_transposing_quantize(target) -> tvm.IRModule:
    """main(x, y) = quantize(permute_dims(x + y, NCHW -> NHWC)) as FuseTransposeQuantize leaves
    it: one kernel that transposes while it quantizes, reading an elementwise op's result."""
    nchw = (X[0], X[3], X[1], X[2])
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(nchw, "float32"))
    y = relax.Var("y", relax.TensorType(nchw, "float32"))
    qf = quantize_kernel(X, QP, target=target, axes=(0, 2, 3, 1)).without_attr("global_symbol")
    with bb.function("main", [x, y]):
        with bb.dataflow():
            total = bb.emit(relax.op.add(x, y))
            q = bb.emit_output(relax.call_tir(bb.add_func(qf, "conv_quantize_transposed"),
                                              [total], out_ty=relax.TensorType(X, "uint8")))
        bb.emit_func_output(q)
    return bb.get()


def test_a_transposing_quantize_is_left_alone(target):
    # As Relax ops it would quantize in the producer's NCHW layout and hand the next layer
    # kernel a tensor of the wrong shape.
    before = _nchw_add_then_transposing_quantize(target)
    tvm.ir.assert_structural_equal(FuseQuantizeIntoGlue()(before), before)


class _FP32LayerResidual(torch.nn.Module):
    """A grouped conv of 2 channels per group (no AIQ kernel: FP32, NCHW) whose residual add
    feeds an int8 layer."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(8, 16, 1)
        self.narrow_groups = torch.nn.Conv2d(16, 16, 3, padding=1, groups=8)
        self.b = torch.nn.Conv2d(16, 16, 1)

    def forward(self, x):
        y = torch.relu(self.a(x))
        return self.b(torch.relu(self.narrow_groups(y)) + y)


def test_an_fp32_layer_before_a_residual_add_and_an_int8_layer_builds_and_matches_torch():
    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((2, 8, 12, 12)).astype(np.float32)
    errors = build_and_compare(CnnCase(0, _FP32LayerResidual().eval(), x))
    assert errors["fp32"] < FP32_TOL and errors["int8"] < INT8_TOL, errors
