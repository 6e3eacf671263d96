"""64-bit Arm (AArch64) support: the NEON int8 dot-product families of the kernel library
(:mod:`.neon`) and emulated RPC devices for tests (:mod:`.emulation`)."""

from .emulation import EmulationUnavailable, RPCServer, emulation_root, emulator_python

__all__ = ["EmulationUnavailable", "RPCServer", "emulation_root", "emulator_python"]
