"""Ad-hoc (session 27): fp32 depthwise convs whose channels fill half-width vectors only
(C % 16 == 8 on AVX-512): full-width vectors with a padded copy (``AIQ_INLINE_BORDER=0``)
against half-width vectors reading the borders inline (both forced here for every shape, also
where the planner chooses otherwise), built for this host, same weights and input; times
interleaved (median of 7 rounds of 20 calls). Arguments ``N,H,W,C,C,KH,KW,STRIDE``. Output:
dw_half.txt (recorded before the planner weighed inline borders against the copy, when inline
was the only mode of these layers at half width; ``AIQ_INLINE_BORDER=1`` keeps that)::

    TVM_NUM_THREADS=2 flock /work/bench.lock python docs/runs/s27/dw_half.py \\
        1,56,56,72,72,3,3,1 8,28,28,120,120,5,5,1 ...
"""
import os
import sys
from dataclasses import replace

import numpy as np
import tvm
from dw_border import compiled, layer, time_interleaved

from aiq_tvm.targets import host_target
from aiq_tvm.targets.x86 import conv2d as cm
from aiq_tvm.targets.x86 import conv2d_kernel

ORIGINAL_NARROW = cm._narrow_cpu


def narrow(spec, cpu, scheme, qmax):
    if os.environ.get("HALF") == "1":
        return replace(cpu, isa=replace(cpu.isa, vector_bits=cpu.isa.vector_bits // 2))
    return ORIGINAL_NARROW(spec, cpu, scheme, qmax)


def main():
    target = tvm.target.Target(host_target())
    cm._narrow_cpu = narrow
    for arg in sys.argv[1:]:
        spec, wt, b, x = layer(arg)
        fns, outs, info = [], [], []
        for half in ("0", "1"):
            os.environ["HALF"] = half
            os.environ["AIQ_INLINE_BORDER"] = half
            k = conv2d_kernel(spec, "fp32", wt, b, act="relu", target=target)
            f, args, out = compiled(k, x, target)
            outs.append(out)
            fns.append((f, args))
            info.append(k.info["schedule"] + (" inline" if k.info["inline_border"] else " copy"))
        err = np.abs(outs[0] - outs[1]).max()
        a, bb = time_interleaved(fns)
        print(f"{arg}: full {a:.3f} ms ({info[0]}), half {bb:.3f} ms ({info[1]}), "
              f"x{a / bb:.2f}, maxdiff {err:.2e}", flush=True)


if __name__ == "__main__":
    main()
