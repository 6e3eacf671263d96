"""Standalone activation quantization kernel: float32 -> uint8 (per-tensor affine)."""

from __future__ import annotations

import tvm
from tvm import s_tir, te

from aiq_tvm.quant import ActQParams
from aiq_tvm.targets.capabilities import capabilities

from .common import as_target, finalize, quantize_value
from .schedules import schedule_elementwise

# Function attribute of every quantize kernel: its (scale, zero point, inv), so a pass can
# rebuild the kernel for another input layout (FuseTransposeQuantize).
QUANTIZE_ATTR = "aiq.quantize"
# Function attribute of a quantize kernel that also transposes: the permutation of its input's
# axes (``permute_dims`` axes). Such a kernel is not elementwise (FuseQuantizeIntoGlue).
QUANTIZE_AXES_ATTR = "aiq.quantize_axes"
_UNROLL_LAST = 4  # a transposing kernel's innermost axis this short (RGB channels) is unrolled


def quantize_kernel(shape, act_qparams: ActQParams, *, target, axes=None) -> tvm.tirx.PrimFunc:
    """Scheduled PrimFunc ``(x float32[shape], q uint8[shape])`` quantizing activations.

    ``q = uint8(clip(rint(x * inv) + zp, 0, 255))`` in float32 arithmetic, bit-exact with
    :func:`aiq_tvm.quant.quantize_act` (rounding half to even like ``np.rint``; multiplying by
    ``inv`` instead of dividing by ``scale`` is part of the contract). The conv and dense
    kernels' ``out_qparams`` epilogue uses the same expression (``common.quantize_value``).

    Parameters
    ----------
    shape : tuple of int
        Tensor shape (any rank >= 1).
    act_qparams : ActQParams
        Quantization parameters.
    target : tvm.target.Target or dict
        Compilation target (its vector width sets the vector length).
    axes : tuple of int, optional
        The kernel reads ``x`` such that its output is ``quantize(permute_dims(x, axes))``
        (``x`` has the permuted shape's inverse): a transpose and the quantize in one pass
        over the float tensor.

    Returns
    -------
    tvm.tirx.PrimFunc
        Parallel + vectorized kernel with the library's kernel attributes.
    """
    caps = capabilities(as_target(target))
    lanes = caps.lanes32
    shape = tuple(int(s) for s in shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"quantize_kernel needs a non-empty static shape, got {shape}")
    inv = tvm.tirx.const(act_qparams.inv, "float32")
    zp = tvm.tirx.const(float(act_qparams.zp), "float32")
    attr = [float(act_qparams.scale), float(act_qparams.zp), float(act_qparams.inv)]
    if axes is not None:
        axes = tuple(int(a) for a in axes)
        func = finalize(_transposing_quantize(shape, axes, inv, zp, caps))
        return func.with_attr(QUANTIZE_ATTR, attr).with_attr(QUANTIZE_AXES_ATTR, list(axes))
    x = te.placeholder(shape, "float32", name="x")
    q = te.compute(shape, lambda *idx: quantize_value(x[idx], inv, zp, caps.rounding_convert,
                                                      caps.truncating_narrow),
                   name="quantize")
    func = schedule_elementwise(te.create_prim_func([x, q]), "quantize", lanes=lanes)
    return finalize(func).with_attr(QUANTIZE_ATTR, attr)


def _transposing_quantize(shape, axes, inv, zp, caps) -> tvm.tirx.PrimFunc:
    """``q[idx] = quantize(x[src(idx)])`` with ``x`` in the layout before ``permute_dims(.,
    axes)``. Rows (every output axis but the last two) run in parallel; the last two stay
    loops LLVM vectorizes, the last unrolled when short: a model input's NCHW -> NHWC with 3
    channels then writes interleaved bytes from contiguous float rows (8 x 3 x 224 x 224,
    two threads: 58 us against 366 us transpose + 60 us quantize)."""
    if sorted(axes) != list(range(len(shape))):
        raise ValueError(f"axes {axes} is not a permutation of the {len(shape)} axes of {shape}")
    src_shape = [0] * len(shape)
    for k, a in enumerate(axes):
        src_shape[a] = shape[k]
    x = te.placeholder(tuple(src_shape), "float32", name="x")

    def value(*idx):
        src = [None] * len(idx)
        for k, a in enumerate(axes):
            src[a] = idx[k]
        return quantize_value(x[tuple(src)], inv, zp, caps.rounding_convert,
                              caps.truncating_narrow)

    q = te.compute(shape, value, name="quantize")
    sch = s_tir.Schedule(te.create_prim_func([x, q]))
    loops = sch.get_loops(sch.get_sblock("quantize"))
    if len(loops) > 2:
        sch.parallel(sch.fuse(*loops[:-2]) if len(loops) > 3 else loops[0])
    if shape[-1] <= _UNROLL_LAST:
        sch.unroll(loops[-1])
    return sch.mod["main"]

