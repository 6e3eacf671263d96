"""What a compilation target can do, derived from the ``tvm.target.Target`` alone.

Kernels, schedules, the cost model and the tests ask :func:`capabilities` instead of matching
CPU names: the ISA level, the vector width, the int8 dot-product instruction family, the
register file, the thread count, and whether this process can execute code built for the
target (so a test runs it or skips with a reason, and a cross build calibrates on the host).
Hardware facts come from LLVM's feature set for the target (``target_has_features``, as TOPI's
``get_simd_32bit_lanes`` does); the host's facts come from the kernel's CPU flags, which see
what a hypervisor masks and LLVM's CPU-name tables do not.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "TargetCaps",
    "ISA_LEVELS",
    "INT8_DOT_KINDS",
    "INT8_WEIGHT_QMAX",
    "capabilities",
    "host_features",
    "host_arch",
    "host_cache_bytes",
    "thread_count",
]

# x86 and Arm ISA levels, best first within an architecture (the order tests iterate in).
ISA_LEVELS = (
    "avx512_vnni",  # AVX-512 (BW) with VNNI: vpdpbusd on zmm
    "avx512bw",  # AVX-512 BW without VNNI: vpmaddubsw + vpmaddwd on zmm
    "avx_vnni",  # AVX2 with AVX-VNNI: VEX vpdpbusd on ymm (Alder Lake, Zen 5 client)
    "avx2",  # AVX2 + FMA: vpmaddubsw + vpmaddwd on ymm
    "ssse3",  # SSSE3 without AVX2 (Atom / Celeron, Sandy Bridge): pmaddubsw + pmaddwd on xmm
    "sse",  # x86-64 without SSSE3 (SSE2): int8 widened to int16, pmaddwd on xmm
    "neon_i8mm",  # Armv8.6 I8MM: smmla / usdot
    "neon_dotprod",  # Armv8.2 DotProd: sdot / udot
    "neon",  # Armv8.0 AdvSIMD: smull / sadalp
    "generic",  # anything else LLVM targets
)
# How int8 x int8 products reach an int32 accumulator on each level.
INT8_DOT_KINDS = {
    "avx512_vnni": "vpdpbusd",
    "avx512bw": "vpmaddubsw",
    "avx_vnni": "vpdpbusd",
    "avx2": "vpmaddubsw",
    "ssse3": "vpmaddubsw",
    "sse": "vpmaddwd",
    "neon_i8mm": "smmla",
    "neon_dotprod": "sdot",
    "neon": "smull",
    "generic": "none",
}
# Largest |code| of 8-bit weights each int8 dot family multiplies exactly with uint8
# activations: vpmaddubsw sums byte-pair products into int16 with saturation, so its targets
# use 7-bit codes (2 * 255 * 63 < 2**15, as ONNX Runtime's reduce_range); 127 elsewhere.
INT8_WEIGHT_QMAX = {"vpmaddubsw": 63}
# LLVM feature names read off a target (and compared with the host's).
# AMD's XOP / FMA4 (Bulldozer family, dropped since Zen): LLVM emits them for bdver* targets,
# so a host without them must not run such code.
_X86_FEATURES = ("ssse3", "sse4.1", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
                 "avx512vnni", "avxvnni", "xop", "fma4", "amx-tile", "amx-int8")
_ARM_FEATURES = ("neon", "dotprod", "i8mm", "fullfp16", "sve")
# /proc/cpuinfo spellings of the same features.
_CPUINFO_NAMES = {
    "ssse3": "ssse3", "sse4_1": "sse4.1", "avx": "avx", "avx2": "avx2", "fma": "fma",
    "f16c": "f16c", "xop": "xop", "fma4": "fma4",
    "avx512f": "avx512f", "avx512bw": "avx512bw", "avx512vl": "avx512vl",
    "avx512_vnni": "avx512vnni", "avx_vnni": "avxvnni", "amx_tile": "amx-tile",
    "amx_int8": "amx-int8",
    "asimd": "neon", "asimddp": "dotprod", "i8mm": "i8mm", "asimdhp": "fullfp16", "sve": "sve",
}


@dataclass(frozen=True)
class TargetCaps:
    """Hardware facts of one target.

    Attributes
    ----------
    arch : str
        ``"x86_64"``, ``"aarch64"`` or the triple's architecture.
    isa : str
        One of :data:`ISA_LEVELS`: the best kernel family the target supports.
    vector_bits : int
        Width of the vectors our kernels use (512, 256 or 128).
    int8_dot : str
        Instruction family of the int8 inner product (see :data:`INT8_DOT_KINDS`).
    vector_registers : int
        Architectural vector registers (32 with AVX-512 or on AArch64, 16 with AVX2).
    cores : int
        Threads the kernels are balanced over.
    cores_source : str
        Where ``cores`` came from (the target's ``num-cores``, ``TVM_NUM_THREADS``, this
        machine's CPU count, or an assumption for a cross target that gives none).
    mcpu, triple : str
        The target's CPU and triple (empty when it names none).
    host_runnable : bool
        This process can execute code built for the target (same architecture, and the host
        has every ISA feature the target enables).
    features : frozenset of str
        The ISA features above that the target enables (LLVM names).
    missing_on_host : tuple of str
        Features the target enables that this machine lacks (why it is not host-runnable).
    fma_bits : int
        Width of the core's FMA pipes: ``vector_bits``, or 256 on cores whose 512-bit FMAs
        issue as two 256-bit halves (:data:`SPLIT_512_FMA_CPUS`), where a 256-bit FMA costs
        half a 512-bit one (0: unknown, taken as ``vector_bits``).
    l2_bytes : int
        A core's level-2 cache: this machine's (sysfs) for a host-runnable target, else the
        data sheet's for the CPUs of :data:`L2_BYTES_BY_CPU`, else 0 (unknown).
    l2_source : str
        Where ``l2_bytes`` came from.
    """

    arch: str
    isa: str
    vector_bits: int
    int8_dot: str
    vector_registers: int
    cores: int
    cores_source: str
    mcpu: str
    triple: str
    host_runnable: bool
    features: frozenset = field(default_factory=frozenset)
    missing_on_host: tuple = ()
    fma_bits: int = 0
    l2_bytes: int = 0
    l2_source: str = "unknown"

    @property
    def fma_pipe_bits(self) -> int:
        """:attr:`fma_bits`, or ``vector_bits`` where it is not known."""
        return self.fma_bits or self.vector_bits

    @property
    def float_vector_bits(self) -> int:
        """Vector width of float kernels: 256 on x86 with AVX but without AVX2 (Sandy / Ivy
        Bridge, Bulldozer, Jaguar), whose 256-bit registers hold floats but not integers;
        else :attr:`vector_bits`."""
        if self.isa == "ssse3" and "avx" in self.features:
            return 256
        return self.vector_bits

    @property
    def lanes32(self) -> int:
        """32-bit lanes per vector (fp32 / int32): 16, 8 or 4."""
        return self.vector_bits // 32

    @property
    def int8_lanes(self) -> int:
        """8-bit lanes per vector."""
        return self.vector_bits // 8

    @property
    def has_int8_dot(self) -> bool:
        """Whether int8 products have a dedicated widening multiply-add (the int8 kernels
        then beat FP32); ``False`` means they fall back to 32-bit multiplies."""
        return self.int8_dot != "none"

    @property
    def int8_weight_qmax(self) -> int:
        """Largest |code| of 8-bit weights on this target (127, or 63 where ``vpmaddubsw``
        would saturate): int8 weight codes depend on the deploy target."""
        return INT8_WEIGHT_QMAX.get(self.int8_dot, 127)

    def layer_int8_weight_qmax(self, depthwise: bool) -> int:
        """Largest |code| of one layer's 8-bit weights: :attr:`int8_weight_qmax`, except for
        depthwise convs, which reduce over no input channels, multiply in int32 vectors on
        every target (never on the saturating ``vpmaddubsw``) and so keep full 8-bit codes."""
        return 127 if depthwise else self.int8_weight_qmax

    @property
    def rounding_convert(self) -> bool:
        """float32 -> int32 vector conversion rounds half to even in one op (x86 ``cvtps2dq``
        in the default MXCSR mode, every x86-64 level): the requantizing epilogues round and
        convert at once (``x86.common.quantize_clipped``)."""
        return self.arch == "x86_64"

    @property
    def truncating_narrow(self) -> bool:
        """int32 vectors narrow to bytes, truncating, in one instruction of every vector width
        (AVX-512F + VL ``vpmovdb``): the requantizing epilogues then skip the [0, 255] clip
        their codes never leave (``x86.common._rounding_convert_codes``)."""
        return self.arch == "x86_64" and {"avx512f", "avx512vl"} <= self.features

    @property
    def vnni(self) -> bool:
        """``vpdpbusd`` is available at this vector width."""
        return self.int8_dot == "vpdpbusd"

    @property
    def amx(self) -> bool:
        """AMX tiles and their int8 multiply (``tdpbusd``) are enabled."""
        return {"amx-tile", "amx-int8"} <= self.features

    def describe(self) -> str:
        """One line for reports: ``avx2 (256-bit, vpmaddubsw), 2 cores (TVM_NUM_THREADS)``."""
        return (f"{self.isa} ({self.vector_bits}-bit, int8 via {self.int8_dot}), {self.cores} "
                f"cores ({self.cores_source})")


def host_arch() -> str:
    """This machine's architecture as LLVM triples spell it."""
    m = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m, m)


