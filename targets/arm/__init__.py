"""64-bit Arm (AArch64) support: emulated RPC devices for tests (and, with the kernel library,
NEON kernels)."""

from .emulation import EmulationUnavailable, RPCServer, emulation_root, emulator_python

__all__ = ["EmulationUnavailable", "RPCServer", "emulation_root", "emulator_python"]
