"""CPU presets with roofline peaks, and how a target gets the preset that fits it.

A preset is a TVM target (as the JSON dict TVM 0.27 takes), its ISA level (see
:data:`~aiq_tvm.targets.capabilities.ISA_LEVELS`) and the peaks the cost model's roofline
uses: FP32 GFLOP/s, INT8 GOP/s (one multiply-add = 2 ops, with the ISA level's int8
instruction) and memory GB/s.  Measured presets are JSON files in ``presets/`` written by
``python -m aiq_tvm.targets.roofline`` (the file records the command, date and machine);
declared presets come from data sheets and say so in ``source``.

:func:`select_preset` matches a target's :class:`~aiq_tvm.targets.TargetCaps` to a preset of
the same architecture and ISA level, preferring the same core count and CPU; a preset for
another core count is scaled, and a target no preset covers gets peaks estimated from its
vector width, int8 instruction and cores.  Whatever such a preset takes for granted is listed
in its ``assumed`` field, which reports and ``aiq-tvm presets`` print.  Pure Python: no TVM
import.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources

from .capabilities import INT8_DOT_KINDS, ISA_LEVELS, level_vector_bits

__all__ = [
    "CpuPreset",
    "PRESETS",
    "get_preset",
    "preset_names",
    "load_measured_presets",
    "select_preset",
    "estimate_preset",
    "isa_arch",
]

AMX_FAMILY = "tdpbusd"  # the int8 family of AMX tiles (targets.roofline's probe)
_X86_LEVELS = frozenset({"avx512_vnni", "avx512bw", "avx_vnni", "avx2", "ssse3", "sse"})
_ARM_LEVELS = frozenset({"neon_i8mm", "neon_dotprod", "neon"})


def isa_arch(isa: str) -> str:
    """Architecture of an ISA level: ``"x86_64"``, ``"aarch64"`` or ``"generic"``."""
    return "x86_64" if isa in _X86_LEVELS else "aarch64" if isa in _ARM_LEVELS else "generic"


def _int8_text(dot: str) -> str:
    return "no int8 dot instruction" if dot == "none" else f"int8 via {dot}"


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
        TVM JSON target with ``num-cores``, e.g. ``{"kind": "llvm", "mcpu": "znver3",
        "num-cores": 2}``.
    isa : str
        ISA level of the target (one of ``ISA_LEVELS``); decides which targets it fits and
        which int8 instruction ``peak_gops_int8`` was measured or declared with.
    peak_gflops_fp32, peak_gops_int8, bandwidth_gbs : float
        Roofline peaks for all ``num-cores`` cores.
    source : str
        Where the peaks come from (measurement command or data sheets).
    measured : bool
        Whether the peaks were measured by the roofline probe (else declared or derived).
    assumed : tuple of str
        What these peaks take for granted beyond ``source`` (clock, bandwidth, scaling to
        another core count, another CPU of the same ISA level); empty for a preset used as is.
    extra : dict
        Figures behind the peaks (per-core per-cycle throughput, clock, machine).
    """

    name: str
    description: str
    target: dict
    isa: str
    peak_gflops_fp32: float
    peak_gops_int8: float
    bandwidth_gbs: float
    source: str
    measured: bool = False
    assumed: tuple = ()
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("preset name must be non-empty")
        if not isinstance(self.target, dict) or "kind" not in self.target:
            raise ValueError(f"preset {self.name!r}: target must be a dict with a 'kind'")
        cores = self.target.get("num-cores")
        if not isinstance(cores, int) or isinstance(cores, bool) or cores < 1:
            raise ValueError(f"preset {self.name!r}: target needs a positive integer "
                             f"'num-cores' (the peaks are for that many cores), got {cores!r}")
        if self.isa not in ISA_LEVELS:
            raise ValueError(f"preset {self.name!r}: isa {self.isa!r} is not one of "
                             f"{', '.join(ISA_LEVELS)}")
        for f in ("peak_gflops_fp32", "peak_gops_int8", "bandwidth_gbs"):
            v = getattr(self, f)
            if not isinstance(v, (int, float)) or v <= 0:
                raise ValueError(f"preset {self.name!r}: {f} must be a positive number, got {v!r}")
        object.__setattr__(self, "assumed", tuple(self.assumed))

    @property
    def arch(self) -> str:
        return isa_arch(self.isa)

    @property
    def cores(self) -> int:
        return int(self.target["num-cores"])

    @property
    def mcpu(self) -> str:
        return str(self.target.get("mcpu", ""))

    @property
    def int8_dot(self) -> str:
        """The int8 instruction family ``peak_gops_int8`` is for: the ISA level's, or
        ``extra["int8_family"]`` (``tdpbusd``: AMX tiles, measured on an ``amx-int8``
        target)."""
        return self.extra.get("int8_family", INT8_DOT_KINDS[self.isa])

    @property
    def amx(self) -> bool:
        """Whether ``peak_gops_int8`` is the AMX tiles' (``tdpbusd``)."""
        return self.int8_dot == AMX_FAMILY

    @property
    def vnni(self) -> bool:
        return self.int8_dot == "vpdpbusd"

    @property
    def float_vector_bits(self) -> int:
        """Width of the float vectors ``peak_gflops_fp32`` was measured on: the level's, or
        ``extra["float_vector_bits"]`` (256 for AVX without AVX2)."""
        return int(self.extra.get("float_vector_bits", level_vector_bits(self.isa)))

    @property
    def ridge_fp32(self) -> float:
        """FLOP/byte above which FP32 layers are compute-bound."""
        return self.peak_gflops_fp32 / self.bandwidth_gbs

    @property
    def basis(self) -> str:
        """``measured``, ``declared`` (data sheets) or ``estimated`` (has assumptions)."""
        if self.assumed:
            return "estimated"
        return "measured" if self.measured else "declared"

    def describe(self) -> str:
        """Lines for ``aiq-tvm presets`` and reports: peaks, ISA, cores, source, assumptions."""
        head = (f"{self.name:22s} fp32 {self.peak_gflops_fp32:9.1f} GFLOP/s  int8 "
                f"{self.peak_gops_int8:9.1f} GOP/s  {self.bandwidth_gbs:6.1f} GB/s  "
                f"{self.isa} ({_int8_text(self.int8_dot)}), {self.cores} cores, {self.basis}")
        lines = [head, f"{'':22s} {self.description}", f"{'':22s} source: {self.source}"]
        lines += [f"{'':22s} assumed: {a}" for a in self.assumed]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["assumed"] = list(self.assumed)
        return d

    def scaled(self, cores: int) -> CpuPreset:
        """This preset's peaks for ``cores`` cores, saying how they were scaled.

        Compute peaks scale linearly with cores.  Bandwidth scales down with the cores' share
        of the chip (fewer cores than the preset), and is kept when there are more (the
        memory system does not grow with the core count).
        """
        if cores == self.cores:
            return self
        ratio = cores / self.cores
        bw = self.bandwidth_gbs * min(ratio, 1.0)
        bw_note = (f"bandwidth {bw:.1f} GB/s = {cores}/{self.cores} of {self.name}'s "
                   f"{self.bandwidth_gbs:g} GB/s (the cores' share of the chip)" if ratio < 1
                   else f"bandwidth kept at {self.name}'s {self.bandwidth_gbs:g} GB/s "
                   f"(memory bandwidth does not grow with cores)")
        return dataclasses.replace(
            self,
            name=f"{self.name}@{cores}c",
            description=f"{self.description} (scaled to {cores} cores)",
            target={**self.target, "num-cores": cores},
            peak_gflops_fp32=self.peak_gflops_fp32 * ratio,
            peak_gops_int8=self.peak_gops_int8 * ratio,
            bandwidth_gbs=bw,
            measured=False,
            assumed=(*self.assumed, f"compute peaks scaled x{ratio:.3g} from {self.name}'s "
                     f"{self.cores} to {cores} cores (linear in cores)", bw_note),
        )


