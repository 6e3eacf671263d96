"""Session 49: random depthwise -> pointwise pairs through the fused kernel
(targets/x86/dwpw.py) against the two kernels it replaces: outputs must be equal bit for bit.

    TVM_NUM_THREADS=2 python docs/runs/s49/fuzz_dwpw.py COUNT [TARGET_JSON]

Draws batch, map height and width (3-64, not square), channels, output channels, stride,
window (3 or 5), both activations, a residual and a requantizing epilogue; pairs the kernel
library refuses are counted with the reason."""
import collections
import json
import sys

import numpy as np
import tvm

from aiq_tvm.quant import ActQParams
from aiq_tvm.targets import resolve_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel, dwpw
from aiq_tvm.testing import compile_prim_func

ACTS = ["none", "relu", "relu6", "hardswish", "silu"]


def run(kernel, target, x, *extra):
    f = compile_prim_func(kernel.prim_func, target)["main"]
    y = tvm.runtime.tensor(np.zeros(kernel.out_shape, kernel.out_dtype))
    f(tvm.runtime.tensor(x), *[tvm.runtime.tensor(c) for c in kernel.consts],
      *[tvm.runtime.tensor(e) for e in extra], y)
    return y.numpy()


def case(seed, target):
    rng = np.random.default_rng(seed)
    n = int(rng.choice([1, 2, 3, 8]))
    h, w = (int(v) for v in rng.integers(3, 65, 2))
    c = int(rng.choice([4, 8, 12, 16, 24, 32, 40, 48, 64, 72, 96, 144, 192, 256]))
    o = int(rng.integers(4, 201))
    k, s = int(rng.choice([3, 5])), int(rng.choice([1, 2]))
    dw = ConvSpec(n, h, w, c, c, k, k, stride=s, padding=k // 2, groups=c)
    pw = ConvSpec(n, dw.OH, dw.OW, c, o, 1, 1)
    why = dwpw.fusion_reason(dw, pw, target)
    if why:
        return f"refused: {why}", None
    dact, pact = ACTS[rng.integers(len(ACTS))], ACTS[rng.integers(len(ACTS))]
    residual = bool(rng.integers(2))
    out_q = ActQParams.from_range(-2.0, 4.0) if rng.integers(4) == 0 else None
    w1 = rng.standard_normal(dw.weight_shape).astype(np.float32) * 0.3
    b1 = rng.standard_normal(c).astype(np.float32)
    w2 = rng.standard_normal(pw.weight_shape).astype(np.float32) * 0.1
    b2 = rng.standard_normal(o).astype(np.float32)
    x = rng.standard_normal(dw.in_shape).astype(np.float32)
    extra = [rng.standard_normal(pw.out_shape).astype(np.float32)] if residual else []
    fused = dwpw.depthwise_pointwise_kernel(dw, pw, w1, b1, w2, b2, dw_act=dact, pw_act=pact,
                                            residual=residual, out_qparams=out_q,
                                            target=target)
    mid = run(conv2d_kernel(dw, "fp32", w1, b1, act=dact, target=target), target, x)
    alone = conv2d_kernel(pw, "fp32", w2, b2, act=pact, residual=residual, out_qparams=out_q,
                          target=target)
    same = np.array_equal(run(fused, target, x, *extra), run(alone, target, mid, *extra))
    desc = (f"N{n} {h}x{w} C{c} O{o} k{k} s{s} {dact}/{pact} res={residual} "
            f"requant={out_q is not None} {fused.info['schedule']}")
    return ("equal" if same else "DIFFERENT"), desc


if __name__ == "__main__":
    count = int(sys.argv[1])
    target = resolve_target(sys.argv[2] if len(sys.argv) > 2 else "llvm")[0]
    tally = collections.Counter()
    for seed in range(count):
        verdict, desc = case(seed, target)
        tally[verdict.split(":")[0]] += 1
        if desc:
            print(f"seed {seed}: {verdict} {desc}", flush=True)
        else:
            tally[verdict] += 1
    print(json.dumps(dict(tally), indent=1))
