"""Post-training corrections of a layer's float weight and bias before they are quantized.

Pure numpy. The kernels are unchanged: they quantize whatever float weight they are given
(symmetric per output channel, :func:`aiq_tvm.quant.quantize_weight_symmetric`) and add the
bias they are given, so both corrections only change the values handed to them:

``clip`` (weight scale search)
    Per output channel, the clipping ratio ``r`` of the max-abs range (a grid over
    ``[0.5, 1.0]``) whose quantize-dequantize round trip has the least squared error; the
    weight is clipped to ``[-r * absmax, r * absmax]``, so the kernel's own max-abs scale
    becomes ``r * absmax / qmax``.  Ties keep the widest range (``r = 1``: today's weights).
``bias`` (bias correction, Nagel et al. 2019, "Data-Free Quantization Through Weight
    Equalization and Bias Correction", with the input means measured on the calibration data)
    Weight rounding shifts a layer's expected output by ``(W_q s - W) . E[x]``; that shift is
    subtracted from the bias (a layer without a bias gets one).  ``E[x]`` is the per-channel
    mean of the layer's input over the calibration data; zero padding at the borders of a
    convolution is ignored (every output point is taken to see the channel mean at every
    tap), a first approximation that is exact for 1 x 1 and interior points.
"""

from __future__ import annotations

import numpy as np

from .checks import check_choice
from .quant import quantize_weight_symmetric

__all__ = [
    "WEIGHT_CORRECTIONS", "DEFAULT_WEIGHT_CORRECTION", "CLIP_RATIOS", "check_weight_correction",
    "clip_ratios", "clip_weight", "expected_output_error", "correct_layer",
]

WEIGHT_CORRECTIONS = ("none", "bias", "clip", "bias+clip")
DEFAULT_WEIGHT_CORRECTION = "bias"
# Candidate clipping ratios of the max-abs range, widest last (ties pick it).
CLIP_RATIOS = np.round(np.arange(0.5, 1.0001, 0.01), 2)


def check_weight_correction(value) -> str:
    """``value`` must be one of :data:`WEIGHT_CORRECTIONS`."""
    return check_choice("weight_correction", value, WEIGHT_CORRECTIONS)


def uses_bias(correction: str) -> bool:
    return "bias" in correction.split("+")


def uses_clip(correction: str) -> bool:
    return "clip" in correction.split("+")


def _dequantized(w2: np.ndarray, thr: np.ndarray, qmax: int) -> np.ndarray:
    """Round trip of ``w2 [O, K]`` with per-row max-abs ``thr [O, ...]`` (broadcast), as the
    kernels' quantizer does it on a weight clipped to ``thr``: float32 scale ``thr / qmax``."""
    scale = (thr.astype(np.float64) / qmax).astype(np.float32).astype(np.float64)
    scale = np.where(thr > 0, scale, 1.0)
    q = np.clip(np.rint(w2 / scale), -qmax, qmax)
    return q * scale


def clip_ratios(w: np.ndarray, qmax: int, importance: np.ndarray | None = None,
                ratios: np.ndarray = CLIP_RATIOS) -> np.ndarray:
    """Per output channel, the ratio of :data:`CLIP_RATIOS` whose round trip has the least
    (``importance``-weighted) squared error.

    Parameters
    ----------
    w : np.ndarray
        Weight with the output channel on axis 0.
    qmax : int
        Largest code magnitude.
    importance : np.ndarray, optional
        Non-negative weight of every element's squared error, shape of ``w`` (e.g. the
        ``E[x^2]`` of the input channel the element multiplies); default uniform.

    Returns
    -------
    np.ndarray
        float64 ``[O]`` ratios (1.0 where no clipping beats the full range).
    """
    w2 = np.asarray(w, np.float64).reshape(w.shape[0], -1)
    imp = np.ones_like(w2) if importance is None else np.asarray(importance,
                                                                    np.float64).reshape(w2.shape)
    absmax = np.abs(w2).max(axis=1)
    ratios = np.sort(np.asarray(ratios, np.float64))
    errs = np.stack([
        (((_dequantized(np.clip(w2, -t[:, None], t[:, None]), t[:, None], qmax) - w2) ** 2)
         * imp).sum(axis=1)
        for t in (absmax[None, :] * ratios[:, None]).astype(np.float32)
    ])  # [ratios, O]
    # argmin over the reversed grid: on ties the widest range wins.
    best = len(ratios) - 1 - np.argmin(errs[::-1], axis=0)
    return ratios[best]