# Per-core per-cycle throughput behind the declared presets, from the vendors' optimization
# guides: fp32 = vector FMA instructions/cycle x lanes x 2; int8 = int8 multiply-adds/cycle x 2.
def _declared(name, description, target, isa, ghz, fp32_per_cycle, int8_per_cycle,
              bandwidth_gbs, source) -> CpuPreset:
    cores = target["num-cores"]
    return CpuPreset(
        name=name, description=description, target=target, isa=isa,
        peak_gflops_fp32=round(cores * ghz * fp32_per_cycle, 1),
        peak_gops_int8=round(cores * ghz * int8_per_cycle, 1),
        bandwidth_gbs=bandwidth_gbs, source=source, measured=False,
        extra={"ghz": ghz, "fp32_flops_per_cycle_core": fp32_per_cycle,
               "int8_ops_per_cycle_core": int8_per_cycle},
    )


_AARCH64 = {"kind": "llvm", "mtriple": "aarch64-linux-gnu"}

_DECLARED = [
    _declared(
        "skylake-sp-20c",
        "Intel Xeon Gold 6148 (Skylake-SP, AVX-512BW without VNNI), 20 cores, 2 FMA units; "
        "data sheets, not measured (this host has no AVX-512)",
        {"kind": "llvm", "mcpu": "skylake-avx512", "num-cores": 20}, "avx512bw",
        ghz=2.2, fp32_per_cycle=64.0, int8_per_cycle=256 / 3,
        bandwidth_gbs=128.0,
        source="data sheets: AVX-512 all-core turbo 2.2 GHz (Intel Xeon Scalable specification "
        "update 336065); 2 x 512-bit FMA = 64 FLOP/cycle; int8 vpmaddubsw+vpmaddwd+vpaddd = 3 "
        "uops on the two 512-bit ports per 64 MACs = 85.3 ops/cycle, Intel's 1.33x of FP32 "
        "(Intel, 'Lower Numerical Precision Deep Learning Inference and Training', 2018); "
        "6 x DDR4-2666 = 128 GB/s",
    ),
    _declared(
        "rpi4-cortex-a72",
        "Raspberry Pi 4 Model B: Broadcom BCM2711, 4 x Cortex-A72 at 1.8 GHz, LPDDR4-3200 "
        "32-bit; data sheets, not measured",
        {**_AARCH64, "mcpu": "cortex-a72", "num-cores": 4}, "neon",
        ghz=1.8, fp32_per_cycle=8.0, int8_per_cycle=16.0, bandwidth_gbs=12.8,
        source="data sheets: Raspberry Pi 4 product brief (1.8 GHz, LPDDR4-3200 x32 = 12.8 "
        "GB/s); Cortex-A72 Software Optimization Guide (UAN 0016A) and LLVM's A57/A72 "
        "scheduling model: Q-form FMLA 1/cycle (F0+F1) = 8 FLOP/cycle; no dot product: smull "
        "and smlal(2) 1/cycle on F0 (8 MACs each), sadalp on F1 = 16 ops/cycle",
    ),
    _declared(
        "rpi5-cortex-a76",
        "Raspberry Pi 5: Broadcom BCM2712, 4 x Cortex-A76 at 2.4 GHz, LPDDR4X-4267 32-bit; "
        "data sheets, not measured",
        {**_AARCH64, "mcpu": "cortex-a76", "num-cores": 4}, "neon_dotprod",
        ghz=2.4, fp32_per_cycle=16.0, int8_per_cycle=64.0, bandwidth_gbs=17.1,
        source="data sheets: Raspberry Pi 5 product brief (2.4 GHz, LPDDR4X-4267 x32 = 17.1 "
        "GB/s); Cortex-A76 Software Optimization Guide: FMLA 2/cycle (V0, V1) = 16 FLOP/cycle, "
        "SDOT 2/cycle x 16 MACs = 64 ops/cycle",
    ),
    _declared(
        "graviton2-neoverse-n1",
        "AWS Graviton2: 64 x Neoverse-N1 at 2.5 GHz, 8 x DDR4-3200; data sheets, not measured",
        {**_AARCH64, "mcpu": "neoverse-n1", "num-cores": 64}, "neon_dotprod",
        ghz=2.5, fp32_per_cycle=16.0, int8_per_cycle=64.0, bandwidth_gbs=204.8,
        source="data sheets: AWS Graviton2 (64 cores, 2.5 GHz, 8 x DDR4-3200 = 204.8 GB/s); "
        "Neoverse N1 Software Optimization Guide and LLVM's NeoverseN1 scheduling model: FMLA "
        "2/cycle (V0, V1) = 16 FLOP/cycle, SDOT 2/cycle x 16 MACs = 64 ops/cycle",
    ),
    _declared(
        "graviton4-neoverse-v2",
        "AWS Graviton4: 96 x Neoverse-V2 at 2.8 GHz, 12 x DDR5-5600; data sheets, not measured",
        {**_AARCH64, "mcpu": "neoverse-v2", "num-cores": 96}, "neon_i8mm",
        ghz=2.8, fp32_per_cycle=32.0, int8_per_cycle=256.0, bandwidth_gbs=537.6,
        source="data sheets: AWS Graviton4 (96 cores, 2.8 GHz, 12 x DDR5-5600 = 537.6 GB/s); "
        "Neoverse V2 Software Optimization Guide (Arm 109898 issue 3.0, tables 3-15/3-16): "
        "FMLA 4/cycle = 32 FLOP/cycle, SMMLA 4/cycle x 32 MACs = 256 ops/cycle (SDOT 4/cycle "
        "= 128)",
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
            try:
                out.append(CpuPreset(**data))
            except TypeError as err:
                raise ValueError(f"preset file {entry.name}: {err}") from None
    return out


PRESETS: dict[str, CpuPreset] = {p.name: p for p in _DECLARED + load_measured_presets()}

# What a preset estimated from the target alone takes for granted (stated in its ``assumed``).
ASSUMED_GHZ = 2.5
ASSUMED_BANDWIDTH_GBS = 20.0
# int8 ops per cycle over FP32 FLOPs per cycle on a typical core of each int8 family and width
# (the measured and declared presets above show where these come from).
INT8_OVER_FP32 = {
    ("vpdpbusd", 512): 4.0,  # 64 MACs per instruction vs 16 FMAs, same two ports
    ("vpdpbusd", 256): 4.0,
    ("vpmaddubsw", 512): 4 / 3,  # three uops on the two 512-bit ports per 64 MACs (Skylake-SP)
    ("vpmaddubsw", 256): 2.0,  # two multiply uops per 32 MACs on two ports (znver3-2t: 1.95)
    ("vpmaddubsw", 128): 2.0,  # as on 256 bits; FP32 without FMA takes a mul and an add
    ("sdot", 128): 4.0,
    ("smmla", 128): 8.0,
    ("smull", 128): 2.0,  # Cortex-A72: smull + smlal on F0, FMLA Q-form 1/cycle
    ("vpmaddwd", 128): 1.5,  # SSE2: pmaddwd on int16, FP32 mulps + addps (x86-64-on-znver4-2t:
    # 1.55)
    ("none", 128): 0.25,  # widened to int32 (the old SSE2 path on a Zen 3: 0.23)
}


def _target_of(caps) -> dict:
    spec: dict = {"kind": "llvm"}
    if caps.triple:
        spec["mtriple"] = caps.triple
    if caps.mcpu:
        spec["mcpu"] = caps.mcpu
    spec["num-cores"] = caps.cores
    return spec


def _cores_note(caps) -> tuple:
    src = caps.cores_source
    return (f"{caps.cores} cores ({src})",) if src.startswith("assumed") else ()


def estimate_preset(caps) -> CpuPreset:
    """Peaks estimated from a target's vector width, int8 instruction and cores alone.

    Used when no preset has the target's ISA level; ``assumed`` lists the clock, pipes,
    int8 rate and bandwidth taken for granted.
    """
    pipes = 1 if caps.isa in ("ssse3", "sse", "generic") else 2
    fp32_cycle = pipes * caps.float_vector_bits // 32 * 2
    # The int8 ratios are per FP32 FLOP at the integer vectors' width.
    int8_cycle = pipes * caps.lanes32 * 2 * INT8_OVER_FP32.get(
        (caps.int8_dot, caps.vector_bits), 0.25)
    spec = _target_of(caps)
    measure = (f"; measure it with `python -m aiq_tvm.targets.roofline --target "
               f"'{json.dumps(spec)}' --write`" if caps.host_runnable else "")
    return CpuPreset(
        name=f"estimated-{caps.isa}-{caps.cores}c",
        description=f"{caps.mcpu or caps.arch} ({caps.isa}, {caps.vector_bits}-bit), "
        f"{caps.cores} cores: no preset of this ISA level, peaks estimated",
        target=spec, isa=caps.isa,
        peak_gflops_fp32=caps.cores * ASSUMED_GHZ * fp32_cycle,
        peak_gops_int8=caps.cores * ASSUMED_GHZ * int8_cycle,
        bandwidth_gbs=ASSUMED_BANDWIDTH_GBS,
        source=f"estimate from the target's vector width, int8 instruction and cores{measure}",
        assumed=(
            f"clock {ASSUMED_GHZ} GHz on every core",
            f"{pipes} vector multiply-add pipe(s) per core: {fp32_cycle} FLOP/cycle at "
            f"{caps.float_vector_bits}-bit",
            f"int8 at {int8_cycle:.3g} ops/cycle ({_int8_text(caps.int8_dot)}, "
            f"{caps.vector_bits}-bit)",
            f"memory bandwidth {ASSUMED_BANDWIDTH_GBS:g} GB/s",
            *_cores_note(caps),
        ),
    )


def _rank(preset: CpuPreset, caps) -> tuple:
    # Within a level, the same int8 unit first (an AMX preset's int8 peak is 8x the vector
    # one's: never a non-AMX target's, and what an AMX target's int8 convs run on), then
    # float vectors of the target's width (AVX-only cores share ssse3 with Atoms but run
    # 256-bit floats).
    same_float = preset.float_vector_bits == caps.float_vector_bits
    return (preset.amx == caps.amx, preset.cores == caps.cores,
            bool(caps.mcpu) and preset.mcpu == caps.mcpu,
            same_float, preset.measured, -abs(math.log(preset.cores / caps.cores)))


def _int8_unit_note(preset: CpuPreset, caps) -> tuple:
    """What a preset of the other int8 unit (AMX tiles or vectors) takes for granted."""
    if preset.amx == caps.amx:
        return ()
    if caps.amx:
        return (f"int8 peak of {preset.name} is {preset.int8_dot}'s (vectors): the target's "
                "int8 convs run on AMX tiles, several times faster",)
    return (f"int8 peak of {preset.name} is AMX tiles' ({AMX_FAMILY}), which the target "
            f"does not have: its int8 runs on {caps.int8_dot}, several times slower",)


def select_preset(caps, presets=None) -> CpuPreset:
    """The preset whose ISA level (hence architecture and int8 instruction) and core count fit
    a target, scaled to its cores when none has them, else one estimated from the target.

    Among presets of the target's ISA level, one with the same core count wins, then the same
    CPU (``mcpu``), then a measured one.  A preset of another CPU or core count comes back with
    ``assumed`` saying so; a cross target never gets the host's preset unless the host has the
    target's ISA level.

    Parameters
    ----------
    caps : TargetCaps
        From :func:`aiq_tvm.targets.capabilities`.
    presets : iterable of CpuPreset, optional
        Candidates (default: :data:`PRESETS`).
    """
    pool = [p for p in (PRESETS.values() if presets is None else presets) if p.isa == caps.isa]
    if not pool:
        return estimate_preset(caps)
    best = max(pool, key=lambda p: _rank(p, caps))
    notes = [*_int8_unit_note(best, caps), *_cores_note(caps)]
    if best.mcpu != caps.mcpu:
        notes.insert(0, f"the target's CPU ({caps.mcpu or 'none named'}) performs like "
                     f"{best.name} ({best.mcpu or 'generic'}, same ISA level {caps.isa})")
    chosen = best.scaled(caps.cores)
    return dataclasses.replace(chosen, assumed=(*notes, *chosen.assumed)) if notes else chosen


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

