import os
import sys

os.environ.setdefault("TVM_NUM_THREADS", "2")
import numpy as np
import torch
import tvm

from aiq_tvm.bench import Timer
from aiq_tvm.targets import resolve_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel

target = resolve_target(sys.argv[1] if len(sys.argv) > 1 else "llvm")[0]
rng = np.random.default_rng(0)
for n, h, c, o, d in [
    (1, 28, 256, 256, 2),
    (1, 28, 512, 512, 4),
    (2, 12, 16, 24, 2),
    (1, 28, 2048, 256, 12),
]:
    spec = ConvSpec(n, h, h, c, o, 3, 3, padding=d, dilation=d)
    x = rng.standard_normal(spec.in_shape).astype(np.float32)
    w = (rng.standard_normal(spec.weight_shape) / np.sqrt(9 * c)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    ref = (
        torch.nn.functional.conv2d(
            torch.from_numpy(x.transpose(0, 3, 1, 2)),
            torch.from_numpy(w),
            torch.from_numpy(b),
            padding=d,
            dilation=d,
        )
        .numpy()
        .transpose(0, 2, 3, 1)
    )
    ts = {}
    for wg in (None, False):
        k = conv2d_kernel(spec, "fp32", w, b, target=target, winograd=wg)
        ex = tvm.compile(tvm.IRModule({"main": k.prim_func}), target)
        a = [tvm.runtime.tensor(v) for v in (x, *k.consts)]
        a.append(tvm.runtime.tensor(np.zeros(k.out_shape, k.out_dtype)))
        f = ex.mod["main"]
        f(*a)
        err = np.abs(a[-1].numpy() - ref).max() / np.abs(ref).max()
        ts[wg] = (
            Timer(lambda f=f, a=a: f(*a), "wall"),
            k.info.get("algorithm", "direct"),
            k.info.get("schedule"),
            err,
        )
    samp = {wg: [] for wg in ts}
    for _ in range(5):
        for wg, t in ts.items():
            samp[wg].append(t[0](50.0))
    print(
        f"{n}x{h}x{h} {c}->{o} d{d}: "
        + "  ".join(
            f"{ts[wg][1]}/{ts[wg][2]} {np.median(samp[wg]) * 1e3:.3f} ms err {ts[wg][3]:.1e}"
            for wg in ts
        ),
        flush=True,
    )
