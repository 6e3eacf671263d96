"""Ad-hoc (session 27): depthwise kernels with a padded copy (``AIQ_INLINE_BORDER=0``) against
the same kernels reading their borders inline (``AIQ_INLINE_BORDER=1``; the default for fp32), built for this host,
same weights and input: largest output difference, and times interleaved (median of 7 rounds
of 20 calls each). Arguments ``N,H,W,C,C,KH,KW,STRIDE`` (padding KH // 2, groups C)::

    TVM_NUM_THREADS=2 flock /work/bench.lock python docs/runs/s27/dw_border.py \\
        1,112,112,32,32,3,3,1 8,56,56,144,144,3,3,1 ...

``SCHEME=int8`` compares the integer kernels (they keep the copy by default; ``=1`` forces
inline borders on them too).
"""
import os, sys, time
import numpy as np, tvm
from aiq_tvm import testing
from aiq_tvm.targets import host_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
import json
target = tvm.target.Target(json.loads(os.environ["TARGET_JSON"]) if os.environ.get("TARGET_JSON") else host_target())
scheme = os.environ.get("SCHEME", "fp32")
for arg in sys.argv[1:]:
    v = list(map(int, arg.split(",")))
    n, h, w, c, o, kh, kw, s = v[:8]
    spec = ConvSpec(n, h, w, c, o, kh, kw, stride=(s, s), padding=kh // 2, groups=c)
    rng = np.random.default_rng(0)
    wt = (rng.standard_normal(spec.weight_shape) * 0.3).astype("float32")
    b = rng.standard_normal(o).astype("float32")
    x = rng.standard_normal(spec.in_shape).astype("float32")
    from aiq_tvm.testing import ActQParams
    qp = ActQParams.from_range(float(x.min()), float(x.max()))
    fns, outs = [], []
    for inl in ("0", "1"):
        os.environ["AIQ_INLINE_BORDER"] = inl
        kw_ = {}
        if scheme != "fp32":
            kw_["act_qparams"] = qp
        k = conv2d_kernel(spec, scheme, wt, b, act="relu", target=target, **kw_)
        xin = testing.kernel_input(scheme, x, qp)
        args = testing.kernel_args(k, xin)
        f = testing.compile_prim_func(k.prim_func, target).mod["main"]
        f(*args)
        outs.append(args[-1].numpy().copy())
        fns.append((f, args))
    err = np.abs(outs[0] - outs[1]).max()
    ts = [[], []]
    for _ in range(7):
        for i, (f, args) in enumerate(fns):
            t0 = time.perf_counter()
            for _ in range(20):
                f(*args)
            ts[i].append((time.perf_counter() - t0) / 20)
    a, bb = np.median(ts[0]) * 1e3, np.median(ts[1]) * 1e3
    print(f"{scheme} {arg}: pad {a:.3f} ms, inline {bb:.3f} ms, x{a/bb:.2f}, maxdiff {err:.2e}, {k.info['schedule']}", flush=True)
