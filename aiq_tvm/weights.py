"""Weights shipped beside the library: the file format, loading, and a VM with them bound.

A build's ``main`` takes its weights as trailing arguments (:class:`~aiq_tvm.passes.LiftWeights`
lifts the final, packed and quantized constants just before VM code generation), so the
exported library holds code only and the weights live in a file next to it::

    model.so       the kernels and the VM bytecode (tvm.runtime.load_module loads it)
    model.params   the weights, TVM's parameter-dict format (tvm.runtime.save_param_dict)

:func:`load` loads both and returns a :class:`WeightedVM`, whose ``vm["main"](x)`` runs the
model as a single-file library's would.  The weights are read straight into TVM tensors (no
intermediate copy of the file), so loading peaks at about the weights' size rather than the
several copies TVM makes of constants embedded in a library.

The params file is a plain TVM parameter dict (``tvm.runtime.load_param_dict_from_file`` reads
it): its first entry, ``aiq_manifest`` (uint8, UTF-8 JSON), names the weights in ``main``'s
order with their shapes, dtypes and a SHA-256 digest; the library returns the same JSON from
its ``aiq_weights_manifest`` function, so a file from another build is refused by name.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tvm
from tvm import relax

from .passes.lift_weights import MANIFEST_FORMAT, MANIFEST_FUNCTION, weights_digest

__all__ = ["Weights", "WeightedVM", "WeightsError", "weights_path", "save", "read", "load",
           "bind", "library_manifest", "MANIFEST_KEY", "WEIGHTS_SUFFIX"]

MANIFEST_KEY = "aiq_manifest"
WEIGHTS_SUFFIX = ".params"
# TVM's parameter-dict serialization (src/runtime/tensor.cc, SaveDLTensor): a list magic,
# the names, then per tensor a magic, its device, ndim, dtype, shape and byte count.
_LIST_MAGIC = 0xF7E58D4F05049CB7
_TENSOR_MAGIC = 0xDD5E40F096B4A13F
_DTYPE_CODES = {0: "int", 1: "uint", 2: "float", 4: "bfloat"}


class WeightsError(ValueError):
    """A weights file that is not the one the library was built with (or not one at all)."""


@dataclass
class Weights:
    """A build's lifted weights: ``names`` and ``tensors`` in ``main``'s parameter order and
    the manifest (JSON) the library carries."""

    names: list[str]
    tensors: list
    manifest: str

    @property
    def nbytes(self) -> int:
        return sum(int(np.prod(t.shape)) * np.dtype(t.dtype).itemsize for t in self.tensors)


def weights_path(library: str | os.PathLike) -> Path:
    """The params file beside a library: ``model.so`` -> ``model.params``."""
    lib = Path(library)
    return lib.with_suffix(WEIGHTS_SUFFIX) if lib.suffix else lib.with_name(
        lib.name + WEIGHTS_SUFFIX)


def save(weights: Weights, path: str | os.PathLike) -> None:
    """Write the params file: the manifest first (a reader checks it before the weights)."""
    manifest = np.frombuffer(weights.manifest.encode(), np.uint8)
    entries = {MANIFEST_KEY: tvm.runtime.tensor(manifest)}
    entries.update(zip(weights.names, weights.tensors, strict=True))
    tvm.runtime.save_param_dict_to_file(entries, str(path))


def _manifest_of(text: str, where: str) -> dict:
    try:
        manifest = json.loads(text)
    except ValueError as err:
        raise WeightsError(f"{where}: the weights manifest is not JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise WeightsError(f"{where}: not an aiq_tvm weights manifest")
    return manifest


class _Reader:
    """Sequential reads of TVM's parameter-dict format with errors that name the file."""

    def __init__(self, fh, path: Path):
        self.fh, self.path = fh, path
        self.size = os.fstat(fh.fileno()).st_size

    def unpack(self, fmt: str):
        size = struct.calcsize(fmt)
        raw = self.fh.read(size)
        if len(raw) != size:
            raise WeightsError(f"{self.path} is truncated (ends inside a header)")
        return struct.unpack(fmt, raw)

    def header(self) -> list[str]:
        magic, _ = self.unpack("<QQ")
        if magic != _LIST_MAGIC:
            raise WeightsError(f"{self.path} is not a TVM parameter file (magic {magic:#x})")
        (count,) = self.unpack("<Q")
        names = [self.text(self.unpack("<Q")[0]) for _ in range(count)]
        (tensors,) = self.unpack("<Q")
        if tensors != count:
            raise WeightsError(f"{self.path}: {count} names but {tensors} tensors")
        return names

    def text(self, nbytes: int) -> str:
        """``nbytes`` of UTF-8 (a name, the manifest); a corrupt length is caught before
        reading, not by allocating it."""
        if nbytes > self.size:
            raise WeightsError(f"{self.path} is corrupt or truncated (a {nbytes}-byte string in "
                               f"a {self.size}-byte file)")
        raw = self.fh.read(nbytes)
        if len(raw) != nbytes:
            raise WeightsError(f"{self.path} is truncated (ends inside a string)")
        return raw.decode(errors="replace")

    def tensor_header(self) -> tuple[tuple[int, ...], str, int]:
        magic, _, _dev_type, _dev_id, ndim, code, bits, lanes = self.unpack("<QQiiiBBH")
        if magic != _TENSOR_MAGIC or code not in _DTYPE_CODES or lanes != 1 or not 0 <= ndim <= 16:
            raise WeightsError(f"{self.path}: corrupt tensor header")
        shape = self.unpack(f"<{ndim}q") if ndim else ()
        (nbytes,) = self.unpack("<q")
        dtype = "bool" if (code, bits) == (1, 1) else f"{_DTYPE_CODES[code]}{bits}"
        return tuple(shape), dtype, nbytes

    def into(self, tensor, nbytes: int, name: str) -> None:
        """Read the tensor's bytes straight into its memory (CPU tensors: no extra copy)."""
        view = np.from_dlpack(tensor).reshape(-1).view(np.uint8)
        if view.nbytes != nbytes or self.fh.readinto(memoryview(view)) != nbytes:
            raise WeightsError(f"{self.path} is truncated (in weight {name})")


