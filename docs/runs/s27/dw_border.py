"""Ad-hoc (session 27): depthwise kernels built with a switch at ``0`` and at ``1``, same
weights and input, for this host or ``TARGET_JSON``: largest output difference and times
interleaved (median of 7 rounds of 20 calls each). Arguments ``N,H,W,C,C,KH,KW,STRIDE``
(padding KH // 2, groups C, or a ninth field ``G``); ``SCHEME`` (default fp32) the precision;
``SWITCH`` the switch:

- ``AIQ_INLINE_BORDER`` (default): padded copy (``0``) against borders read inline (``1``,
  forced also where the planner keeps the copy). Outputs: dw_border.txt, dw_border_7x7.txt.
- ``AIQ_DW_FLOAT_ACC``: integer depthwise sums in int32 (``0``) against float32 (``1``).
  Output: dw_float_acc.txt.
- ``AIQ_DW_UNROLL_TAPS`` (session 28): taps as loops (``0``) against unrolled (``1``), the
  planner's border choice in both. Output: docs/runs/s28/dw_unroll.txt.
- ``AIQ_PW_ROWS`` (session 28; pointwise convs, ``G`` = 1): register blocks of up to 4 rows
  (``0``) against taller ones preferred (``1``). Output: docs/runs/s28/pw_rows.txt.

    [SWITCH=...] [SCHEME=int8] [TARGET_JSON=...] TVM_NUM_THREADS=2 flock /work/bench.lock \\
        python docs/runs/s27/dw_border.py 1,112,112,32,32,3,3,1 8,56,56,144,144,3,3,1 ...
"""
import json
import os
import sys
import time

import numpy as np
import tvm

from aiq_tvm import testing
from aiq_tvm.targets import host_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.testing import ActQParams

LABELS = {"AIQ_INLINE_BORDER": ("pad", "inline"), "AIQ_DW_FLOAT_ACC": ("int32", "f32acc"),
          "AIQ_DW_UNROLL_TAPS": ("loops", "unrolled"), "AIQ_PW_ROWS": ("rows<=4", "rows")}


def time_interleaved(fns, rounds=7, calls=20):
    """Median ms per call of each ``(f, args)``, timed in alternating rounds."""
    ts = [[] for _ in fns]
    for _ in range(rounds):
        for i, (f, args) in enumerate(fns):
            t0 = time.perf_counter()
            for _ in range(calls):
                f(*args)
            ts[i].append((time.perf_counter() - t0) / calls)
    return [float(np.median(t)) * 1e3 for t in ts]


def compiled(k, xin, target):
    """``(f, args, output)`` of a kernel compiled for ``target`` and run once on ``xin``."""
    args = testing.kernel_args(k, xin)
    f = testing.compile_prim_func(k.prim_func, target).mod["main"]
    f(*args)
    return f, args, args[-1].numpy().copy()


def layer(arg):
    n, h, w, c, o, kh, kw, s, *g = list(map(int, arg.split(",")))
    spec = ConvSpec(n, h, w, c, o, kh, kw, stride=(s, s), padding=kh // 2,
                    groups=g[0] if g else c)
    rng = np.random.default_rng(0)
    wt = (rng.standard_normal(spec.weight_shape) * 0.3).astype("float32")
    b = rng.standard_normal(o).astype("float32")
    x = rng.standard_normal(spec.in_shape).astype("float32")
    return spec, wt, b, x


def main():
    tj = os.environ.get("TARGET_JSON")
    target = tvm.target.Target(json.loads(tj) if tj else host_target())
    scheme = os.environ.get("SCHEME", "fp32")
    switch = os.environ.get("SWITCH", "AIQ_INLINE_BORDER")
    off, on = LABELS[switch]
    for arg in sys.argv[1:]:
        spec, wt, b, x = layer(arg)
        qp = ActQParams.from_range(float(x.min()), float(x.max()))
        kw_ = {} if scheme == "fp32" else {"act_qparams": qp}
        fns, outs = [], []
        for flag in ("0", "1"):
            os.environ[switch] = flag
            k = conv2d_kernel(spec, scheme, wt, b, act="relu", target=target, **kw_)
            f, args, out = compiled(k, testing.kernel_input(scheme, x, qp), target)
            outs.append(out)
            fns.append((f, args))
        err = np.abs(outs[0] - outs[1]).max()
        a, bb = time_interleaved(fns)
        print(f"{scheme} {arg}: {off} {a:.3f} ms, {on} {bb:.3f} ms, x{a / bb:.2f}, "
              f"maxdiff {err:.2e}, {k.info['schedule']}", flush=True)


if __name__ == "__main__":
    main()