def clip_weight(w: np.ndarray, ratios: np.ndarray) -> np.ndarray:
    """``w`` clipped per output channel to ``ratios * absmax`` (float32, same shape)."""
    w = np.asarray(w, np.float32)
    absmax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    thr = (absmax.astype(np.float64) * ratios).astype(np.float32)
    thr = thr.reshape((-1,) + (1,) * (w.ndim - 1))
    return np.where(ratios.reshape(thr.shape) >= 1.0, w, np.clip(w, -thr, thr))


def _input_channel_of(w_shape: tuple, groups: int) -> np.ndarray:
    """Input-channel index of every element of a weight ``[O, C/groups, ...]``."""
    o, cpg = w_shape[0], w_shape[1]
    group = np.arange(o) // (o // groups)
    chan = group[:, None] * cpg + np.arange(cpg)[None, :]  # [O, C/groups]
    return np.broadcast_to(chan.reshape(o, cpg, *([1] * (len(w_shape) - 2))), w_shape)


def expected_output_error(dw: np.ndarray, mean_in: np.ndarray, groups: int = 1) -> np.ndarray:
    """``E[(W_q s - W) x]`` per output channel: ``dw [O, C/groups, ...]`` (conv, OIHW) or
    ``[O, K]`` (dense) times the per-input-channel mean, zero padding ignored."""
    dw = np.asarray(dw, np.float64)
    mean_in = np.asarray(mean_in, np.float64)
    summed = dw.reshape(dw.shape[0], dw.shape[1], -1).sum(axis=2)  # [O, C/groups]
    o, cpg = summed.shape
    if mean_in.shape != (cpg * groups,):
        raise ValueError(f"input means have shape {mean_in.shape}, the weight {dw.shape} "
                         f"with {groups} group(s) reads {cpg * groups} channels")
    group = np.arange(o) // (o // groups)
    return (summed * mean_in.reshape(groups, cpg)[group]).sum(axis=1)


def correct_layer(w: np.ndarray, bias: np.ndarray | None, qmax: int, correction: str,
                  groups: int = 1, mean_in: np.ndarray | None = None,
                  sq_mean_in: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Corrected ``(weight, bias)`` of one layer whose kernel quantizes its weight
    symmetrically per output channel to ``[-qmax, qmax]``.

    ``w``: OIHW conv weight (``[O, C/groups, KH, KW]``) or ``[O, K]`` dense weight.
    ``mean_in`` / ``sq_mean_in``: per-input-channel ``E[x]`` / ``E[x^2]`` (``None``: not
    measured; bias correction is then skipped and clipping weighs every element alike).
    ``correction == "none"`` returns ``w`` and ``bias`` themselves.
    """
    check_weight_correction(correction)
    w = np.asarray(w, np.float32)
    out_w, out_b = w, bias
    if uses_clip(correction):
        imp = None
        if sq_mean_in is not None:
            imp = np.asarray(sq_mean_in, np.float64)[_input_channel_of(w.shape, groups)]
        out_w = clip_weight(w, clip_ratios(w, qmax, imp))
    if uses_bias(correction) and mean_in is not None:
        q, s = quantize_weight_symmetric(out_w, qmax)
        dq = q.astype(np.float64) * s.astype(np.float64).reshape((-1,) + (1,) * (w.ndim - 1))
        err = expected_output_error(dq - w, mean_in, groups)
        base = np.zeros(w.shape[0], np.float64) if bias is None else np.asarray(bias, np.float64)
        out_b = (base - err).astype(np.float32)
    return out_w, out_b
