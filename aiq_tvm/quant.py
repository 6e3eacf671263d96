"""Host-side quantizers and numpy reference implementations of every precision scheme.

This module is pure numpy (it never imports TVM) so the Relax side, the cost model and the
tests can share the exact arithmetic contract of the x86 kernels:

* ``fp32``: ``y = act(conv(x, W) + bias [+ residual])``.
* ``int8`` (W8A8) / ``int4`` (W4A8): uint8 per-tensor affine activations, symmetric
  per-output-channel weights, exact int32 accumulation, fused float epilogue
  ``y = act(float32(acc - corr[o]) * comb[o] + bias[o] [+ residual])`` with
  ``corr[o] = zp * sum(q_w[o])`` and ``comb[o] = float32(scale_x * s_w[o])``.
* ``w8`` / ``w4`` (weight-only): fp32 activations, ``y = act(sum(x * q_w) * s_w[o] + bias[o])``.
* Requantizing epilogue (any scheme, ``out_qparams``): the kernel stores
  ``quantize_act(float32(y), out_qparams)`` as uint8 instead of ``y``.

All convolution references work on NHWC activations and OIHW (torch) weights. Which of
these a precision name means is decided by its :class:`~aiq_tvm.schemes.PrecisionScheme`
(epilogue kind, weight quantizer); 8-bit weight codes depend on the numerics target's int8 dot
product (``int8_qmax``: 127, or 63 on ``vpmaddubsw`` targets, see docs/isa.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .schemes import FULL_INT8_QMAX, PrecisionScheme, get_precision

ACTIVATIONS = ("none", "relu", "relu6", "silu", "hardswish")


@dataclass(frozen=True)
class ActQParams:
    """Per-tensor affine uint8 activation quantization parameters.

    Attributes
    ----------
    scale : float
        Real value of one quantization step.
    zp : int
        Zero point in ``[0, 255]``; the uint8 code that represents real 0.0.
    inv : float
        ``float32(1 / scale)``; kernels multiply by it (never divide by ``scale``).
    """

    scale: float
    zp: int
    inv: float

    @classmethod
    def from_range(cls, lo: float, hi: float) -> ActQParams:
        """Build parameters from a calibrated range, widened to contain 0.

        Parameters
        ----------
        lo, hi : float
            Calibrated minimum and maximum of the activation.

        Returns
        -------
        ActQParams
        """
        lo = min(float(lo), 0.0)
        hi = max(float(hi), 0.0)
        scale = (hi - lo) / 255.0
        if scale == 0.0:
            scale = 1.0
        zp = int(np.clip(np.rint(-lo / scale), 0, 255))
        return cls(scale=float(scale), zp=zp, inv=float(np.float32(1.0 / scale)))


def quantize_act(x: np.ndarray, qp: ActQParams) -> np.ndarray:
    """Quantize float activations to uint8 exactly as the TVM quantize kernel does.

    ``q = clip(rint(float32(x) * float32(inv)) + float32(zp), 0, 255)`` in float32
    arithmetic, round half to even.

    Parameters
    ----------
    x : np.ndarray
        Float activations (any shape).
    qp : ActQParams
        Activation quantization parameters.

    Returns
    -------
    np.ndarray
        uint8 array of the same shape.
    """
    xf = np.asarray(x, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        q = np.rint(xf * np.float32(qp.inv)) + np.float32(qp.zp)
    return np.clip(q, 0, 255).astype(np.uint8)


def dequantize_act(q: np.ndarray, qp: ActQParams) -> np.ndarray:
    """Map uint8 codes back to real values (float64): ``(q - zp) * scale``."""
    return (np.asarray(q, dtype=np.float64) - qp.zp) * qp.scale


def _per_channel_scale(w: np.ndarray, qmax: int) -> np.ndarray:
    """Symmetric per-output-channel scale ``absmax / qmax`` as float32 (1.0 for zero rows)."""
    absmax = np.abs(w.reshape(w.shape[0], -1).astype(np.float64)).max(axis=1)
    scale = (absmax / qmax).astype(np.float32)
    scale[absmax == 0] = 1.0
    return scale


def quantize_weight_symmetric(w: np.ndarray, qmax: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel weight codes in ``[-qmax, qmax]`` and their scales.

    The numeric core of :meth:`aiq_tvm.schemes.PrecisionScheme.quantize_weight` (which picks
    ``qmax``).

    Parameters
    ----------
    w : np.ndarray
        Weight with the output channel on axis 0 (OIHW conv or [O, K] dense).
    qmax : int
        Largest code magnitude (127 int8, 63 7-bit int8, 7 int4).

    Returns
    -------
    q : np.ndarray
        int8 codes, same shape as ``w``.
    scale : np.ndarray
        float32 ``[O]``, ``absmax(w[o]) / qmax`` (1.0 for an all-zero channel).
    """
    if not 1 <= int(qmax) <= 127:
        raise ValueError(f"qmax must be in [1, 127], got {qmax}")
    w = np.asarray(w)
    scale = _per_channel_scale(w, qmax)
    bshape = (-1,) + (1,) * (w.ndim - 1)
    # Divide by the float32-rounded scale that the kernel will use, so q * s_w is the best fit.
    q = np.rint(w.astype(np.float64) / scale.astype(np.float64).reshape(bshape))
    return np.clip(q, -qmax, qmax).astype(np.int8), scale


