"""What an exported aarch64 library's integer kernels execute, read from its disassembly.

A cross-built library cannot run here, so its instructions are the evidence that a layer
took the level's int8 path: ``usmmla`` / ``usdot`` (indexed: ``sudot``) with ``+i8mm``,
``sdot`` with ``+dotprod``, ``smull`` products widened by ``sadalp`` on plain NEON.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

OBJDUMP = "aarch64-linux-gnu-objdump"
# The int8 multiply instructions of each Arm ISA level (aiq_tvm.targets.capabilities levels).
LEVEL_INSTRUCTIONS = {
    "neon_i8mm": ("usmmla", "usdot", "sudot"),  # sudot: usdot's indexed form
    "neon_dotprod": ("sdot",),
    "neon": ("smull", "sadalp"),
}
# The integer layer kernels of an aiq_tvm build: ``<base>_<int8|int4>_compute_``, with the
# layer's ``passes._lowering.kernel_base``, which keeps any character but dots and colons
# (torchvision's RegNet layers keep dashes: ``block1-0``).
_KERNEL = re.compile(r".+_int[48]_compute_")


def kernel_bodies(lib: str | Path, objdump: str = OBJDUMP) -> dict[str, str]:
    """Disassembly of each integer layer kernel of a shared library, by symbol name."""
    text = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(lib)],
                          check=True, capture_output=True, text=True).stdout
    return split_kernels(text)


def split_kernels(text: str) -> dict[str, str]:
    """The integer layer kernels of an ``objdump -d`` listing, by symbol name (its
    ``<name>:`` headers delimit the functions)."""
    heads = list(re.finditer(r"^[0-9a-f]+ <([^>\s]+)>:$", text, flags=re.M))
    ends = [m.start() for m in heads[1:]] + [len(text)]
    return {m.group(1): text[m.end():end] for m, end in zip(heads, ends, strict=True)
            if _KERNEL.fullmatch(m.group(1))}


def disassembled(body: str, mnemonic: str) -> int:
    """How many vector instructions ``mnemonic`` (``sdot v0.4s, ...``) a body holds."""
    return len(re.findall(rf"^\s*[0-9a-f]+:\s+{mnemonic}\s+v\d+\.", body, flags=re.M))


def instruction_counts(body: str, mnemonics) -> dict[str, int]:
    return {m: disassembled(body, m) for m in mnemonics}
