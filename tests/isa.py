"""Targets per ISA level for kernel tests, which of them this machine can execute, and the
aarch64 disassembly of exported libraries (from :mod:`aiq_tvm.targets.arm.disassembly`).

Tests compile for any target but run code only where the host executes it; the rest skip
with the reason (the missing CPU features), never crash with an illegal instruction. The
target of each level is a sample CPU of that level; tests check its capabilities, not its name.
"""

from __future__ import annotations

import pytest

from aiq_tvm.targets.arm.disassembly import disassembled, kernel_bodies  # noqa: F401 (re-exported)
from aiq_tvm.targets.capabilities import capabilities

# One sample target per x86 ISA level, best first.
ISA_TARGETS = {
    "avx512_vnni": {"kind": "llvm", "mcpu": "znver4", "num-cores": 2},  # vpdpbusd zmm
    "avx512bw": {"kind": "llvm", "mcpu": "skylake-avx512", "num-cores": 2},  # vpmaddubsw zmm
    "avx_vnni": {"kind": "llvm", "mcpu": "alderlake", "num-cores": 2},  # VEX vpdpbusd ymm
    "avx2": {"kind": "llvm", "mcpu": "haswell", "num-cores": 2},  # vpmaddubsw ymm
    "ssse3": {"kind": "llvm", "mcpu": "goldmont", "num-cores": 2},  # pmaddubsw xmm (Atom)
    "sse": {"kind": "llvm", "mcpu": "x86-64", "num-cores": 2},  # pmaddwd xmm (SSE2 baseline)
}
# One aarch64 target per Arm ISA level, best first (cross-compiled here; run on the emulated
# board of `make test-arm`). "+neon" alone is Armv8.0 AdvSIMD.
_AARCH64 = {"kind": "llvm", "mtriple": "aarch64-linux-gnu"}
ARM_TARGETS = {
    "neon_i8mm": {**_AARCH64, "mattr": ["+neon", "+dotprod", "+i8mm"]},  # usmmla / usdot
    "neon_dotprod": {**_AARCH64, "mattr": ["+neon", "+dotprod"]},  # sdot
    "neon": {**_AARCH64, "mattr": ["+neon"]},  # smull / sadalp
}
AARCH64_DOTPROD = ARM_TARGETS["neon_dotprod"]
ZNVER4 = ISA_TARGETS["avx512_vnni"]
HASWELL = ISA_TARGETS["avx2"]


def runnable(target) -> bool:
    return capabilities(target).host_runnable


def requires_host(target):
    """Skip unless this machine executes code built for ``target``."""
    caps = capabilities(target)
    return pytest.mark.skipif(
        not caps.host_runnable,
        reason=f"this machine cannot run {caps.isa} code (lacks {', '.join(caps.missing_on_host)})",
    )


def isa_params(levels=tuple(ISA_TARGETS), run: bool = True) -> list:
    """``pytest.param`` per ISA level (id = level); with ``run`` those the host cannot
    execute are marked to skip with the reason."""
    out = []
    for level in levels:
        target = ISA_TARGETS[level]
        marks = [requires_host(target)] if run else []
        out.append(pytest.param(target, id=level, marks=marks))
    return out


# The best x86 kernel target this machine runs: kernels are checked numerically on it.
BEST_X86 = next((t for t in ISA_TARGETS.values() if runnable(t)), HASWELL)
requires_vnni_host = requires_host(ZNVER4)

