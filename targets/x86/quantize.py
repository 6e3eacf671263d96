"""Standalone activation quantization kernel: float32 -> uint8 (per-tensor affine)."""

from __future__ import annotations

import tvm
from tvm import te

from aiq_tvm.quant import ActQParams
from aiq_tvm.targets.capabilities import capabilities

from .common import as_target, finalize, quantize_value
from .schedules import schedule_elementwise


def quantize_kernel(shape, act_qparams: ActQParams, *, target) -> tvm.tirx.PrimFunc:
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
    x = te.placeholder(shape, "float32", name="x")
    inv = tvm.tirx.const(act_qparams.inv, "float32")
    zp = tvm.tirx.const(float(act_qparams.zp), "float32")
    q = te.compute(shape, lambda *idx: quantize_value(x[idx], inv, zp, caps.rounding_convert),
                   name="quantize")
    func = schedule_elementwise(te.create_prim_func([x, q]), "quantize", lanes=lanes)
    return finalize(func)