def quantize_weight_int8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel int8 weight quantization (full range, the ``int8`` scheme
    on targets whose int8 dot product is exact for 8-bit codes).

    Parameters
    ----------
    w : np.ndarray
        Weight with the output channel on axis 0 (OIHW conv or [O, K] dense).

    Returns
    -------
    q : np.ndarray
        int8 codes in ``[-127, 127]``, same shape as ``w``.
    scale : np.ndarray
        float32 ``[O]``, ``absmax(w[o]) / 127`` (1.0 for an all-zero channel).
    """
    return get_precision("int8").quantize_weight(w)


def quantize_weight_int4(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel int4 weight quantization (codes in ``[-7, 7]``).

    Returns unpacked int8 codes; kernels pack them with :func:`pack_int4` along their own
    reduction order.

    Parameters
    ----------
    w : np.ndarray
        Weight with the output channel on axis 0.

    Returns
    -------
    q : np.ndarray
        int8 codes in ``[-7, 7]``, same shape as ``w``.
    scale : np.ndarray
        float32 ``[O]``, ``absmax(w[o]) / 7`` (1.0 for an all-zero channel).
    """
    return get_precision("int4").quantize_weight(w)


def pack_int4(q: np.ndarray) -> np.ndarray:
    """Pack int4 codes two per byte along the last axis.

    Each code is stored as ``q + 8`` in a nibble; the even index goes to the low nibble.
    An odd-length last axis is padded with a zero code (nibble value 8).

    Parameters
    ----------
    q : np.ndarray
        Integer codes in ``[-8, 7]``.

    Returns
    -------
    np.ndarray
        uint8 array whose last axis is ``ceil(n / 2)``.
    """
    q = np.asarray(q).astype(np.int16)
    if q.shape[-1] % 2:
        q = np.concatenate([q, np.zeros(q.shape[:-1] + (1,), np.int16)], axis=-1)
    if q.size and (q.min() < -8 or q.max() > 7):
        raise ValueError("int4 codes must lie in [-8, 7]")
    u = (q + 8).astype(np.uint8)
    return (u[..., 0::2] | (u[..., 1::2] << 4)).astype(np.uint8)


def unpack_int4(packed: np.ndarray, n: int) -> np.ndarray:
    """Inverse of :func:`pack_int4`: return int8 codes, last axis truncated to ``n``."""
    p = np.asarray(packed, dtype=np.uint8)
    lo = (p & 0xF).astype(np.int8) - 8
    hi = (p >> 4).astype(np.int8) - 8
    out = np.stack([lo, hi], axis=-1).reshape(p.shape[:-1] + (2 * p.shape[-1],))
    return np.ascontiguousarray(out[..., :n])


def apply_act(y: np.ndarray, act) -> np.ndarray:
    """Apply an activation spec (``"none"``, ``"relu"``, ``"relu6"``, ``"silu"``,
    ``"hardswish"``, ``("clip", lo, hi)``)."""
    kind, lo, hi = parse_act(act)
    if kind == "none":
        return y
    if kind == "silu":
        y = np.asarray(y, np.float32)
        with np.errstate(over="ignore"):  # exp(-y) = inf below y = -88.7: y / inf = -0
            return (y / (np.float32(1.0) + np.exp(-y))).astype(np.float32)
    if kind == "hardswish":  # the kernels' float32 operations, in their order
        y = np.asarray(y, np.float32)
        gate = np.clip(y + np.float32(3.0), np.float32(0.0), np.float32(6.0))
        return (y * (gate * np.float32(1.0 / 6.0))).astype(np.float32)
    return np.clip(y, lo, hi)


