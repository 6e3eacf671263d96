"""int8 depthwise kernels with and without tir.LoopPartition(partition_const_loop) at build."""
import importlib.util
import os
import sys

os.environ.setdefault("TVM_NUM_THREADS", "1")
import numpy as np
import tvm

from aiq_tvm import quant
from aiq_tvm.bench import Timer
from aiq_tvm.quant import ActQParams
from aiq_tvm.targets import resolve_target
from aiq_tvm.targets.x86 import ConvSpec

spec_ = importlib.util.spec_from_file_location("bdt", "/work/main/scripts/bench_dw_tiles.py")
m = importlib.util.module_from_spec(spec_); spec_.loader.exec_module(m)
target = resolve_target(sys.argv[1])[0]
n = int(sys.argv[2]); tiles = sys.argv[3:]
rng = np.random.default_rng(0)
for h, c, s in [(16, 32, 1), (8, 144, 1), (4, 192, 1), (16, 96, 2)]:
    spec = ConvSpec(n, h, h, c, c, 3, 3, stride=s, padding=1, groups=c)
    x = rng.standard_normal(spec.in_shape).astype(np.float32) + 0.3
    w = (rng.standard_normal(spec.weight_shape) / 3).astype(np.float32)
    qp = ActQParams.from_range(float(x.min()), float(x.max()))
    xin = quant.quantize_act(x, qp)
    plans, pick = m.tile_plans(spec, "int8", w, qp, target)
    res = {}
    ref = None
    for tile in [m.tile_name(pick[1])] + tiles:
        sel = [p for p in plans if m.tile_name(p[2]) == tile]
        if not sel: continue
        k = m.build_forced(spec, "int8", w, qp, target, sel[0][1], sel[0][2])
        for lp in (False, True):
            with tvm.transform.PassContext(opt_level=3, config={"s_tir.LoopPartition": {"partition_const_loop": lp}}):
                ex = tvm.compile(tvm.IRModule({"main": k.prim_func}), target)
            a = [tvm.runtime.tensor(v) for v in (xin, *k.consts)]
            a.append(tvm.runtime.tensor(np.zeros(k.out_shape, k.out_dtype)))
            f = ex.mod["main"]; f(*a)
            y = a[-1].numpy()
            if ref is None: ref = y
            assert np.array_equal(y, ref)
            res[f"{tile}{'+lp' if lp else ''}"] = Timer(lambda f=f, a=a: f(*a), "cpu")
    samp = {k_: [] for k_ in res}
    for _ in range(7):
        for k_, t in res.items(): samp[k_].append(t(30.0))
    print(f"dw{'/2' if s==2 else ''} {c}@{h} b{n}: " + "  ".join(f"{k_}={np.median(v)*1e6:.1f}" for k_, v in samp.items()), flush=True)
