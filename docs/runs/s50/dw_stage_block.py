"""Integer depthwise kernels alone: int8 converting each tap's input vector inside its register
blocks (AIQ_DW_FLOAT_INPUT=0), against int8 reading float input converted per register block
(the float copy stage computed at the loop STAGE_DEPTH loops above the first tap loop; =1 plan).
One thread, CPU time, medians of 7 interleaved rounds, outputs checked equal.
dw_stage_block.py TARGET N H W C K[/S]..."""
import os
import sys

os.environ.setdefault("TVM_NUM_THREADS", "1")
import numpy as np
import tvm

from aiq_tvm import quant
from aiq_tvm.bench import Timer
from aiq_tvm.pipeline import TIR_PIPELINE
from aiq_tvm.quant import ActQParams
from aiq_tvm.targets import resolve_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel, schedules

DEPTH = int(os.environ.get("STAGE_DEPTH", "1"))
_root_stage = schedules._float_input_stage


def _block_stage(sch, xf, lanes):
    acc = sch.get_sblock("acc")
    loops = sch.get_loops(acc)
    names = [str(sch.get(lp).loop_var.name) for lp in loops]
    first_tap = next(i for i, nm in enumerate(names) if nm.startswith("kh"))
    sch.compute_at(xf, loops[first_tap - DEPTH], preserve_unit_loops=True)
    *_, c = sch.get_loops(xf)
    ext = int(sch.get(c).extent)
    if ext % lanes == 0:
        _, vec = sch.split(c, [None, lanes])
        sch.vectorize(vec)


target = resolve_target(sys.argv[1])[0]
n, h, w, c = map(int, sys.argv[2:6])
rng = np.random.default_rng(0)
for ks in sys.argv[6:]:
    k, _, st = ks.partition("/")
    k, st = int(k), int(st or 1)
    spec = ConvSpec(n, h, w, c, c, k, k, stride=st, padding=k // 2, groups=c)
    x = rng.standard_normal(spec.in_shape).astype(np.float32) + 0.3
    wt = (rng.standard_normal(spec.weight_shape) / 3).astype(np.float32)
    qp = ActQParams.from_range(float(x.min()), float(x.max()))
    xin = quant.quantize_act(x, qp)
    res, outs, plans = {}, {}, {}
    for name, flag, stage in (("fp32", "", None), ("int8", "0", _root_stage),
                              ("int8blk", "1", _block_stage)):
        os.environ["AIQ_DW_FLOAT_INPUT"] = flag
        schedules._float_input_stage = stage or _root_stage
        kern = conv2d_kernel(spec, "fp32" if name == "fp32" else "int8", wt, None,
                             act_qparams=qp, target=target)
        ex = tvm.compile(tvm.IRModule({"main": kern.prim_func}), target, tir_pipeline=TIR_PIPELINE)
        a = [tvm.runtime.tensor(v) for v in ((x if name == "fp32" else xin), *kern.consts)]
        a.append(tvm.runtime.tensor(np.zeros(kern.out_shape, kern.out_dtype)))
        f = ex.mod["main"]
        f(*a)
        outs[name], plans[name] = a[-1].numpy(), kern.plan
        res[name] = Timer(lambda f=f, a=a: f(*a), "cpu")
    schedules._float_input_stage = _root_stage
    assert np.array_equal(outs["int8"], outs["int8blk"])
    samples = {sc: [] for sc in res}
    for _ in range(7):
        for sc, t in res.items():
            samples[sc].append(t(40.0))
    us = {sc: float(np.median(v)) * 1e6 for sc, v in samples.items()}
    pl, pb = plans["int8"], plans["int8blk"]
    print(f"{pl.tiles}/{pl.ocb} -> {pb.tiles}/{pb.ocb} dw{ks} {c}@{h}x{w} b{n}: "
          + "  ".join(f"{sc} {v:.1f}" for sc, v in us.items()), flush=True)
