"""Session 32: pointwise convs built by the planner with the flat plans off and on
(``AIQ_FLAT_POINTWISE=0`` / ``1``), same inputs, outputs checked against numpy (residual
add included), timed alternating (median of 5 rounds of 5 calls). Arguments
``N,H,W,C,O[,SCHEME]``, each optionally followed by ``/TILES:OCB`` forced flat register
blocks (e.g. ``8,56,56,256,64/1x1x12:32/1x1x8:32``)::

    TVM_NUM_THREADS=2 flock /work/bench.lock python docs/runs/s32/flat_ab.py 8,14,14,1024,256
"""
import os
import sys

# numpy's BLAS threads (the reference) spin after a call and took a core from the timed
# kernels (3-10x slower first variant in a first version of this script).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, "/work/main/docs/runs/s27")
import numpy as np, tvm
from dw_border import time_interleaved, compiled
from aiq_tvm import testing
from aiq_tvm.testing import ActQParams
from aiq_tvm.targets import host_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel

tj = os.environ.get("TARGET_JSON")
t = tvm.target.Target(tj if tj else host_target())
from dataclasses import replace
from aiq_tvm.targets.x86 import conv2d as cm

orig = cm.conv_candidates


def forced(tiles, ocb):
    def cands(spec, fmt, cpu, flat=False):
        out = orig(spec, fmt, cpu, flat)
        if not flat:
            return []
        return sorted((z for z in out if z[1].tile.tiles == tiles and z[1].tile.ocb == ocb),
                      key=lambda z: z[0])[:1]
    return cands


for full in sys.argv[1:]:
    arg, *forces = full.split("/")
    parts = arg.split(",")
    n, h, w, c, o = map(int, parts[:5])
    scheme = parts[5] if len(parts) > 5 else "fp32"
    spec = ConvSpec(n, h, w, c, o, 1, 1)
    rng = np.random.default_rng(0)
    wt = (rng.standard_normal(spec.weight_shape) / np.sqrt(c)).astype("float32")
    b = rng.standard_normal(o).astype("float32")
    x = np.maximum(rng.standard_normal(spec.in_shape), 0).astype("float32")
    res = rng.standard_normal(spec.out_shape).astype("float32")
    qp = ActQParams.from_range(0.0, float(x.max()))
    kw = {} if scheme == "fp32" else {"act_qparams": qp}
    fns, outs, names = [], [], []
    variants = [("0", None), ("1", None)] + [
        ("1", (tuple(map(int, f.split(":")[0].split("x"))), int(f.split(":")[1])))
        for f in forces]
    for flag, force in variants:
        os.environ["AIQ_FLAT_POINTWISE"] = flag
        cm.conv_candidates = forced(*force) if force else orig
        k = conv2d_kernel(spec, scheme, wt, b, act="relu", residual=True, target=t, **kw)
        cm.conv_candidates = orig
        args = testing.kernel_args(k, testing.kernel_input(scheme, x, qp), res)
        f = testing.compile_prim_func(k.prim_func, t).mod["main"]
        f(*args)
        outs.append(args[-1].numpy().copy())
        fns.append((f, args))
        names.append(f"{k.info['schedule']} {'.'.join(k.plan.order)}/{len(k.plan.par)}")
    os.environ.pop("AIQ_FLAT_POINTWISE")
    ts = time_interleaved(fns, rounds=5, calls=5)
    ref = np.maximum(testing.reference(spec, "fp32", x, wt, b).y + res, 0)
    errs = [np.abs(y - ref).max() / np.abs(ref).max() for y in outs]
    print(f"{arg}: rows {names[0]} {ts[0]:.3f} ms, flat {names[1]} {ts[1]:.3f} ms, "
          f"x{ts[0] / ts[1]:.2f}; rel err to numpy {errs[0]:.1e} / {errs[1]:.1e}, "
          f"{2 * spec.macs() / ts[1] / 1e6:.0f} GFLOP/s flat", flush=True)
    for nm, tt, e in zip(names[2:], ts[2:], errs[2:]):
        print(f"    forced {nm} {tt:.3f} ms x{ts[0] / tt:.2f} err {e:.1e} "
              f"{2 * spec.macs() / tt / 1e6:.0f} GFLOP/s", flush=True)
