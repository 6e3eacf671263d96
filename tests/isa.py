"""Targets per ISA level for kernel tests, and which of them this machine can execute.

Tests compile for any target but run code only where the host executes it; the rest skip
with the reason (the missing CPU features), never crash with an illegal instruction.
"""

from __future__ import annotations

import pytest

from aiq_tvm.targets.capabilities import capabilities

ZNVER4 = {"kind": "llvm", "mcpu": "znver4", "num-cores": 2}  # AVX-512 + VNNI
HASWELL = {"kind": "llvm", "mcpu": "haswell", "num-cores": 2}  # AVX2 + FMA


def runnable(target) -> bool:
    return capabilities(target).host_runnable


def requires_host(target):
    """Skip unless this machine executes code built for ``target``."""
    caps = capabilities(target)
    return pytest.mark.skipif(
        not caps.host_runnable,
        reason=f"this machine cannot run {caps.isa} code (lacks {', '.join(caps.missing_on_host)})",
    )


# The best x86 kernel target this machine runs: kernels are checked numerically on it.
BEST_X86 = ZNVER4 if runnable(ZNVER4) else HASWELL
requires_vnni_host = requires_host(ZNVER4)