def _check_entry(path: Path, i: int, got: tuple, expected: list) -> None:
    """The stored tensor against the file's own manifest (already matched to the library's):
    a difference means the file was altered after export."""
    name, shape, dtype = got
    if [name, list(shape), dtype] != expected:
        raise WeightsError(
            f"{path}: weight {i} is stored as {name} {list(shape)} {dtype} but its manifest "
            f"lists {expected[0]} {expected[1]} {expected[2]}: corrupt or altered file")


def read(path: str | os.PathLike, manifest: str | None = None, device=None,
         verify: bool = False) -> Weights:
    """Read a params file into tensors on ``device`` (default CPU), checked against the
    library's ``manifest`` (JSON) when given; ``verify`` also recomputes the digest over the
    bytes read (catches a corrupted file, at one pass over the weights)."""
    path = Path(path)
    device = tvm.cpu() if device is None else device
    lib = None if manifest is None else _manifest_of(manifest, "the library")
    with open(path, "rb") as fh:
        r = _Reader(fh, path)
        names = r.header()
        if not names or names[0] != MANIFEST_KEY:
            raise WeightsError(f"{path} has no {MANIFEST_KEY} entry first: not an aiq_tvm "
                               "weights file")
        text = r.text(r.tensor_header()[2])
        own = _manifest_of(text, str(path))
        if lib is not None and own.get("sha256") != lib.get("sha256"):
            _explain_mismatch(path, own, lib)
        entries = own["weights"]
        if [e[0] for e in entries] != names[1:]:
            raise WeightsError(f"{path}: its names do not match its own manifest")
        tensors = []
        for i, expected in enumerate(entries):
            shape, dtype, nbytes = r.tensor_header()
            _check_entry(path, i, (names[i + 1], shape, dtype), expected)
            cpu = tvm.runtime.empty(shape, dtype, tvm.cpu())
            r.into(cpu, nbytes, names[i + 1])
            on_cpu = device.dlpack_device_type() == tvm.cpu().dlpack_device_type()
            tensors.append(cpu if on_cpu else cpu.copyto(device))
        if fh.read(1):
            raise WeightsError(f"{path} has data after its last weight")
    if verify and weights_digest(entries, (t.numpy() for t in tensors)) != own["sha256"]:
        raise WeightsError(f"{path}: the weights' bytes do not match their digest (corrupt)")
    return Weights(names[1:], tensors, text)


