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
``mse``
    The range whose uint8 quantize-dequantize round trip has the smallest mean squared error
    over the same value sample (:func:`mse_range`), as PyTorch's ``HistogramObserver`` and
    OpenVINO's MSE range search do: clipping a long tail costs the few clipped values less
    than the coarser step costs all the others.

Every method also records the per-channel mean of every layer's input
(channel axis 1 of an NCHW conv input or of a ``[N, K]`` dense input), which the weight
corrections of :mod:`aiq_tvm.weight_correction` use (``Calibration.weight_correction``).
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
from .weight_correction import DEFAULT_WEIGHT_CORRECTION, check_weight_correction

__all__ = [
    "Calibration", "CALIBRATION_METHODS", "DEFAULT_CALIBRATION", "RangeCollector", "calibrate",
    "mse_range",
]

CALIBRATION_METHODS = ("minmax", "percentile", "mse")
# What aiq_tvm.build, the CLI and BuildConfig use unless told otherwise (see docs/models.md:
# on the torchvision checks mse gave the highest INT8 cosine of the three).
DEFAULT_CALIBRATION = "mse"
# Methods that keep a value sample per layer (the exact min/max alone does not tell them).
_SAMPLED = ("percentile", "mse")
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
    channel_means : mapping of str to sequence of float
        Layer name -> per-input-channel ``E[x]`` over the calibration data (layers missing
        here get no bias correction).
    weight_correction : str
        What the passes quantizing with this calibration do to the weights first
        (:data:`aiq_tvm.weight_correction.WEIGHT_CORRECTIONS`; ``"none"``: today's plain
        max-abs quantization, bit for bit).
    residual_ranges : mapping of str to (float, float)
        Layer name -> (lo, hi) of the fused residual (shortcut) it adds, for shortcuts that no
        layer reads as data (a downsample conv's output); their producers write them as
        uint8 on this range. Calibrations without them keep those shortcuts float32.
    """

    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    method: str = "percentile"
    percentile: float = 99.99
    num_samples: int = 0
    channel_means: dict[str, np.ndarray] = field(default_factory=dict)
    weight_correction: str = DEFAULT_WEIGHT_CORRECTION
    # Layer -> [groups, K, K] input-patch second moments (weight_correction "gptq"); saved
    # beside the JSON (save / load), not in to_dict.
    hessians: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    residual_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("calibration method", self.method, CALIBRATION_METHODS)
        self.percentile = check_percentile(self.percentile)
        self.ranges = _clean_ranges("range", self.ranges)
        self.residual_ranges = _clean_ranges("residual range", self.residual_ranges)
        self.channel_means = _clean_stats("channel means", self.channel_means)
        check_weight_correction(self.weight_correction)

    def qparams(self, layer: str) -> ActQParams:
        """uint8 quantization parameters of a layer's input."""
        try:
            lo, hi = self.ranges[layer]
        except KeyError:
            raise ValueError(f"no calibration range for layer {layer!r}; calibrated layers: "
                             f"{sorted(self.ranges)}") from None
        return ActQParams.from_range(lo, hi)

    def residual_qparams(self, layer: str) -> ActQParams | None:
        """uint8 quantization parameters of the shortcut ``layer`` adds (None when its range
        was not measured: the shortcut stays float32)."""
        rng = self.residual_ranges.get(layer)
        return None if rng is None else ActQParams.from_range(*rng)

    def to_dict(self) -> dict:
        return {
            "format": CALIBRATION_FORMAT,
            "version": CALIBRATION_VERSION,
            "method": self.method,
            "percentile": self.percentile,
            "num_samples": self.num_samples,
            "ranges": {k: list(v) for k, v in self.ranges.items()},
            "weight_correction": self.weight_correction,
            "channel_means": {k: v.tolist() for k, v in self.channel_means.items()},
            "residual_ranges": {k: list(v) for k, v in self.residual_ranges.items()},
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
            # Files written before the weight corrections: no statistics, plain weights.
            channel_means=data.get("channel_means", {}),
            weight_correction=data.get("weight_correction", "none"),
            # Files written before the shortcut ranges: float32 shortcuts, as then.
            residual_ranges={k: tuple(v) for k, v in data.get("residual_ranges", {}).items()},
        )

    def hessian(self, layer: str) -> np.ndarray | None:
        return self.hessians.get(layer)

    def channel_mean(self, layer: str) -> np.ndarray | None:
        """``E[x]`` per input channel of a layer (``None`` where not measured)."""
        return self.channel_means.get(layer)

    def save(self, path: str | Path) -> None:
        """Write the JSON, and GPTQ's second moments (when there are any) to
        ``<path without .json>.hessians.npz`` beside it, named in the JSON. Symmetric moments
        (what :class:`~aiq_tvm.gptq.HessianCollector` measures) keep their upper triangles
        only: half the bytes, the same matrices back."""
        path = Path(path)
        data = self.to_dict()
        if self.hessians:
            side = path.with_name(path.name.removesuffix(".json") + ".hessians.npz")
            names = sorted(self.hessians)
            packed = all(_symmetric(self.hessians[n]) for n in names)
            stored = [_upper_triangles(self.hessians[n]) if packed else self.hessians[n]
                      for n in names]
            np.savez(side, **{f"h{i}": h for i, h in enumerate(stored)})
            data["hessians"] = {"file": side.name, "layers": names,
                                "packing": "upper" if packed else "full"}
        path.write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        path = Path(path)
        data = json.loads(path.read_text())
        cal = cls.from_dict(data)
        if "hessians" in data:
            side = path.with_name(data["hessians"]["file"])
            if not side.is_file():
                raise ValueError(f"calibration {path} keeps GPTQ's second moments in {side}, "
                                 "which is missing; copy it beside the JSON (without it the "
                                 "weights would be rounded differently from the saved run)")
            packing = data["hessians"].get("packing", "full")  # files before packing: full
            if packing not in _PACKINGS:
                raise ValueError(f"calibration {path}: unknown hessian packing {packing!r} "
                                 f"(valid: {', '.join(_PACKINGS)})")
            with np.load(side) as z:
                cal.hessians = {n: _PACKINGS[packing](z[f"h{i}"])
                                for i, n in enumerate(data["hessians"]["layers"])}
        return cal


def _symmetric(h: np.ndarray) -> bool:
    return h.ndim == 3 and h.shape[1] == h.shape[2] and np.array_equal(h, h.transpose(0, 2, 1))


def _upper_triangles(h: np.ndarray) -> np.ndarray:
    """``[groups, K, K]`` symmetric -> ``[groups, K (K + 1) / 2]``, row by row."""
    rows, cols = np.triu_indices(h.shape[1])
    return h[:, rows, cols]


def _from_upper_triangles(t: np.ndarray) -> np.ndarray:
    k = int(round((np.sqrt(8 * t.shape[1] + 1) - 1) / 2))
    rows, cols = np.triu_indices(k)
    h = np.zeros((t.shape[0], k, k), t.dtype)
    h[:, rows, cols] = t
    h[:, cols, rows] = t
    return h


_PACKINGS = {"full": lambda h: h, "upper": _from_upper_triangles}


def _clean_ranges(what: str, ranges: Mapping) -> dict[str, tuple[float, float]]:
    """``(lo, hi)`` pairs as floats, checked finite and ordered."""
    clean = {}
    for name, rng in dict(ranges).items():
        lo, hi = (float(v) for v in rng)
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
            raise ValueError(f"calibration {what} of {name!r} is invalid: ({lo}, {hi})")
        clean[name] = (lo, hi)
    return clean


def _clean_stats(what: str, stats: Mapping) -> dict[str, np.ndarray]:
    """Per-channel statistics as 1-D float64 arrays, checked finite."""
    out = {}
    for name, v in dict(stats).items():
        a = np.asarray(v, np.float64)
        if a.ndim != 1 or not np.isfinite(a).all():
            raise ValueError(f"calibration {what} of {name!r} must be a finite 1-D sequence")
        out[name] = a
    return out


class RangeCollector:
    """Accumulate per-layer statistics batch by batch (pure numpy).

    Parameters
    ----------
    names : sequence of str
        Layer names, in the order arrays are passed to :meth:`update`.
    method, percentile : see :class:`Calibration`.
    per_update : int
        Values sampled (uniformly, with replacement) per layer per :meth:`update` for the
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
        # name -> [count, sum per channel] (float64)
        self.moments: dict[str, list] = {}

    def _add_moments(self, name: str, a: np.ndarray) -> None:
        if a.ndim not in (2, 4):  # NCHW conv or [N, K] dense inputs: channel axis 1
            return
        m = self.moments.setdefault(name, [0, 0.0])
        m[0] += a.size // a.shape[1]
        # Summed in place over the other axes: a channels-last copy of every layer input
        # cost seconds on a ResNet-50.
        m[1] = m[1] + a.sum(axis=(0, 2, 3) if a.ndim == 4 else 0, dtype=np.float64)

    def update(self, arrays: Iterable[np.ndarray]) -> None:
        for name, a in zip(self.names, arrays, strict=True):
            a = np.asarray(a, dtype=np.float32)
            if a.size == 0:
                continue
            self._add_moments(name, a)
            # In memory order: a view of any transposed contiguous array (a calibration
            # run's NCHW views of NHWC activations), where ravel() would copy.
            a = np.ravel(a, order="K")
            self.lo[name] = min(self.lo[name], float(a.min()))
            self.hi[name] = max(self.hi[name], float(a.max()))
            if self.method in _SAMPLED:
                if a.size > self.per_update:
                    # With replacement: drawing without it permuted every index of the
                    # tensor (100 MB of int64 for one ResNet-50 layer input at batch 16).
                    a = a[self.rng.integers(0, a.size, self.per_update)]
                else:
                    a = a.copy()  # a view of the run's output: keep the values only
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
            elif self.method == "mse":
                lo, hi = mse_range(np.concatenate(self.samples[n]), lo, hi)
            out[n] = (lo, hi)
        return out

    def channel_means(self) -> dict[str, np.ndarray]:
        """Per layer, the per-channel ``E[x]`` of every value seen."""
        return {n: m[1] / m[0] for n, m in self.moments.items()}


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
                       num_samples=len(data), channel_means=col.channel_means())


def _roundtrip_sq_error(centers: np.ndarray, counts: np.ndarray, lo: np.ndarray,
                        hi: np.ndarray) -> np.ndarray:
    """Squared error of each candidate range ``(lo[i], hi[i])`` (both contain 0) summed over
    histogram bins, with :meth:`ActQParams.from_range`'s uint8 mapping."""
    scale = (hi - lo)[:, None] / 255.0
    zp = np.clip(np.rint(-lo[:, None] / scale), 0, 255)
    q = np.clip(np.rint(centers[None, :] / scale) + zp, 0, 255)
    return (((q - zp) * scale - centers[None, :]) ** 2 * counts[None, :]).sum(axis=1)


def mse_range(values: np.ndarray, lo: float, hi: float, steps: int = 128,
              bins: int = 1 << 14) -> tuple[float, float]:
    """The sub-range of ``[lo, hi]`` that minimizes the mean squared uint8 round-trip error
    of ``values``.

    ``values`` are binned (``bins`` bins over ``[min(lo, 0), max(hi, 0)]``, errors measured at
    bin centres). Candidates shrink both ends by a common factor in ``(0, 1]`` (``steps``
    values), then each end alone with the other fixed, so a one-sided tail (a residual
    stream's) is clipped without clipping the other side.

    Parameters
    ----------
    values : numpy.ndarray
        Sample of the activation's values.
    lo, hi : float
        Its exact minimum and maximum (the widest range considered).

    Returns
    -------
    (float, float)
        The chosen ``(lo, hi)``, inside ``[lo, hi]`` widened to contain 0.
    """
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi == lo:
        return lo, hi
    counts, edges = np.histogram(np.asarray(values, np.float64), bins=bins, range=(lo, hi))
    keep = counts > 0
    centers = ((edges[:-1] + edges[1:]) / 2)[keep]
    counts = counts[keep].astype(np.float64)
    frac = np.arange(1, steps + 1, dtype=np.float64) / steps

    def best(cand_lo, cand_hi):
        err = _roundtrip_sq_error(centers, counts, cand_lo, cand_hi)
        i = int(np.argmin(err))  # ties: the first, i.e. the narrowest candidate
        return float(cand_lo[i]), float(cand_hi[i])

    b_lo, b_hi = best(lo * frac, hi * frac)
    if lo < 0.0 < hi:
        b_hi = best(np.full(steps, b_lo), np.maximum(hi * frac, b_hi * 0.5))[1]
        b_lo = best(np.minimum(lo * frac, b_lo * 0.5), np.full(steps, b_hi))[0]
    return b_lo, b_hi
