# Ad-hoc experiment (output: exp_order_1t.txt). Run from the repository root.
"""Experiment: is the o-outer loop order itself (not the decode) what costs at b1?"""
import os
import sys
from dataclasses import replace

sys.path.insert(0, "scripts")
import numpy as np
import tvm
from bench_int4_decode import time_variants

from aiq_tvm import quant
from aiq_tvm.quant import ActQParams
from aiq_tvm.targets import resolve_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.targets.x86 import conv2d as C

target = resolve_target("llvm")[0]
orig = C._plan_conv
MODE = {"v": None}

def forced(spec, fmts, cpu):
    fmt, plan = orig(spec, fmts, cpu)
    if MODE["v"] == "oouter":
        tile = replace(plan.tile, order=("o", "s0", "s1", "s2"), par=("o",), min_tasks=0,
                       decode_threads=0, decode_block=False)
        plan = replace(plan, tile=tile)
    return fmt, plan

C._plan_conv = forced
VARIANTS = [("int8", "int8", None, ""), ("int8 o-outer", "int8", "oouter", ""),
            ("int4 block", "int4", None, ""), ("int4 no-block", "int4", None, "0")]
rng = np.random.default_rng(0)
clock = sys.argv[1]
LAYERS = [(7, 512, 512, 3, 1, 1, 1), (14, 1024, 2048, 1, 2, 0, 1), (14, 256, 512, 3, 2, 1, 1),
          (7, 512, 512, 3, 1, 1, 8)]
for (h, c, o, k, s, p, n) in LAYERS:
    spec = ConvSpec(n, h, h, c, o, k, k, stride=s, padding=p)
    x = rng.standard_normal(spec.in_shape).astype(np.float32) + 0.3
    w = (rng.standard_normal(spec.weight_shape) / np.sqrt(c * k * k)).astype(np.float32)
    qp = ActQParams.from_range(float(x.min()), float(x.max()))
    xq = quant.quantize_act(x, qp)
    ks = {}
    for name, scheme, mode, block in VARIANTS:
        MODE["v"] = mode
        os.environ["AIQ_INT4_BLOCK_DECODE"] = block
        kk = conv2d_kernel(spec, scheme, w, None, act_qparams=qp, target=target)
        ex = tvm.compile(tvm.IRModule({"main": kk.prim_func}), target)
        args = [tvm.runtime.tensor(a) for a in (xq, *kk.consts)]
        args.append(tvm.runtime.tensor(np.zeros(kk.out_shape, kk.out_dtype)))
        f = ex.mod["main"]
        ks[name] = (kk, lambda f=f, args=args: f(*args))
        print(name, kk.info["schedule"], kk.info.get("decode_at"))
    ms = time_variants(ks, 9, 60, clock)
    print(spec, {k: round(v, 4) for k, v in ms.items()}, flush=True)
