"""Post-training corrections of a layer's float weight and bias before they are quantized.

Pure numpy. The kernels are unchanged: they quantize whatever float weight they are given
(symmetric per output channel, :func:`aiq_tvm.quant.quantize_weight_symmetric`) and add the
bias they are given, so the corrections only change the values handed to them (``"bias+gptq"``
rounds with GPTQ, then corrects the bias for what is left):

``gptq`` (error-compensating rounding, :mod:`aiq_tvm.gptq`)
    Rounds the weight columns one after another, moving each one's error onto the columns
    not yet rounded as the calibration inputs' second moments say; same scales.
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
    "WEIGHT_CORRECTIONS", "DEFAULT_WEIGHT_CORRECTION", "check_weight_correction",
    "expected_output_error", "correct_layer", "describe",
]

WEIGHT_CORRECTIONS = ("none", "bias", "gptq", "bias+gptq")
# On the torchvision checks GPTQ rounding gave the highest INT8 cosine; bias correction on top
# of it or alone was as often worse as better (docs/models.md, "Weight corrections").
DEFAULT_WEIGHT_CORRECTION = "gptq"


def check_weight_correction(value) -> str:
    """``value`` must be one of :data:`WEIGHT_CORRECTIONS`."""
    return check_choice("weight_correction", value, WEIGHT_CORRECTIONS)


def uses_bias(correction: str) -> bool:
    return "bias" in correction.split("+")


def uses_gptq(correction: str) -> bool:
    return "gptq" in correction.split("+")


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
                  hessian: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Corrected ``(weight, bias)`` of one layer whose kernel quantizes its weight
    symmetrically per output channel to ``[-qmax, qmax]``.

    ``w``: OIHW conv weight (``[O, C/groups, KH, KW]``) or ``[O, K]`` dense weight.
    ``mean_in``: per-input-channel ``E[x]`` (``None``: not measured; no bias correction).
    ``hessian``: ``[groups, K, K]`` input-patch second moments for ``gptq``
    (:func:`aiq_tvm.gptq.gptq_round`; ``None``: round to nearest).
    ``correction == "none"`` returns ``w`` and ``bias`` themselves.
    """
    check_weight_correction(correction)
    w = np.asarray(w, np.float32)
    out_w, out_b = w, bias
    if uses_gptq(correction) and hessian is not None:
        from .gptq import gptq_round

        out_w = gptq_round(w, hessian, qmax)
    if uses_bias(correction) and mean_in is not None:
        q, s = quantize_weight_symmetric(out_w, qmax)
        dq = q.astype(np.float64) * s.astype(np.float64).reshape((-1,) + (1,) * (w.ndim - 1))
        err = expected_output_error(dq - w, mean_in, groups)
        base = np.zeros(w.shape[0], np.float64) if bias is None else np.asarray(bias, np.float64)
        out_b = (base - err).astype(np.float32)
    return out_w, out_b


def describe(calibration, layers: list[str]) -> str:
    """One line for the report: the correction applied to the weight-quantized ``layers`` and
    how many of them had the calibration statistics it needs."""
    if not layers:
        return ""
    correction = "none" if calibration is None else calibration.weight_correction
    if correction == "none":
        return f"round to nearest on {len(layers)} weight-quantized layer(s) (no correction)"
    parts = []
    if uses_gptq(correction):
        n = sum(calibration.hessian(name) is not None for name in layers)
        parts.append(f"GPTQ rounding on {n} of {len(layers)} weight-quantized layer(s)")
    if uses_bias(correction):
        n = sum(calibration.channel_mean(name) is not None for name in layers)
        parts.append(f"bias correction on {n} of {len(layers)}")
    return (f"weight_correction={correction}: {', '.join(parts)} (statistics of "
            f"{calibration.num_samples} calibration sample(s); the others round to nearest)")
