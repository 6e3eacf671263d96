"""Deploying a build to another machine: export with the right compiler, run and time it on a
remote device through TVM RPC.

* :func:`export_compiler`: the C++ compiler that links a target's library, TVM's host default
  for this machine's architecture, ``aarch64-linux-gnu-g++`` for aarch64.
* :func:`connect`: an ``RPCSession`` from a session or a ``"host:port"`` string.
* :class:`RemoteModule`: a compiled module uploaded to an RPC device; ``run`` and
  ``benchmark`` there, ``time_kernels`` times its TIR kernels one by one (the ``measured``
  search objective on a remote device).

Times taken on an emulated device (qemu) say nothing about real hardware: use one for
correctness only.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tvm
from tvm import relax, rpc

from .checks import check_remote
from .runtime import run_batches, time_main
from .targets import capabilities
from .targets.capabilities import host_arch
from .weights import WeightedVM, weights_path
from .weights import save as save_weights

__all__ = ["CROSS_COMPILERS", "export_compiler", "export", "connect", "RemoteModule",
           "KernelCall"]

# C++ compilers that link a shared library for another architecture (Debian package names in
# the error message when one is missing).
CROSS_COMPILERS = {"aarch64": ("aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu")}


def export_compiler(target) -> str | None:
    """The compiler that links ``target``'s library: ``None`` (TVM's default,
    ``tvm.support.cc``) when the target is this machine's architecture, else its cross
    compiler.

    Raises
    ------
    ValueError
        For an architecture without a known cross compiler (pass ``cc=`` yourself).
    RuntimeError
        When the cross compiler is not installed (the message names the Debian package).
    """
    caps = capabilities(target)
    if caps.arch == host_arch():
        return None
    if caps.arch not in CROSS_COMPILERS:
        raise ValueError(f"no cross compiler known for {caps.arch} (known: "
                         f"{', '.join(CROSS_COMPILERS)}); pass cc='<compiler>' to export")
    cc, package = CROSS_COMPILERS[caps.arch]
    if shutil.which(cc) is None:
        raise RuntimeError(f"{cc} is not installed; `apt-get install {package}` (or pass "
                           f"cc='<compiler>') to export a library for {caps.arch}")
    return cc


def export(module, path: str | os.PathLike, target, cc: str | None = None,
           write_weights: bool = True, **kwargs) -> list[str]:
    """``module.export_library(path)`` linked for ``target`` (``cc`` default:
    :func:`export_compiler`), and, for an executable whose weights were lifted
    (``aiq_weights``), its params file beside it (:func:`aiq_tvm.weights.weights_path`)
    unless ``write_weights`` is False. ``module`` is a VM executable or a runtime module.
    Returns the paths written."""
    cc = cc if cc is not None else export_compiler(target)
    if cc is not None:
        kwargs["cc"] = cc
    weights = getattr(module, "aiq_weights", None) if write_weights else None
    wpath = weights_path(path)
    if weights is not None and wpath == Path(path):
        raise ValueError(f"the library {path} cannot be named like its weights file; use "
                         "another suffix (e.g. .so)")
    module.export_library(str(path), **kwargs)
    if weights is None:
        return [str(path)]
    save_weights(weights, wpath)
    return [str(path), str(wpath)]


def connect(remote) -> rpc.RPCSession:
    """An RPC session: ``remote`` itself, or a new one to a ``"host:port"`` server.

    Raises
    ------
    ValueError
        For anything else (the message shows the accepted forms).
    """
    if remote is None:
        raise ValueError("remote must be 'host:port' or a tvm.rpc.RPCSession, got None")
    remote = check_remote(remote)
    if not isinstance(remote, str):
        return remote
    host, _, port = remote.rpartition(":")
    return rpc.connect(host.strip("[]"), int(port))


@dataclass(frozen=True)
class KernelCall:
    """One TIR kernel call of a compiled module: its symbol and its arguments' shapes."""

    symbol: str
    args: tuple[tuple[tuple[int, ...], str], ...]


def kernel_calls(lowered: tvm.IRModule, func: str = "main") -> list[KernelCall]:
    """The TIR kernel calls of ``func`` in a lowered module (after ``CallTIRRewrite``: PrimFuncs
    are called directly with their output buffers), in program order, with the static shapes
    of their parameters. Calls inside ``If`` branches are included once each."""
    prims = {gv: f for gv, f in lowered.functions.items() if isinstance(f, tvm.tirx.PrimFunc)}
    calls: list[KernelCall] = []

    @relax.expr_functor.visitor
    class _Calls(relax.PyExprVisitor):
        def visit_call_(self, call: relax.Call) -> None:  # noqa: N802 - TVM's visitor API
            if isinstance(call.op, tvm.ir.GlobalVar) and call.op in prims:
                calls.append(_signature(call.op.name_hint, prims[call.op]))
            for arg in call.args:
                self.visit_expr(arg)

    if func in {gv.name_hint for gv in lowered.get_global_vars()}:
        _Calls().visit_expr(lowered[func])
    return calls


