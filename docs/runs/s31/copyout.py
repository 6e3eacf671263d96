"""Session 31: the fp32 Winograd register block's copy-out vectorized over the whole block
(before) against one channel vector at a time (register_block_copy_out now), same plans, same
outputs, hot calls, two threads. Arguments ``N,H,C,O:m,tiles,ocv,rows,kgroup``.

    TVM_NUM_THREADS=2 flock /work/bench.lock python docs/runs/s31/copyout.py \
        1,35,96,96:4,3,3,3,48 ...
"""
import sys, os, time
sys.path.insert(0, "/work/main/docs/runs/s27")
from dw_border import compiled, time_interleaved
import numpy as np, tvm
from aiq_tvm.targets import host_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.targets.x86 import winograd as wino
from aiq_tvm.targets.x86.isa import cpu_model
t = tvm.target.Target(host_target()); cpu = cpu_model(t)
orig_copy = wino.register_block_copy_out
def whole_block_copy(sch, acc, block_loop, lanes):  # before session 31
    copy = sch.cache_write(acc, 0, "global")
    sch.reverse_compute_at(copy, block_loop, preserve_unit_loops=True)
    c_loops = sch.get_loops(copy)[-2:]
    sch.vectorize(c_loops[-1])
    sch.unroll(c_loops[-2])
split_copy = orig_copy
orig_plan = wino.winograd_plan
for arg in sys.argv[1:]:
    layer, plan = arg.split(":")
    n, h, c, o = map(int, layer.split(","))
    m, tl, ocv, rows, kg = map(int, plan.split(","))
    spec = ConvSpec(n, h, h, c, o, 3, 3, padding=1)
    rng = np.random.default_rng(0)
    wt = (rng.standard_normal(spec.weight_shape) * 0.05).astype("float32")
    b = rng.standard_normal(o).astype("float32"); x = rng.standard_normal(spec.in_shape).astype("float32")
    wp = wino.WinoPlan(m, tl, ocv, cpu.lanes, rows, kg, 0.0)
    fns, outs = [], []
    for patch in (whole_block_copy, split_copy):
        wino.register_block_copy_out = patch
        wino.winograd_plan = lambda *a, **k: wp
        k = conv2d_kernel(spec, "fp32", wt, b, act="relu", target=t, winograd=True)
        wino.winograd_plan = orig_plan
        wino.register_block_copy_out = orig_copy
        f, args, out = compiled(k, x, t)
        fns.append((f, args)); outs.append(out)
    assert np.array_equal(outs[0], outs[1])
    a, bb = time_interleaved(fns, rounds=7, calls=10)
    print(f"{arg}: {k.info['schedule']} copy48 {a:.3f} ms split {bb:.3f} ms  x{a / bb:.2f}", flush=True)
