"""Executed aarch64 instructions of an exported build, counted on the emulated board.

There is no Arm board on our machines, so no aarch64 build can be timed here. What can be
measured exactly is what the code executes: the qemu-user board of
``scripts/arm/setup_emulation.sh`` runs the exported library with a TCG plugin
(``qemu_count.c``, compiled on first use with the host's C compiler) that counts every
executed instruction per translation block. The guest (``count_guest.py``) runs ``main``
once, then ``runs`` more times between two markers; only the marked runs are counted, and the
blocks are attributed to the model library (by function and mnemonic, from its disassembly),
TVM's runtime (``libtvm_runtime`` and ``libtvm_ffi``: the VM that calls the kernels) and
everything else (libc, Python).

Instruction counts are architectural: the same on every aarch64 core that runs the library.
The model library's and the runtime's are also the same on every run (one thread); "other"
(Python, the allocator) varies by a few hundred instructions. They are not time: a core's
time also depends on how many instructions it issues per cycle, on the latencies of each
class, and on the memory system; an int8 ``sdot`` does 16 multiply-adds where ``fmla``
does 4.

>>> counts = count_library("model.so", x, runs=2)    # doctest: +SKIP
>>> counts.per_image()["model library"]                # doctest: +SKIP
"""

from __future__ import annotations

import bisect
import os
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .disassembly import OBJDUMP
from .emulation import EmulationUnavailable, emulation_root, emulator_python

__all__ = ["Block", "ExecutionCounts", "Listing", "attribute", "count_library",
           "parse_blocks", "parse_maps", "plugin_path"]

PLUGIN_SOURCE = Path(__file__).with_name("qemu_count.c")
GUEST = Path(__file__).with_name("count_guest.py")
REGIONS = ("model library", "TVM runtime", "other")
_RUNTIME = re.compile(r"libtvm(_runtime|_ffi)?\.so$")  # the VM and the FFI it calls through


@dataclass(frozen=True)
class Block:
    """A translation block: ``n_insns`` instructions from ``vaddr``, executed ``count`` times
    between the guest's two markers."""

    vaddr: int
    n_insns: int
    count: int


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    offset: int
    path: str


@dataclass
class Listing:
    """A library's disassembly: function start addresses and each instruction's mnemonic, by
    ELF virtual address."""

    starts: list[int]
    names: list[str]
    mnemonics: dict[int, str]

    @classmethod
    def parse(cls, text: str) -> Listing:
        funcs = sorted((int(a, 16), n) for a, n in
                       re.findall(r"^([0-9a-f]+) <([^>\s]+)>:$", text, flags=re.M))
        insns = {int(a, 16): m for a, m in
                 re.findall(r"^\s*([0-9a-f]+):\s+([a-z][a-z0-9.]*)", text, flags=re.M)}
        return cls([a for a, _ in funcs], [n for _, n in funcs], insns)

    @classmethod
    def of(cls, library: str | os.PathLike, objdump: str = OBJDUMP) -> Listing:
        text = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(library)],
                              check=True, capture_output=True, text=True).stdout
        return cls.parse(text)

    def function(self, address: int) -> str:
        i = bisect.bisect_right(self.starts, address) - 1
        return self.names[i] if i >= 0 else "?"


@dataclass
class ExecutionCounts:
    """Instructions one run of ``main`` executed (a run = one batch of ``batch`` images)."""

    batch: int
    runs: int
    regions: dict[str, float]
    functions: dict[str, float] = field(default_factory=dict)
    mnemonics: dict[str, float] = field(default_factory=dict)
    output: np.ndarray | None = None

    @property
    def total(self) -> float:
        return sum(self.regions.values())

    def per_image(self) -> dict[str, float]:
        """Instructions per image by region, and ``"total"``."""
        out = {k: v / self.batch for k, v in self.regions.items()}
        out["total"] = self.total / self.batch
        return out


def parse_blocks(text: str) -> list[Block]:
    """The plugin's output: blocks with their count between the first two markers."""
    lines = text.splitlines()
    m = re.fullmatch(r"# marks (\d+)", lines[0].strip()) if lines else None
    if m is None or int(m.group(1)) < 2:
        found = m.group(1) if m else "no header"
        raise ValueError(f"expected two markers in the counts ({found}): the guest did not "
                         "reach its second run marker")
    blocks = []
    for line in lines[1:]:
        vaddr, n, c1, c2 = line.split()[:4]
        if int(c2) > int(c1):
            blocks.append(Block(int(vaddr, 16), int(n), int(c2) - int(c1)))
    return blocks