def _signature(symbol: str, prim: tvm.tirx.PrimFunc) -> KernelCall:
    args = []
    for param, ty in zip(prim.params, prim.ty.params, strict=True):
        if not isinstance(ty, relax.TensorType) or not isinstance(ty.shape, relax.ShapeExpr):
            raise ValueError(f"kernel {symbol}: parameter {param} is not a static-shape tensor "
                             f"({ty}); only such arguments can be generated for remote timing")
        shape = tuple(int(d) for d in ty.shape.values)  # static: batch sizes are specialized
        args.append((shape, str(ty.dtype)))
    return KernelCall(symbol, tuple(args))


def _random_args(call: KernelCall, dev, rng) -> list:
    """Arguments of the call's shapes: standard-normal floats, zeros for integers (a valid
    index for any gather), on ``dev``. Values do not change our kernels' run time."""
    out = []
    for shape, dtype in call.args:
        if dtype.startswith("float"):
            a = rng.standard_normal(shape).astype(dtype)
        else:
            a = np.zeros(shape, dtype)
        out.append(tvm.runtime.tensor(a, dev))
    return out


class RemoteModule:
    """A VM executable uploaded to an RPC device.

    Parameters
    ----------
    exe : relax.VMExecutable
        Built for the device's target.
    target : tvm.target.Target
        That target (chooses the compiler, see :func:`export_compiler`).
    remote : tvm.rpc.RPCSession or str
        The device (a session or ``"host:port"``). TVM's RPC server serves one session at a
        time: a second session to it waits until the first is closed, so pass one open
        session to everything that talks to a device at the same time.
    cc : str, optional
        Compiler override.
    """

    def __init__(self, exe: relax.VMExecutable, target, remote, cc: str | None = None):
        self.exe, self.target = exe, target
        self.session = connect(remote)
        self.dev = self.session.cpu()
        self._cc = cc
        vm = relax.VirtualMachine(self._upload(exe, "aiq_model"), self.dev)
        # Lifted weights go over the session as tensors on the device (the params file is
        # a host-side format; the device runs TVM's runtime only).
        w = getattr(exe, "aiq_weights", None)
        self.vm = WeightedVM(vm) if w is None else WeightedVM(
            vm, [tvm.runtime.tensor(t.numpy(), self.dev) for t in w.tensors], w.manifest)

    def _upload(self, module, stem: str):
        """Export, upload and load ``module`` under a name unique in the session (loading a
        second library of the same name kills the session's server process)."""
        name = f"{stem}_{uuid.uuid4().hex[:12]}.so"
        with tempfile.TemporaryDirectory(prefix="aiq-remote-") as tmp:
            path = os.path.join(tmp, name)
            export(module, path, self.target, self._cc, write_weights=False)
            self.session.upload(path)
        return self.session.load_module(name)

    def run(self, x: np.ndarray, batch_size: int) -> np.ndarray:
        """``main`` over ``x`` on the device, in batches of ``batch_size`` (last one padded)."""
        return run_batches(self.vm["main"], x, batch_size, self.dev)

    def benchmark(self, x: np.ndarray, repeat: int = 20, min_repeat_ms: int = 100) -> dict:
        """:func:`aiq_tvm.runtime.time_main` on the device (``remote`` says where)."""
        return time_main(self.vm, x, repeat, min_repeat_ms, dev=self.dev)

    def time_kernels(self, calls: Sequence[KernelCall], repeat: int = 7, number: int = 10
                     ) -> list[tuple[str, float]]:
        """Median microseconds of every kernel call, timed on the device one by one.

        The kernels' library (the executable's compiled TIR) is uploaded on its own; each
        distinct symbol is timed once with arguments of its shapes and the time repeated for
        its other calls (same symbol, same static shapes, same code).
        """
        lib = self.exe.mod.imports[0] if self.exe.mod.imports else self.exe.mod
        rlib = self._upload(lib, "aiq_kernels")
        rng = np.random.default_rng(0)
        us: dict[str, float] = {}
        for call in calls:
            if call.symbol not in us:
                ev = rlib.time_evaluator(call.symbol, self.dev, number=number, repeat=repeat)
                res = ev(*_random_args(call, self.dev, rng)).results
                us[call.symbol] = float(np.median(res)) * 1e6
        return [(c.symbol, us[c.symbol]) for c in calls]