def parse_act(act) -> tuple[str, float, float]:
    """Normalize an activation spec to ``(kind, lo, hi)``: ``kind`` is ``"none"``, ``"clip"``
    (to ``[lo, hi]``), ``"silu"`` (``x * sigmoid(x)``) or ``"hardswish"`` (``x * clip(x + 3,
    0, 6) / 6``), the last two unbounded.

    Raises
    ------
    ValueError
        For an unknown activation.
    """
    if isinstance(act, str):
        if act == "none":
            return "none", -np.inf, np.inf
        if act == "relu":
            return "clip", 0.0, np.inf
        if act == "relu6":
            return "clip", 0.0, 6.0
        if act in ("silu", "hardswish"):
            return act, -np.inf, np.inf
    elif isinstance(act, tuple | list) and len(act) == 3 and act[0] == "clip":
        lo, hi = float(act[1]), float(act[2])
        if not lo <= hi:
            raise ValueError(f"clip activation needs lo <= hi, got {act!r}")
        return "clip", lo, hi
    raise ValueError(f"unsupported activation {act!r}; valid: {', '.join(ACTIVATIONS)} or "
                     "('clip', lo, hi)")


def conv_out_hw(h: int, w: int, kh: int, kw: int, stride, padding,
                dilation=(1, 1)) -> tuple[int, int]:
    """Output spatial size of a conv; ``padding`` is (top, left, bottom, right)."""
    pt, pl, pb, pr = padding
    ekh, ekw = (kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1
    return (h + pt + pb - ekh) // stride[0] + 1, (w + pl + pr - ekw) // stride[1] + 1


@dataclass
class RefResult:
    """Reference output of a fused layer.

    Attributes
    ----------
    y : np.ndarray
        float64 epilogue value (after bias, residual and activation).
    acc : np.ndarray or None
        int schemes: the exact int64 ``sum(q_x q_w) - corr``.
    q : np.ndarray or None
        With ``out_qparams``: the uint8 codes ``quantize_act(float32(y), out_qparams)``. The
        kernel quantizes its own float32 ``y``, which may differ from ``float32(y)`` in the last
        bit, so a code can differ by one where ``y * inv`` is within rounding of a half;
        where ``y`` is exact in float32 the codes are equal.
    """

    y: np.ndarray
    acc: np.ndarray | None = None
    q: np.ndarray | None = None


def _int_inputs(x: np.ndarray, act_qparams: ActQParams | None) -> np.ndarray:
    if act_qparams is None:
        raise ValueError("int8/int4 schemes need act_qparams")
    if x.dtype == np.uint8:
        return x
    return quantize_act(x, act_qparams)


def _conv_nhwc_f64(x, w_oihw, stride, padding, groups, pad_value,
                   dilation=(1, 1)) -> np.ndarray:  # fmt: skip
    """Direct NHWC convolution in float64 (exact for integer data below 2**53)."""
    n, h, wd, c = x.shape
    o, cpg, kh, kw = w_oihw.shape
    pt, pl, pb, pr = padding
    dh, dw = dilation
    oh, ow = conv_out_hw(h, wd, kh, kw, stride, padding, dilation)
    xp = np.full((n, h + pt + pb, wd + pl + pr, c), pad_value, dtype=np.float64)
    xp[:, pt : pt + h, pl : pl + wd, :] = x
    sh, sw = stride
    y = np.zeros((n, oh, ow, o), dtype=np.float64)
    opg = o // groups
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dh, j * dw
            patch = xp[:, r0 : r0 + sh * (oh - 1) + 1 : sh, c0 : c0 + sw * (ow - 1) + 1 : sw, :]
            wij = w_oihw[:, :, i, j].astype(np.float64)  # [O, C/groups]
            if groups == 1:
                y += patch @ wij.T
            else:
                pg = patch.reshape(n, oh, ow, groups, cpg)
                wg = wij.reshape(groups, opg, cpg)
                y += np.einsum("nhwgc,goc->nhwgo", pg, wg).reshape(n, oh, ow, o)
    return y


def _epilogue(y, bias, residual, act) -> np.ndarray:
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)
    if residual is not None:
        y = y + np.asarray(residual, dtype=np.float64)
    return apply_act(y, act)


