"""Activation calibration: the input range of every layer, measured on calibration data.

Layers with 8-bit activations quantize their input per tensor with an affine uint8 mapping
(:class:`aiq_tvm.quant.ActQParams`) derived from a range.  The range is measured on the FP32
model (static post-training quantization) by running the compiled model with every layer's
input exposed (:class:`aiq_tvm.passes.ExposeLayerInputs`):

``minmax``
    Exact minimum and maximum over all calibration values.
``percentile``
    The ``100 - p`` and ``p`` percentiles (default ``p = 99.99``) of a seeded uniform sample of
    at most ``max_samples`` values per layer, clipped to the min/max.  Cuts rare outliers that
    would otherwise waste quantization levels.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .batching import padded_batches
from .checks import check_choice, check_percentile
from .quant import ActQParams

__all__ = ["Calibration", "CALIBRATION_METHODS", "RangeCollector", "calibrate"]

CALIBRATION_METHODS = ("minmax", "percentile")
CALIBRATION_FORMAT = "aiq_tvm.calibration"
CALIBRATION_VERSION = 1


@dataclass
class Calibration:
    """Per-layer input ranges and how they were measured.

    Parameters
    ----------
    ranges : mapping of str to (float, float)
        Layer name -> (lo, hi) of its input activation.
    method : str
        One of :data:`CALIBRATION_METHODS`.
    percentile : float
        Upper percentile for ``method="percentile"``.
    num_samples : int
        Calibration inputs used.
    """

    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    method: str = "percentile"
    percentile: float = 99.99
    num_samples: int = 0

    def __post_init__(self) -> None:
        check_choice("calibration method", self.method, CALIBRATION_METHODS)
        self.percentile = check_percentile(self.percentile)
        clean = {}
        for name, rng in dict(self.ranges).items():
            lo, hi = (float(v) for v in rng)
            if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
                raise ValueError(f"calibration range of {name!r} is invalid: ({lo}, {hi})")
            clean[name] = (lo, hi)
        self.ranges = clean

    def qparams(self, layer: str) -> ActQParams:
        """uint8 quantization parameters of a layer's input."""
        try:
            lo, hi = self.ranges[layer]
        except KeyError:
            raise ValueError(f"no calibration range for layer {layer!r}; calibrated layers: "
                             f"{sorted(self.ranges)}") from None
        return ActQParams.from_range(lo, hi)

    def to_dict(self) -> dict:
        return {
            "format": CALIBRATION_FORMAT,
            "version": CALIBRATION_VERSION,
            "method": self.method,
            "percentile": self.percentile,
            "num_samples": self.num_samples,
            "ranges": {k: list(v) for k, v in self.ranges.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Calibration:
        if data.get("format") != CALIBRATION_FORMAT or data.get("version") != CALIBRATION_VERSION:
            raise ValueError(
                f"not an aiq_tvm calibration (format {CALIBRATION_FORMAT!r} version "
                f"{CALIBRATION_VERSION} expected)"
            )
        return cls(
            {k: tuple(v) for k, v in data["ranges"].items()},
            method=data["method"], percentile=data["percentile"],
            num_samples=data.get("num_samples", 0),
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        return cls.from_dict(json.loads(Path(path).read_text()))


class RangeCollector:
    """Accumulate per-layer statistics batch by batch (pure numpy).

    Parameters
    ----------
    names : sequence of str
        Layer names, in the order arrays are passed to :meth:`update`.
    method, percentile : see :class:`Calibration`.
    per_update : int
        Values sampled (uniformly, without replacement) per layer per :meth:`update` for the
        percentile estimate; every batch contributes the same number.
    seed : int
        Seed of the sampling.
    """

    def __init__(self, names, method="percentile", percentile=99.99, per_update=1 << 18,
                 seed=0):
        check_choice("calibration method", method, CALIBRATION_METHODS)
        self.names = list(names)
        self.method = method
        self.percentile = float(percentile)
        self.per_update = max(int(per_update), 1)
        self.rng = np.random.default_rng(seed)
        self.lo = {n: np.inf for n in self.names}
        self.hi = {n: -np.inf for n in self.names}
        self.samples: dict[str, list[np.ndarray]] = {n: [] for n in self.names}

    def update(self, arrays: Iterable[np.ndarray]) -> None:
        for name, a in zip(self.names, arrays, strict=True):
            a = np.asarray(a, dtype=np.float32).ravel()
            if a.size == 0:
                continue
            self.lo[name] = min(self.lo[name], float(a.min()))
            self.hi[name] = max(self.hi[name], float(a.max()))
            if self.method == "percentile":
                if a.size > self.per_update:
                    a = self.rng.choice(a, size=self.per_update, replace=False)
                self.samples[name].append(a)

    def ranges(self) -> dict[str, tuple[float, float]]:
        out = {}
        for n in self.names:
            if not np.isfinite(self.lo[n]):
                raise ValueError(f"no calibration values were seen for layer {n!r}")
            lo, hi = self.lo[n], self.hi[n]
            if self.method == "percentile":
                s = np.concatenate(self.samples[n])
                plo, phi = np.percentile(s, [100.0 - self.percentile, self.percentile])
                lo, hi = max(lo, float(plo)), min(hi, float(phi))
            out[n] = (lo, hi)
        return out


def calibrate(
    run: Callable[[np.ndarray], list[np.ndarray]],
    names: list[str],
    data: np.ndarray,
    batch_size: int,
    method: str = "percentile",
    percentile: float = 99.99,
    seed: int = 0,
    max_samples: int = 1 << 21,
) -> Calibration:
    """Measure layer input ranges.

    Parameters
    ----------
    run : callable
        ``run(batch) -> [input of layer 0, ...]`` for one batch of exactly ``batch_size`` rows.
    names : list of str
        Layer names in the order ``run`` returns their inputs.
    data : numpy.ndarray
        Calibration inputs (N x ...).  A last partial batch is padded with copies of its own
        samples: a layer input whose first axis is the batch keeps only the real rows; one
        that is not batch-major (e.g. a Linear on [tokens, batch, C] flattened to rows) is
        used whole, copies included.
    max_samples : int
        Per-layer size of the value sample behind the percentile estimate.
    """
    data = np.asarray(data)
    if data.ndim < 1 or len(data) == 0:
        raise ValueError("calibration data is empty; pass calib_data with at least one sample")
    n_batches = -(-len(data) // batch_size)
    col = RangeCollector(names, method, percentile, per_update=max_samples // n_batches,
                         seed=seed)
    for chunk, real in padded_batches(np.asarray(data, np.float32), batch_size, repeat=True):
        col.update(o[:real] if len(o) == batch_size else o for o in run(chunk))
    return Calibration(col.ranges(), method=method, percentile=percentile,
                       num_samples=len(data))
