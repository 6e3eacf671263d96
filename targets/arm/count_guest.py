"""Runs inside the emulated aarch64 Python (started by :mod:`.counting`): TVM's runtime and
numpy only, no aiq_tvm.

    python count_guest.py LIBRARY INPUTS.npy RUNS OUTPUTS.npy MAPS.txt

Loads a single-file export (weights embedded), runs ``main`` once (first-call costs), marks,
runs it ``RUNS`` more times, marks again, then saves the last output and the process's memory
map (``/proc/self/maps``, guest addresses under qemu-user) for the host to attribute the
counted blocks to libraries.
"""

import os
import sys

import numpy as np
import tvm
from tvm.runtime.vm import VirtualMachine

MARKER = 0x41495121  # qemu_count.c: lseek(-1, MARKER, 0) copies every block's counter


def mark() -> None:
    try:
        os.lseek(-1, MARKER, 0)
    except OSError:  # EBADF, as intended: the call only signals the plugin
        pass


def first_tensor(out):
    while not hasattr(out, "numpy"):
        out = out[0]
    return out.numpy()


def main(library: str, inputs: str, runs: str, outputs: str, maps: str) -> None:
    vm = VirtualMachine(tvm.runtime.load_module(library), tvm.cpu())
    x = tvm.runtime.tensor(np.load(inputs))
    out = vm["main"](x)
    mark()
    for _ in range(int(runs)):
        out = vm["main"](x)
    mark()
    np.save(outputs, first_tensor(out))
    with open("/proc/self/maps") as src, open(maps, "w") as dst:
        dst.write(src.read())


if __name__ == "__main__":
    main(*sys.argv[1:6])