def ref_conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    scheme: str | PrecisionScheme,
    *,
    stride=(1, 1),
    padding=(0, 0, 0, 0),
    groups: int = 1,
    dilation=(1, 1),
    act="none",
    act_qparams: ActQParams | None = None,
    residual: np.ndarray | None = None,
    out_qparams: ActQParams | None = None,
    int8_qmax: int = FULL_INT8_QMAX,
) -> RefResult:
    """Numpy reference of a fused NHWC conv2d in any scheme.

    Parameters
    ----------
    x : np.ndarray
        ``[N, H, W, C]`` input; float for fp32/w8/w4. For int8/int4 either the uint8 codes
        the kernel consumes or float values (quantized here with ``act_qparams``).
    weight : np.ndarray
        OIHW float weight (``[O, C/groups, KH, KW]``); quantized here for non-fp32 schemes.
    bias : np.ndarray or None
        ``[O]`` bias.
    scheme : str or PrecisionScheme
        A registered precision (see :data:`aiq_tvm.schemes.PRECISIONS`).
    stride : tuple of int
        (sh, sw).
    padding : tuple of int
        (top, left, bottom, right).
    groups : int
        Any common divisor of C and O (1: regular; C: depthwise).
    dilation : tuple of int
        (dh, dw).
    act : str or tuple
        Activation spec, see :func:`parse_act`.
    act_qparams : ActQParams, optional
        Activation quantization parameters (int schemes).
    residual : np.ndarray, optional
        ``[N, OH, OW, O]`` tensor added after the bias, before the activation.
    out_qparams : ActQParams, optional
        Requantizing epilogue: also return the uint8 codes of the output (``RefResult.q``).
    int8_qmax : int
        Largest 8-bit weight code of the numerics target (127; 63 on ``vpmaddubsw`` targets),
        see :meth:`~aiq_tvm.schemes.PrecisionScheme.weight_qmax`.

    Returns
    -------
    RefResult
        float64 output; for int schemes also the exact int64 ``acc - corr``; with
        ``out_qparams`` also the uint8 codes.
    """
    prec = get_precision(scheme)
    geo = dict(stride=tuple(stride), padding=tuple(padding), groups=groups,
               dilation=tuple(dilation))
    o = weight.shape[0]
    acc = None
    q, s_w = prec.quantize_weight(weight, int8_qmax)
    if prec.epilogue == "float":
        y = _conv_nhwc_f64(x, q, pad_value=0.0, **geo)
    elif prec.epilogue == "scale":
        y = _conv_nhwc_f64(x.astype(np.float32), q, pad_value=0.0, **geo)
        y = y * s_w.astype(np.float64)
    else:
        qx = _int_inputs(x, act_qparams)
        raw = _conv_nhwc_f64(qx, q, pad_value=float(act_qparams.zp), **geo)
        corr = act_qparams.zp * q.reshape(o, -1).astype(np.int64).sum(axis=1)
        acc = raw.astype(np.int64) - corr
        comb = int_comb_scale(act_qparams, s_w)
        y = acc.astype(np.float64) * comb.astype(np.float64)
    y = _epilogue(y, bias, residual, act)
    codes = None if out_qparams is None else quantize_act(y.astype(np.float32), out_qparams)
    return RefResult(y, acc, codes)


def int_comb_scale(act_qparams: ActQParams, s_w: np.ndarray) -> np.ndarray:
    """Combined dequantization scale ``float32(scale_x * s_w[o])`` of the int epilogue."""
    return (act_qparams.scale * s_w.astype(np.float64)).astype(np.float32)


def int_zp_correction(act_qparams: ActQParams, q_w: np.ndarray,
                      act_offset: int = 0) -> np.ndarray:
    """Zero-point correction ``(zp - act_offset) * sum(q_w[o])`` as int32 ``[O]``.

    ``act_offset`` is what a kernel subtracts from every uint8 activation before its dot
    product (128 on Arm ``sdot``/``smull``, which take signed bytes): its accumulator is then
    ``sum (a - act_offset) * q``, and ``acc - corr`` is ``sum (a - zp) * q`` either way.
    """
    o = q_w.shape[0]
    zp = int(act_qparams.zp) - int(act_offset)
    return (zp * q_w.reshape(o, -1).astype(np.int64).sum(axis=1)).astype(np.int32)


def ref_dense(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    scheme: str | PrecisionScheme,
    *,
    act="none",
    act_qparams: ActQParams | None = None,
    residual: np.ndarray | None = None,
    out_qparams: ActQParams | None = None,
    int8_qmax: int = FULL_INT8_QMAX,
) -> RefResult:
    """Numpy reference of a fused dense layer ``x [N, K] @ weight[O, K].T`` in any scheme.

    See :func:`ref_conv2d` for the meaning of the arguments.
    """
    n, k = x.shape
    res4 = None if residual is None else residual.reshape(n, 1, 1, -1)
    r = ref_conv2d(
        x.reshape(n, 1, 1, k),
        weight.reshape(weight.shape[0], k, 1, 1),
        bias,
        scheme,
        act=act,
        act_qparams=act_qparams,
        residual=res4,
        out_qparams=out_qparams,
        int8_qmax=int8_qmax,
    )
    o = weight.shape[0]
    return RefResult(
        r.y.reshape(n, o),
        None if r.acc is None else r.acc.reshape(n, o),
        None if r.q is None else r.q.reshape(n, o),
    )