def _explain_mismatch(path: Path, own: dict, lib: dict) -> None:
    ours, theirs = own.get("weights", []), lib.get("weights", [])
    for i, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        if a != b:
            raise WeightsError(
                f"{path} does not match the library: weight {i} is {a[0]} {a[1]} {a[2]} in "
                f"the file, {b[0]} {b[1]} {b[2]} in the library (another build's weights)")
    if len(ours) != len(theirs):
        raise WeightsError(f"{path} holds {len(ours)} weights, the library takes "
                           f"{len(theirs)} (another build's weights)")
    raise WeightsError(f"{path} does not match the library: same weight names and shapes "
                       f"but other values (digest {own.get('sha256', '?')[:12]}, the library "
                       f"expects {lib.get('sha256', '?')[:12]}): another build of this model")


class WeightedVM:
    """A ``relax.VirtualMachine`` with ``main``'s weights bound: ``vm["main"](x)`` and
    ``vm.time_evaluator("main", dev)(x)`` take the inputs only, as for a library with
    embedded weights.  ``vm.vm`` is the underlying VM (its ``main`` takes the inputs, then
    ``vm.weights`` in order)."""

    def __init__(self, vm: relax.VirtualMachine, weights: list | None = None,
                 manifest: str | None = None):
        self.vm = vm
        self.weights = list(weights or [])
        self.manifest = manifest

    def __getitem__(self, name: str):
        fn = self.vm[name]
        if name != "main" or not self.weights:
            return fn
        weights = self.weights
        return lambda *inputs: fn(*inputs, *weights)

    def time_evaluator(self, name: str, dev, **kwargs):
        ev = self.vm.time_evaluator(name, dev, **kwargs)
        if name != "main" or not self.weights:
            return ev
        weights = self.weights
        return lambda *inputs: ev(*inputs, *weights)

    def set_instrument(self, instrument) -> None:
        self.vm.set_instrument(instrument)

    @property
    def module(self):
        return self.vm.module


def bind(exe: relax.VMExecutable, device=None) -> WeightedVM:
    """A VM over an executable with its lifted weights (``exe.aiq_weights``) bound."""
    device = tvm.cpu() if device is None else device
    w = getattr(exe, "aiq_weights", None)
    vm = relax.VirtualMachine(exe, device)
    return WeightedVM(vm) if w is None else WeightedVM(vm, w.tensors, w.manifest)


def library_manifest(vm: relax.VirtualMachine) -> str | None:
    """The weights manifest a library carries (None: its weights are embedded)."""
    try:
        fn = vm[MANIFEST_FUNCTION]
    except AttributeError:
        return None
    return str(fn())


def load(path: str | os.PathLike, device=None, weights: str | os.PathLike | None = None,
         verify: bool = False) -> WeightedVM:
    """Load an exported library and, when its weights live beside it, its params file
    (``weights``: another path for it; default :func:`weights_path`).

    Raises
    ------
    FileNotFoundError
        When the library or its params file is missing (the message names both).
    WeightsError
        When the params file is not the library's (the first differing weight is named).
    """
    lib_path = Path(path)
    if not lib_path.is_file():
        raise FileNotFoundError(f"no library at {lib_path}")
    device = tvm.cpu() if device is None else device
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(lib_path)), device)
    manifest = library_manifest(vm)
    if manifest is None:  # a single-file export: the weights are in the library
        return WeightedVM(vm)
    wpath = Path(weights) if weights is not None else weights_path(lib_path)
    if not wpath.is_file():
        raise FileNotFoundError(
            f"{lib_path} holds code only; its weights file {wpath} is missing. Export writes "
            f"both files: keep {wpath.name} beside {lib_path.name} (or pass weights=PATH), "
            "or export with single_file=True to embed the weights in the library")
    w = read(wpath, manifest, device, verify)
    return WeightedVM(vm, w.tensors, manifest)
