"""Argument checks shared by the build config, the search, calibration and the passes.

One function per kind of argument, so every entry point rejects bad input with the same
message (naming the argument, the value and the valid choices).  Pure Python.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

__all__ = [
    "check_choice",
    "check_lam",
    "check_percentile",
    "check_positive_int",
    "check_non_negative_int",
    "check_optional_positive_int",
    "check_non_negative_number",
    "check_remote",
]


def check_choice(what: str, value, valid: Iterable[str], extra: str = "") -> str:
    """``value`` must be one of ``valid`` (``extra`` describes other accepted forms)."""
    valid = list(valid)
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(valid)}{extra}")
    return value


def check_lam(lam) -> float:
    """The AIQ loss weight lambda: a number in [0, 1]."""
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real) or not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be a number in [0, 1] (lambda, the weight of AI in the "
                         f"loss), got {lam!r}")
    return float(lam)


def check_percentile(percentile) -> float:
    """Upper calibration percentile, in (50, 100]."""
    if isinstance(percentile, bool) or not isinstance(percentile, numbers.Real) or \
            not 50.0 < float(percentile) <= 100.0:
        raise ValueError(f"percentile must be in (50, 100], got {percentile!r}")
    return float(percentile)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive_int(name: str, value) -> int:
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_optional_positive_int(name: str, value) -> int | None:
    return None if value is None else check_positive_int(name, value)


def check_non_negative_int(name: str, value) -> int:
    if not _is_int(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def check_non_negative_number(name: str, value, unit: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0{unit}, got {value!r}")
    return float(value)


def check_remote(remote):
    """An RPC device: None, a ``"host:port"`` string, or an RPC session (anything with
    ``upload`` and ``load_module``, as ``tvm.rpc.RPCSession``)."""
    if remote is None or (hasattr(remote, "upload") and hasattr(remote, "load_module")):
        return remote
    if isinstance(remote, str):
        host, sep, port = remote.strip().rpartition(":")
        if sep and host and port.isdigit() and 0 < int(port) < 65536:
            return remote.strip()
    raise ValueError(f"remote must be 'host:port' (e.g. '127.0.0.1:9190') or a "
                     f"tvm.rpc.RPCSession, got {remote!r}")