@functools.lru_cache(maxsize=1)
def host_features() -> frozenset:
    """ISA features this machine executes (LLVM names), from ``/proc/cpuinfo``.

    The kernel reports what CPUID says after a hypervisor's masking, which LLVM's host-CPU
    name does not capture (a VM of an AVX-512 CPU model may have AVX-512 disabled). Off Linux,
    LLVM's view of the host CPU is used.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            text = f.read()
    except OSError:
        text = ""
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    if flags:
        return frozenset(_CPUINFO_NAMES[f] for f in flags if f in _CPUINFO_NAMES)
    import tvm
    from tvm.target import codegen

    host = tvm.target.Target({"kind": "llvm", "mcpu": str(codegen.llvm_get_system_cpu())})
    return frozenset(f for f in (*_X86_FEATURES, *_ARM_FEATURES)
                     if codegen.target_has_features(f, host))


SYSFS_CACHES = Path("/sys/devices/system/cpu/cpu0/cache")


@functools.lru_cache(maxsize=16)
def host_cache_bytes(level: int | None = None, caches: Path = SYSFS_CACHES) -> int:
    """Size of this machine's data or unified cache of ``level`` (default: the last level,
    the highest sysfs lists) for CPU 0, read from ``caches``; 0 where sysfs does not say."""
    sizes: dict[int, int] = {}
    for index in Path(caches).glob("index*"):
        try:
            lvl = int((index / "level").read_text())
            size = (index / "size").read_text().strip()
            kind = (index / "type").read_text().strip() if (index / "type").exists() else ""
        except (OSError, ValueError):
            continue
        if kind == "Instruction":
            continue
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1:], 1)
        sizes[lvl] = int(size.rstrip("KMG")) * mult
    if level is None:
        return sizes[max(sizes)] if sizes else 0
    return sizes.get(level, 0)


def thread_count() -> tuple[int, str]:
    """Threads TVM's pool will use on this machine and where the figure comes from."""
    env = os.environ.get("TVM_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env), "TVM_NUM_THREADS"
    return os.cpu_count() or 1, "this machine's CPU count"


# A cross target that names no core count is balanced for this many threads (and says so).
ASSUMED_CROSS_CORES = 4


def _target_arch(triple: str) -> str:
    arch = triple.split("-", 1)[0] if triple else host_arch()
    return {"arm64": "aarch64", "amd64": "x86_64"}.get(arch, arch)


def _isa_level(arch: str, has) -> str:
    if arch == "x86_64":
        if has("avx512f") and has("avx512bw"):
            return "avx512_vnni" if has("avx512vnni") else "avx512bw"
        if has("avx2") and has("fma"):
            return "avx_vnni" if has("avxvnni") else "avx2"
        return "ssse3" if has("ssse3") else "sse"
    if arch == "aarch64":
        if has("i8mm") and has("dotprod"):
            return "neon_i8mm"
        return "neon_dotprod" if has("dotprod") else "neon"
    return "generic"


_VECTOR_BITS = {"avx512_vnni": 512, "avx512bw": 512, "avx_vnni": 256, "avx2": 256}


def level_vector_bits(isa: str) -> int:
    """Vector width of an ISA level's kernels (pure Python, for presets)."""
    return _VECTOR_BITS.get(isa, 128)


# LLVM CPU names of cores whose 512-bit FMAs issue as two 256-bit halves on 256-bit pipes
# (AMD Zen 4: one 512-bit or two 256-bit FMAs per cycle, the same FLOPs), so half-width
# vectors cost nothing where a layer's channels leave a 512-bit vector partly empty.
# LLVM's feature set does not tell these from full-width cores (Zen 5, Intel AVX-512).
SPLIT_512_FMA_CPUS = frozenset({"znver4"})
# A core's private L2 of LLVM CPU names, from the vendors' optimization manuals, for targets
# this process cannot run (a host-runnable target takes this machine's from sysfs): the
# planner sizes work that re-reads weights from a core's L2 with it.
L2_BYTES_BY_CPU = {
    "haswell": 256 << 10, "broadwell": 256 << 10, "skylake": 256 << 10,
    "skylake-avx512": 1 << 20, "cascadelake": 1 << 20, "icelake-server": 1280 << 10,
    "sapphirerapids": 2 << 20, "alderlake": 1280 << 10,
    "znver2": 512 << 10, "znver3": 512 << 10, "znver4": 1 << 20, "znver5": 1 << 20,
}


def _l2_of(mcpu: str, runnable: bool) -> tuple[int, str]:
    if runnable and host_cache_bytes(2):
        return host_cache_bytes(2), "this machine's (sysfs)"
    if mcpu in L2_BYTES_BY_CPU:
        return L2_BYTES_BY_CPU[mcpu], f"{mcpu} data sheet"
    return 0, "unknown"


def capabilities(target) -> TargetCaps:
    """The :class:`TargetCaps` of a target.

    Parameters
    ----------
    target : tvm.target.Target or dict
        An LLVM target (its JSON dict form is accepted).
    """
    import tvm
    from tvm.target import codegen

    tgt = target if isinstance(target, tvm.target.Target) else tvm.target.Target(target)
    if tgt.kind.name != "llvm":
        raise ValueError(f"aiq_tvm targets CPUs (kind 'llvm'), got kind {tgt.kind.name!r}")
    triple = str(tgt.attrs.get("mtriple", "") or "")
    mcpu = str(tgt.attrs.get("mcpu", "") or "")
    arch = _target_arch(triple)
    names = _X86_FEATURES if arch == "x86_64" else _ARM_FEATURES if arch == "aarch64" else ()
    feats = frozenset(f for f in names if codegen.target_has_features(f, tgt))
    if arch == "aarch64":
        feats |= {"neon"}  # AdvSIMD is mandatory in AArch64
    isa = _isa_level(arch, feats.__contains__)
    bits = level_vector_bits(isa)
    regs = 32 if arch == "aarch64" or bits == 512 else 16
    missing = ()
    if arch == host_arch():
        missing = tuple(sorted(feats - host_features()))
    runnable = arch == host_arch() and not missing
    n = tgt.attrs.get("num-cores")
    if n:
        cores, source = int(n), "the target's num-cores"
    elif runnable:
        cores, source = thread_count()
    else:
        cores, source = ASSUMED_CROSS_CORES, "assumed: the cross target names no num-cores"
    fma_bits = 256 if bits == 512 and mcpu in SPLIT_512_FMA_CPUS else bits
    l2, l2_source = _l2_of(mcpu, runnable)
    return TargetCaps(arch=arch, isa=isa, vector_bits=bits, int8_dot=INT8_DOT_KINDS[isa],
                      vector_registers=regs, cores=cores, cores_source=source, mcpu=mcpu,
                      triple=triple, host_runnable=runnable, features=feats,
                      missing_on_host=missing, fma_bits=fma_bits, l2_bytes=l2,
                      l2_source=l2_source)
