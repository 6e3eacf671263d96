"""Checks of the arrays a user hands over: calibration and validation data, labels, inputs of
``run``, and weights.

A wrong array must never give a plausible-looking wrong answer: each check either raises a
``ValueError`` that names the argument, what is wrong with it (with counts) and how to fix it,
or, where the input may be legitimate (raw 0-255 pixels), returns a note that the caller warns
about and shows in the report.  Needs numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["check_samples", "check_finite", "sample_notes", "check_calibration_spread",
           "compare_notes", "check_labels", "check_params"]


def _as_real_array(name: str, data) -> np.ndarray:
    try:
        x = np.asarray(data)
    except ValueError as err:  # ragged nested lists
        raise ValueError(f"{name} is not an array of samples: {err}") from None
    if x.dtype.kind == "c":
        raise ValueError(f"{name} is complex ({x.dtype}); pass real-valued inputs (float32), "
                         f"e.g. np.abs(x) or x.real if that is what the model expects")
    if x.dtype.kind not in "iuf":
        raise ValueError(f"{name} has dtype {x.dtype}; pass numbers (float32 samples, or "
                         f"integers such as uint8 pixels)")
    return x


def check_samples(name: str, data, input_shape: Sequence[int], finite: bool = True
                  ) -> np.ndarray:
    """``data`` as a float32 array of samples of ``input_shape``; non-finite values are an
    error when ``finite`` (they would corrupt ranges or accuracy silently)."""
    x = _as_real_array(name, data)
    if x.ndim == 0 or len(x) == 0:
        raise ValueError(f"{name} is empty; pass at least one sample of shape "
                         f"{tuple(input_shape)}")
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise ValueError(f"{name} has samples of shape {tuple(x.shape[1:])}; the model takes "
                         f"{tuple(input_shape)} (N x {' x '.join(map(str, input_shape))})")
    x = np.asarray(x, np.float32)
    if finite:
        check_finite(name, x)
    return x


def check_finite(name: str, x: np.ndarray) -> None:
    """Raise naming the count of NaN and infinite values in ``x`` and the first bad sample."""
    bad = ~np.isfinite(x)
    if not bad.any():
        return
    nan = int(np.isnan(x).sum())
    inf = int(bad.sum()) - nan
    per_sample = bad.reshape(len(x), -1).any(axis=1)
    raise ValueError(
        f"{name} has {nan} NaN and {inf} infinite values (of {x.size}), in "
        f"{int(per_sample.sum())} of {len(x)} samples (first: sample "
        f"{int(np.argmax(per_sample))}); remove or replace them")


def sample_notes(name: str, data, x: np.ndarray) -> list[str]:
    """Notes about data that is valid but probably not what the model expects (raw pixels).
    ``data`` is what the user passed, ``x`` its float32 copy."""
    raw = np.asarray(data)
    lo, hi = float(x.min()), float(x.max())
    whole = raw.dtype.kind in "iu" or bool(np.all(x == np.round(x)))
    if whole and lo >= 0 and 1 < hi <= 255:
        kind = f"{raw.dtype} values" if raw.dtype.kind in "iu" else "whole numbers"
        return [f"{name} holds {kind} in [{lo:g}, {hi:g}]: it looks like raw pixels, while "
                f"models usually take normalized floats (e.g. (x / 255 - mean) / std, as in "
                f"training); if this model really takes 0-255 inputs, ignore this note"]
    return []


def check_calibration_spread(x: np.ndarray) -> None:
    """Calibration data that is one constant (all zeros, say) gives empty activation ranges."""
    if float(x.min()) == float(x.max()):
        raise ValueError(f"every calib_data value is {float(x.min()):g}: the activation ranges "
                         f"would be empty (e.g. (0, 0)) and 8-bit layers meaningless; calibrate "
                         f"on real samples prepared like the model's inputs")


def compare_notes(calib: np.ndarray | None, val: np.ndarray | None) -> list[str]:
    """A note when calibration and validation data look differently prepared (one raw pixels,
    the other normalized): ranges measured on one would not fit the other."""
    if calib is None or val is None:
        return []
    stats = [(float(a.mean()), float(a.std()), float(a.min()), float(a.max()))
             for a in (calib, val)]
    (m1, s1, lo1, hi1), (m2, s2, lo2, hi2) = stats
    spread = max(s1, s2, 1e-12)
    scale_ratio = max(s1, s2) / max(min(s1, s2), 1e-12)
    if scale_ratio <= 4 and abs(m1 - m2) <= 2 * spread:
        return []
    return [f"calib_data (mean {m1:.3g}, std {s1:.3g}, range [{lo1:.3g}, {hi1:.3g}]) and "
            f"val_data (mean {m2:.3g}, std {s2:.3g}, range [{lo2:.3g}, {hi2:.3g}]) look "
            f"differently prepared: calibrate on data prepared like the inputs the model "
            f"will see"]


def check_labels(name: str, y, n: int, num_classes: int | None) -> np.ndarray:
    """Integer class indices, one per sample, in ``[0, num_classes)``."""
    y = np.asarray(y)
    if y.shape != (n,) or y.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integer class indices, one per sample: shape "
                         f"({n},), got {y.dtype} of shape {y.shape}")
    if num_classes is None:
        return y
    bad = (y < 0) | (y >= num_classes)
    if bad.any():
        raise ValueError(
            f"{name} must be class indices in [0, {num_classes}) (the model has "
            f"{num_classes} outputs); {int(bad.sum())} of {n} are outside (min {int(y.min())}, "
            f"max {int(y.max())})")
    return y


def check_params(params: Mapping | None, expected: Mapping[str, tuple[tuple, str]]) -> None:
    """Every weight ``main`` takes, with its shape and dtype (``expected``: name ->
    (shape with None for symbolic dims, dtype)), and no other names."""
    if not expected:
        return
    if params is None:
        listed = ", ".join(f"{n} {_ty(s, d)}" for n, (s, d) in list(expected.items())[:3])
        raise ValueError(f"params is missing: main takes {len(expected)} weights ({listed}"
                         f"{', ...' if len(expected) > 3 else ''}); pass the params dict "
                         f"returned by aiq_tvm.from_torch / from_onnx")
    if not isinstance(params, Mapping):
        raise ValueError(f"params must be a dict of weight name -> array, got "
                         f"{type(params).__name__}")
    unknown = sorted(set(params) - set(expected))
    if unknown:
        raise ValueError(f"params has names main does not take: {unknown[:5]}")
    missing = [n for n in expected if n not in params]
    if missing:
        shape, dtype = expected[missing[0]]
        raise ValueError(f"params has no {missing[0]!r} (main expects {_ty(shape, dtype)})"
                         + (f" nor {len(missing) - 1} more: {missing[1:4]}"
                            if len(missing) > 1 else ""))
    for name, (shape, dtype) in expected.items():
        _check_param(name, params[name], shape, dtype)


def _check_param(name: str, value, shape: tuple, dtype: str) -> None:
    arr = np.asarray(value) if not hasattr(value, "numpy") else value.numpy()
    fits = len(arr.shape) == len(shape) and all(
        e is None or e == g for e, g in zip(shape, arr.shape, strict=True))
    if not fits or str(arr.dtype) != dtype:
        hint = f" (convert with .astype(np.{dtype}))" if fits else ""
        raise ValueError(f"params[{name!r}] is {arr.dtype} {tuple(arr.shape)}; main expects "
                         f"{_ty(shape, dtype)}{hint}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"params[{name!r}] has {int((~np.isfinite(arr)).sum())} NaN or "
                         f"infinite values")


def _ty(shape: tuple, dtype: str) -> str:
    return f"{dtype} ({', '.join('?' if d is None else str(d) for d in shape)})"
