"""TVM RPC servers on this machine, for testing the remote (device-in-the-loop) path.

:class:`RPCServer` starts ``python -m tvm.exec.rpc_server`` on 127.0.0.1 in its own process
group and stops it on exit. The Python is either this process's (an x86 "device": what CI uses
to check the remote path) or the emulated aarch64 Python that
``scripts/arm/setup_emulation.sh`` builds (a qemu-user "board": runs cross-compiled aarch64
builds, slowly; correctness checks only, never timings).

>>> with RPCServer.emulated_aarch64() as server:      # doctest: +SKIP
...     res.benchmark(remote=server.address)            # "127.0.0.1:9190"
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["EmulationUnavailable", "RPCServer", "emulation_root", "emulator_python"]

_REPO = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = "scripts/arm/setup_emulation.sh"
# The server logs this line once its socket is bound (TVM's rpc/server.py).
_BOUND = re.compile(r"bind to [\d.]+:(\d+)")


class EmulationUnavailable(RuntimeError):
    """The emulated aarch64 Python is not set up (the message says how to set it up)."""


def emulation_root() -> Path:
    """Folder of the emulated aarch64 environment: ``$AIQ_ARM_ROOT`` or ``<repo>/.arm``."""
    return Path(os.environ.get("AIQ_ARM_ROOT") or _REPO / ".arm")


def emulator_python(root: str | os.PathLike | None = None) -> Path:
    """The wrapper that runs the aarch64 Python under qemu-aarch64.

    Raises
    ------
    EmulationUnavailable
        If the environment (or qemu-aarch64) is missing.
    """
    root = Path(root) if root is not None else emulation_root()
    py = root / "bin" / "python3"
    if not py.is_file() or not os.access(py, os.X_OK):
        raise EmulationUnavailable(
            f"no emulated aarch64 Python at {py}; run {SETUP_SCRIPT} (AIQ_ARM_ROOT={root}) first")
    from shutil import which

    if which("qemu-aarch64") is None:
        raise EmulationUnavailable(f"qemu-aarch64 is not installed; run {SETUP_SCRIPT}")
    return py


class RPCServer:
    """A TVM RPC server process on ``host`` (loopback only), as a context manager.

    Parameters
    ----------
    python : str or os.PathLike
        Interpreter that runs ``tvm.exec.rpc_server`` (default: this one).
    host : str
        Address to bind; must be a loopback address (tests never serve on a network).
    port, port_end : int
        The server binds the first free port in ``[port, port_end)``.
    env : dict, optional
        Extra environment variables of the server.
    startup_timeout : float
        Seconds to wait for the server to bind and accept a session (the emulated one needs
        about a minute on a loaded 2-core machine).
    """

    def __init__(self, python=None, *, host: str = "127.0.0.1", port: int = 9190,
                 port_end: int = 9390, env: dict | None = None, startup_timeout: float = 600.0):
        if not host.startswith("127.") and host not in ("localhost", "::1"):
            raise ValueError(f"RPCServer binds loopback addresses only, got {host!r}")
        if not 0 < port < port_end <= 65536:
            raise ValueError(f"need 0 < port < port_end <= 65536, got [{port}, {port_end})")
        self.python = str(python or sys.executable)
        self.host, self.port_range = host, (port, port_end)
        # A device only loads and runs modules: TVM's runtime library is enough (and imports
        # in a fraction of the compiler library's time, which matters under emulation).
        self.env = {"TVM_USE_RUNTIME_LIB": "1", **(env or {})}
        self.startup_timeout = float(startup_timeout)
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._log = None

    @classmethod
    def emulated_aarch64(cls, root=None, **kwargs) -> RPCServer:
        """A server on the emulated aarch64 Python of ``root`` (default
        :func:`emulation_root`)."""
        return cls(emulator_python(root), **kwargs)

    @property
    def address(self) -> str:
        """``"host:port"`` of the running server."""
        if self.port is None:
            raise RuntimeError("the RPC server is not running")
        return f"{self.host}:{self.port}"

    def start(self) -> RPCServer:
        if self._proc is not None:
            raise RuntimeError("the RPC server is already running")
        lo, hi = self.port_range
        cmd = [self.python, "-m", "tvm.exec.rpc_server", "--host", self.host,
               "--port", str(lo), "--port-end", str(hi)]
        self._log = tempfile.NamedTemporaryFile("w+", prefix="aiq-rpc-", suffix=".log")
        env = {**os.environ, **self.env}
        self._proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=env,
                                      start_new_session=True, preexec_fn=_die_with_parent)
        try:
            self.port = self._wait_bound()
            self._wait_accepting()
        except BaseException:
            self.stop()
            raise
        return self

    def log(self) -> str:
        """What the server printed so far."""
        if self._log is None:
            return ""
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")

    def _wait_bound(self) -> int:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            m = _BOUND.search(self.log())
            if m:
                return int(m.group(1))
            if self._proc.poll() is not None:
                raise RuntimeError(f"the RPC server exited with {self._proc.returncode}:\n"
                                   f"{self.log()[-2000:]}")
            time.sleep(0.2)
        raise TimeoutError(f"the RPC server did not bind within {self.startup_timeout:.0f}s:\n"
                           f"{self.log()[-2000:]}")

    def _wait_accepting(self) -> None:
        """The socket listens right after the bind message; one session proves it serves."""
        from tvm import rpc

        deadline = time.monotonic() + 60
        while True:
            try:
                rpc.connect(self.host, self.port, session_timeout=60)
                return
            except Exception:  # noqa: BLE001 - TVM raises TVMError/InternalError variants
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    raise
                time.sleep(0.5)

    def connect(self, session_timeout: float = 0):
        """A new ``tvm.rpc.RPCSession`` to this server."""
        from tvm import rpc

        return rpc.connect(self.host, self.port, session_timeout=session_timeout)

    def stop(self) -> None:
        """Stop the server and every process it started (its own process group)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _stop_group(proc)
        if self._log is not None:
            self._log.close()
            self._log = None
        self.port = None

    def __enter__(self) -> RPCServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _die_with_parent() -> None:
    """In the server process: get SIGTERM if the process that started it dies without
    :meth:`RPCServer.stop` (a killed test run must not leave servers behind)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop_group(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """SIGTERM the server's process group (the server, its worker, its session processes),
    SIGKILL what is left after ``grace_s``, and wait until the group is gone."""
    pgid = proc.pid  # start_new_session: the server leads its own group
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not _group_alive(pgid):
            break
        os.killpg(pgid, sig)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader; the others are reparented and reaped by init
            if not _group_alive(pgid):
                break
            time.sleep(0.1)
    proc.wait()
