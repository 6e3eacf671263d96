"""Per-CPU target presets with roofline peaks.

A preset is a TVM target (as the JSON dict TVM 0.27 takes) plus the peaks the cost model's
roofline uses: FP32 GFLOP/s, INT8 GOP/s (one multiply-add = 2 ops) and memory GB/s.
Measured presets are JSON files in ``presets/`` written by ``python -m aiq_tvm.targets.roofline``
(the file records the command, date and machine); declared presets come from data sheets and
say so in ``source``.  Pure Python: no TVM import.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import resources

__all__ = ["CpuPreset", "PRESETS", "get_preset", "preset_names", "load_measured_presets"]


@dataclass(frozen=True)
class CpuPreset:
    """A CPU the cost model knows.

    Parameters
    ----------
    name : str
        Registry key, usable as ``target=`` in :func:`aiq_tvm.build`.
    description : str
        What machine this is.
    target : dict
        TVM JSON target, e.g. ``{"kind": "llvm", "mcpu": "znver5", "num-cores": 2}``.
    peak_gflops_fp32, peak_gops_int8, bandwidth_gbs : float
        Roofline peaks.
    source : str
        Where the peaks come from (measurement command or data sheet).
    vnni : bool
        Whether int8 dot products use VNNI (``vpdpbusd``).
    """

    name: str
    description: str
    target: dict
    peak_gflops_fp32: float
    peak_gops_int8: float
    bandwidth_gbs: float
    source: str
    vnni: bool = False
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("preset name must be non-empty")
        if not isinstance(self.target, dict) or "kind" not in self.target:
            raise ValueError(f"preset {self.name!r}: target must be a dict with a 'kind'")
        for f in ("peak_gflops_fp32", "peak_gops_int8", "bandwidth_gbs"):
            v = getattr(self, f)
            if not isinstance(v, (int, float)) or v <= 0:
                raise ValueError(f"preset {self.name!r}: {f} must be a positive number, got {v!r}")

    @property
    def ridge_fp32(self) -> float:
        """FLOP/byte above which FP32 layers are compute-bound."""
        return self.peak_gflops_fp32 / self.bandwidth_gbs

    def to_dict(self) -> dict:
        return asdict(self)


# Declared from data sheets (not measured here): a generic AVX2 laptop and a Cortex-A72 board.
_DECLARED = [
    CpuPreset(
        name="avx2-laptop",
        description="Generic 4-core AVX2/FMA laptop CPU (Haswell-class, 2.5 GHz, DDR4-2400 x2)",
        target={"kind": "llvm", "mcpu": "haswell", "num-cores": 4},
        # 4 cores x 2.5 GHz x 2 FMA units x 8 lanes x 2 flops
        peak_gflops_fp32=320.0,
        # no VNNI: vpmaddubsw+vpmaddwd, 32 int8 MACs per cycle per unit x 2 units
        peak_gops_int8=640.0,
        bandwidth_gbs=38.4,  # 2 channels x 19.2 GB/s
        source="data sheet arithmetic (4 x 2.5 GHz x 2 FMA x 8 lanes x 2; DDR4-2400 dual channel)",
        vnni=False,
    ),
    CpuPreset(
        name="cortex-a72",
        description="Cortex-A72 edge board (4 cores, 1.5 GHz, 32-bit LPDDR4-3200), "
        "Raspberry Pi 4 class",
        target={"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a72",
                "num-cores": 4},
        # 4 cores x 1.5 GHz x 2 NEON FMA pipes x 4 lanes x 2 flops
        peak_gflops_fp32=96.0,
        # ARMv8.0 has no dot-product instruction: widening SMLAL, 8 int8 MACs/cycle/pipe
        peak_gops_int8=192.0,
        bandwidth_gbs=12.8,  # 32-bit LPDDR4-3200
        source="data sheet arithmetic (4 x 1.5 GHz x 2 pipes x 4 lanes x 2; LPDDR4-3200 x32)",
        vnni=False,
    ),
]


def load_measured_presets() -> list[CpuPreset]:
    """Presets measured by the roofline probe and shipped as JSON."""
    out = []
    folder = resources.files("aiq_tvm.targets").joinpath("presets")
    if not folder.is_dir():
        return out
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".json"):
            data = json.loads(entry.read_text())
            out.append(CpuPreset(**data))
    return out


PRESETS: dict[str, CpuPreset] = {p.name: p for p in _DECLARED + load_measured_presets()}


def preset_names() -> list[str]:
    return list(PRESETS)


def get_preset(name: str) -> CpuPreset:
    """Look up a preset by name; ValueError lists the valid names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown CPU preset {name!r}; valid presets: {', '.join(PRESETS)}"
        ) from None
