"""FuseTransposeIntoPad: a float32 conv kernel whose padded copy reads a transposed tensor reads
the tensor itself (structure), with the same outputs bit for bit and torch's conv (numpy
reference); kernels that read their input outside the copy are left alone."""

import numpy as np
import pytest
import tvm
from tvm import relax

from aiq_tvm._ir import tir_blocks
from aiq_tvm.passes import FuseTransposeIntoPad
from aiq_tvm.passes.fuse_transpose_into_pad import PAD_BLOCK, read_untransposed
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from relax_cases import compile_run, op_calls

# A stem: 3 input channels, 3x3 stride 2 over a padded map (the kernels copy such inputs).
STEM = ConvSpec(2, 20, 20, 3, 16, 3, 3, stride=2, padding=1)
# A 1x1 conv reads its input in its register blocks, with no copy.
POINTWISE = ConvSpec(2, 20, 20, 3, 16, 1, 1)


def _kernel(spec: ConvSpec, target, seed: int = 0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((spec.O, spec.C, spec.KH, spec.KW)).astype(np.float32)
    b = rng.standard_normal(spec.O).astype(np.float32)
    return conv2d_kernel(spec, "fp32", w, b, target=target), w, b


def _module(kernel, spec: ConvSpec, keep_transpose: bool = False) -> tvm.IRModule:
    """main(x NCHW float32): the kernel over x transposed to NHWC; ``keep_transpose`` also
    returns the transpose, so it stays needed."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((spec.N, spec.C, spec.H, spec.W), "float32"))
    func = kernel.prim_func.without_attr("global_symbol")
    with bb.function("main", [x]):
        with bb.dataflow():
            t = bb.emit(relax.op.permute_dims(x, [0, 2, 3, 1]))
            consts = [relax.const(c) for c in kernel.consts]
            y = bb.emit(relax.call_tir(bb.add_func(func, "stem_fp32"), [t, *consts],
                                       out_ty=relax.TensorType(kernel.out_shape, "float32")))
            out = bb.emit_output(relax.Tuple([y, t]) if keep_transpose else y)
        bb.emit_func_output(out)
    return bb.get()


def _torch_conv(x, w, b, spec: ConvSpec) -> np.ndarray:
    import torch

    y = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b),
                                   stride=spec.stride, padding=spec.padding[:2])
    return y.numpy().transpose(0, 2, 3, 1)


def _pad_blocks_reading_input(func) -> int:
    x = func.params[0]
    return sum(1 for blk in tir_blocks(func.body) if blk.name_hint == PAD_BLOCK
               and any(r.source.same_as(x) for r in blk.reads))


@pytest.mark.parametrize("keep_transpose", [False, True])
def test_the_padded_copy_reads_the_untransposed_input_with_the_same_outputs(
        target, keep_transpose):
    kernel, w, b = _kernel(STEM, target)
    assert _pad_blocks_reading_input(kernel.prim_func) == 1  # the case this pass is for
    before = _module(kernel, STEM, keep_transpose)
    after = FuseTransposeIntoPad()(before)
    ops = op_calls(after)
    # The name keeps the precision last: the profiler finds layer kernels by that suffix.
    assert "relax.call_tir:stem_untransposed_fp32" in ops and "relax.call_tir:stem_fp32" not in ops
    assert ("relax.permute_dims" in ops) == keep_transpose
    new = after["stem_untransposed_fp32"]
    assert [int(d) for d in new.params[0].shape] == [STEM.N, STEM.C, STEM.H, STEM.W]
    x = np.random.default_rng(1).standard_normal((STEM.N, STEM.C, STEM.H, STEM.W))
    x = x.astype(np.float32)
    got, ref = compile_run(after, target, x), compile_run(before, target, x)
    if keep_transpose:
        got, ref = got[0], ref[0]
    np.testing.assert_array_equal(got.numpy(), ref.numpy())
    np.testing.assert_allclose(got.numpy(), _torch_conv(x, w, b, STEM), rtol=1e-5, atol=1e-5)


def test_a_kernel_other_layers_share_keeps_serving_them(target):
    # Two layers of one shape run one kernel; only the call on the transposed input changes.
    kernel, w, b = _kernel(STEM, target)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((STEM.N, STEM.C, STEM.H, STEM.W), "float32"))
    z = relax.Var("z", relax.TensorType((STEM.N, STEM.H, STEM.W, STEM.C), "float32"))
    out_ty = relax.TensorType(kernel.out_shape, "float32")
    with bb.function("main", [x, z]):
        with bb.dataflow():
            gv = bb.add_func(kernel.prim_func.without_attr("global_symbol"), "stem_fp32")
            consts = [relax.const(c) for c in kernel.consts]
            t = bb.emit(relax.op.permute_dims(x, [0, 2, 3, 1]))
            y1 = bb.emit(relax.call_tir(gv, [t, *consts], out_ty=out_ty))
            y2 = bb.emit(relax.call_tir(gv, [z, *consts], out_ty=out_ty))
            out = bb.emit_output(relax.Tuple([y1, y2]))
        bb.emit_func_output(out)
    before = bb.get()
    after = FuseTransposeIntoPad()(before)
    ops = op_calls(after)
    assert ops.count("relax.call_tir:stem_untransposed_fp32") == 1
    assert ops.count("relax.call_tir:stem_fp32") == 1 and "relax.permute_dims" not in ops
    rng = np.random.default_rng(3)
    xs = rng.standard_normal((STEM.N, STEM.C, STEM.H, STEM.W)).astype(np.float32)
    zs = rng.standard_normal((STEM.N, STEM.H, STEM.W, STEM.C)).astype(np.float32)
    got, ref = compile_run(after, target, xs, zs), compile_run(before, target, xs, zs)
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_array_equal(g.numpy(), r.numpy())
    np.testing.assert_allclose(got[0].numpy(), _torch_conv(xs, w, b, STEM), rtol=1e-5, atol=1e-5)


def test_a_kernel_reading_its_input_in_its_register_blocks_is_left_alone(target):
    kernel, _, _ = _kernel(POINTWISE, target)
    assert _pad_blocks_reading_input(kernel.prim_func) == 0
    assert read_untransposed(kernel.prim_func, 0, (0, 2, 3, 1)) is None
    before = _module(kernel, POINTWISE)
    assert FuseTransposeIntoPad()(before).same_as(before)


def test_a_constant_parameter_is_not_taken_for_the_input(target):
    # The weights are read by the register blocks: no rewrite of any other parameter.
    kernel, _, _ = _kernel(STEM, target)
    for param in range(1, len(kernel.prim_func.params)):
        assert read_untransposed(kernel.prim_func, param, (0, 2, 3, 1)) is None


def test_the_first_layer_of_an_fp32_build_reads_the_model_input(target):
    import re

    import torch

    import aiq_tvm

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(16, 8, 1)).eval()
    x = np.random.default_rng(2).standard_normal((2, 3, 24, 24)).astype(np.float32)
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(x))
    res = aiq_tvm.build(mod, params=params, plan="fp32", batch_size=2, target=target)
    calls = re.findall(r"call\s+(\w+)", res.executable(2).as_text())
    # The stem reads x; the one transpose left is the output map's NHWC -> NCHW.
    assert "0_untransposed_fp32" in calls and "0_fp32" not in calls
    assert calls.count("transpose") == 1
    got = res.vm(2)["main"](tvm.runtime.tensor(x)).numpy()
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