def parse_maps(text: str) -> list[Mapping]:
    """File-backed mappings of a ``/proc/self/maps`` listing."""
    out = []
    for line in text.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith("/"):
            lo, hi = (int(v, 16) for v in parts[0].split("-"))
            out.append(Mapping(lo, hi, int(parts[2], 16), parts[5].strip()))
    return sorted(out, key=lambda m: m.start)


def _region(path: str | None, library: str) -> str:
    if path is not None and os.path.basename(path) == library:
        return "model library"
    if path is not None and _RUNTIME.search(path):
        return "TVM runtime"
    return "other"


def attribute(blocks: list[Block], maps: list[Mapping], library: str, listing: Listing,
              runs: int, batch: int) -> ExecutionCounts:
    """Instructions per run by region; the model library's by function and mnemonic.

    ``library`` is the file name of the model library in ``maps``; its load base is the
    start of its mapping at file offset 0 (a shared library is linked at address 0, so
    ``vaddr - base`` is the address ``objdump`` shows).
    """
    starts = [m.start for m in maps]
    base = min((m.start - m.offset for m in maps if os.path.basename(m.path) == library),
               default=None)
    if base is None:
        raise ValueError(f"{library} is not in the guest's memory map")
    regions, functions, mnemonics = Counter(), Counter(), Counter()
    for b in blocks:
        i = bisect.bisect_right(starts, b.vaddr) - 1
        path = maps[i].path if i >= 0 and b.vaddr < maps[i].end else None
        region = _region(path, library)
        regions[region] += b.n_insns * b.count
        if region != "model library":
            continue
        addr = b.vaddr - base
        functions[listing.function(addr)] += b.n_insns * b.count
        for k in range(b.n_insns):  # aarch64: fixed 4-byte instructions
            mnemonics[listing.mnemonics.get(addr + 4 * k, "?")] += b.count
    scale = 1.0 / runs
    return ExecutionCounts(
        batch, runs, {r: regions[r] * scale for r in REGIONS},
        {k: v * scale for k, v in functions.most_common()},
        {k: v * scale for k, v in mnemonics.most_common()})


def plugin_path(root: str | os.PathLike | None = None) -> Path:
    """The counting plugin, compiled into the emulation folder when missing or stale."""
    root = Path(root) if root is not None else emulation_root()
    lib = root / "qemu_count.so"
    if lib.is_file() and lib.stat().st_mtime >= PLUGIN_SOURCE.stat().st_mtime:
        return lib
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise EmulationUnavailable("no C compiler to build the qemu counting plugin "
                                   "(apt-get install gcc, or set CC)")
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o", str(lib),
                    str(PLUGIN_SOURCE)], check=True, capture_output=True, text=True)
    return lib


def count_library(library: str | os.PathLike, x: np.ndarray, runs: int = 2,
                  root: str | os.PathLike | None = None, timeout: float = 7200.0
                  ) -> ExecutionCounts:
    """Run a single-file aarch64 export (weights embedded:
    ``BuildResult.export_library(path, single_file=True)``) on the emulated board with the
    counting plugin; ``x`` is one batch. One guest thread (the counters are plain adds)."""
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    library = Path(library).resolve()
    py, plugin = emulator_python(root), plugin_path(root)
    with tempfile.TemporaryDirectory(prefix="aiq-count-") as tmp:
        inputs, outputs = os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy")
        counts, maps = os.path.join(tmp, "blocks.txt"), os.path.join(tmp, "maps.txt")
        np.save(inputs, np.ascontiguousarray(x))
        env = {**os.environ, "QEMU_PLUGIN": f"file={plugin},out={counts}",
               "TVM_NUM_THREADS": "1", "TVM_USE_RUNTIME_LIB": "1"}
        proc = subprocess.run([str(py), str(GUEST), str(library), inputs, str(runs), outputs,
                               maps], env=env, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0 or not os.path.exists(counts):
            raise RuntimeError(f"the counted run on the emulated board failed "
                               f"(exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        with open(counts) as f:
            blocks = parse_blocks(f.read())
        with open(maps) as f:
            mapping = parse_maps(f.read())
        result = attribute(blocks, mapping, library.name, Listing.of(library), runs,
                           int(x.shape[0]))
        result.output = np.load(outputs)
    return result
