"""Ad-hoc (session 28): tune fp32 conv kernels with the library's tuner
(``targets/x86/tune.py``: meta-schedule over our own template, the default re-measured against
the best tuned schedules) and print each ``TuneReport``: where a tuned schedule beats the
default by much, the planner misses something. Arguments ``N,H,C,O,K,S`` (square maps,
padding K // 2, depthwise when C == O and K > 1). Output: tune_conv.txt::

    TVM_NUM_THREADS=2 flock /work/bench.lock python docs/runs/s28/tune_conv.py TRIALS \\
        8,112,32,16,1,1 8,112,32,32,3,1 ...
"""
import functools
import sys
import tempfile

import numpy as np
import tvm

from aiq_tvm.targets import host_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.targets.x86.tune import tune_kernels


def build_fn(arg: str, target):
    n, h, c, o, k, s = map(int, arg.split(","))
    spec = ConvSpec(n, h, h, c, o, k, k, stride=(s, s), padding=k // 2,
                    groups=c if (c == o and k > 1) else 1)
    rng = np.random.default_rng(0)
    w = rng.standard_normal(spec.weight_shape).astype("float32")
    return functools.partial(conv2d_kernel, spec, "fp32", w, np.zeros(o, "float32"),
                             act="relu", target=target)


def main():
    target = tvm.target.Target(host_target())
    trials, shapes = int(sys.argv[1]), sys.argv[2:]
    with tempfile.TemporaryDirectory() as db:
        reports = tune_kernels([build_fn(a, target) for a in shapes], db, trials)
    for arg, r in zip(shapes, reports, strict=True):
        print(f"{arg}: default {r.kernel} {r.default_ms:.3f} ms, chosen {r.chosen} "
              f"{r.best_ms:.3f} ms, x{r.default_ms / r.best_ms:.2f} ({r.trials} trials)",
              flush=True)


if __name__ == "__main__":
    main()
