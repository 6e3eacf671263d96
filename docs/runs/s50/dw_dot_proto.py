"""Depthwise int8 kernels alone: the planner's int8 kernel against the dot kernel
(dw_dot.py beside it; session 50, not kept), same outputs checked bit for bit; fp32
beside. Medians of 7 interleaved rounds of CPU time. dw_dot_proto.py TARGET N H W C K[/S]..."""
import os
import sys

import numpy as np
import tvm
from tvm import te

from aiq_tvm import quant
from aiq_tvm.bench import Timer
from aiq_tvm.quant import ActQParams
from aiq_tvm.targets import resolve_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.testing import compile_prim_func

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dw_dot

from aiq_tvm.targets.x86.common import finalize, layer_output
from aiq_tvm.targets.x86.layer import (
    const_placeholders,
    layer_args,
    layer_constants,
    layer_prim_func,
)

target = resolve_target(sys.argv[1])[0]
threads = int(os.environ.get("TVM_NUM_THREADS", "1"))
n, h, w, c = map(int, sys.argv[2:6])
rng = np.random.default_rng(0)


def dot_kernel(spec, wt, qp, oq):
    args = layer_args("int8", wt, spec.weight_shape, None, act="relu6", act_qparams=qp,
                      out_qparams=oq, debug_acc=False, target=target, numerics_target=None,
                      depthwise=True)
    plan = dw_dot.dot_dw_plan(spec, threads)
    q, s_w = args.scheme.quantize_weight(args.weight, args.int8_qmax)
    names, consts = layer_constants(args, q, s_w, dw_dot.pack_weight_dot_dw(q, plan))
    tens = const_placeholders(names, consts)
    x = te.placeholder(spec.in_shape, "uint8", name="x")
    _, acc = dw_dot.dot_dw_stages(spec, plan, x, tens["weight"], qp.zp)
    y = te.compute(spec.out_shape, lambda b, i, j, oc: layer_output(
        acc[b, i, j, oc // 16, oc % 16], oc, tens, None, args, 0), name="out")
    func = layer_prim_func(x, tens, names, None, y)
    return finalize(dw_dot.schedule_dot_dw(func, plan)), consts, plan


for ks in sys.argv[6:]:
    k, _, st = ks.partition("/")
    k, st = int(k), int(st or 1)
    spec = ConvSpec(n, h, w, c, c, k, k, stride=st, padding=k // 2, groups=c)
    x = np.maximum(rng.standard_normal(spec.in_shape), 0).astype(np.float32) * 2
    wt = (rng.standard_normal(spec.weight_shape) / 3).astype(np.float32)
    qp = ActQParams.from_range(float(x.min()), float(x.max()))
    oq = ActQParams.from_range(0.0, 6.0)
    xin = quant.quantize_act(x, qp)
    res, outs = {}, {}
    kern = conv2d_kernel(spec, "int8", wt, None, act="relu6", act_qparams=qp, out_qparams=oq,
                         target=target)
    kf = conv2d_kernel(spec, "fp32", wt, None, act="relu6", target=target)
    func, consts, plan = dot_kernel(spec, wt, qp, oq)
    for name, pf, cs, xv in (("fp32", kf.prim_func, kf.consts, x),
                             ("int8", kern.prim_func, kern.consts, xin),
                             ("dot", func, consts, xin)):
        f = compile_prim_func(pf, target)
        a = [tvm.runtime.tensor(v) for v in (xv, *cs)]
        out_dtype = "float32" if name == "fp32" else "uint8"
        a.append(tvm.runtime.tensor(np.zeros(spec.out_shape, out_dtype)))
        f(*a)
        outs[name] = a[-1].numpy()
        res[name] = Timer(lambda f=f, a=a: f(*a), "cpu")
    same = np.array_equal(outs["int8"], outs["dot"])
    samples = {sc: [] for sc in res}
    for _ in range(7):
        for sc, t in res.items():
            samples[sc].append(t(40.0))
    us = {sc: float(np.median(v)) * 1e6 for sc, v in samples.items()}
    print(f"{plan.describe()} dw{ks} {c}@{h}x{w} b{n} same={same}: "
          + "  ".join(f"{sc} {v:.1f}" for sc, v in us.items())
          + f"  int8/dot {us['int8'] / us['dot']:.2f}x", flush=True)
