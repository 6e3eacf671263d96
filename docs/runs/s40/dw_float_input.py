"""Integer depthwise kernels alone: fp32, int8 converting inside its register blocks
(AIQ_DW_FLOAT_INPUT=0) and int8 reading a float copy of its input (=1, forced whatever the
rule); same outputs checked, plans printed (in place -> copy),
one thread, CPU time, medians of 7 interleaved rounds. dw_float_input.py TARGET N H W C K[/S]..."""
import os, sys
os.environ.setdefault("TVM_NUM_THREADS", "1")
import numpy as np, tvm
from aiq_tvm import quant
from aiq_tvm.bench import Timer
from aiq_tvm.quant import ActQParams
from aiq_tvm.targets import resolve_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
target = resolve_target(sys.argv[1])[0]
n, h, w, c = map(int, sys.argv[2:6])
rng = np.random.default_rng(0)
for ks in sys.argv[6:]:
    k, _, st = ks.partition("/"); k, st = int(k), int(st or 1)
    spec = ConvSpec(n, h, w, c, c, k, k, stride=st, padding=k // 2, groups=c)
    x = rng.standard_normal(spec.in_shape).astype(np.float32) + 0.3
    wt = (rng.standard_normal(spec.weight_shape) / 3).astype(np.float32)
    qp = ActQParams.from_range(float(x.min()), float(x.max()))
    res, outs = {}, {}
    for name, scheme, flag in (("fp32", "fp32", ""), ("int8", "int8", "0"), ("int8fin", "int8", "1")):
        os.environ["AIQ_DW_FLOAT_INPUT"] = flag
        xin = quant.quantize_act(x, qp) if scheme != "fp32" else x
        kern = conv2d_kernel(spec, scheme, wt, None, act_qparams=qp, target=target)
        ex = tvm.compile(tvm.IRModule({"main": kern.prim_func}), target)
        a = [tvm.runtime.tensor(v) for v in (xin, *kern.consts)]
        a.append(tvm.runtime.tensor(np.zeros(kern.out_shape, kern.out_dtype)))
        f = ex.mod["main"]; f(*a); outs[name] = a[-1].numpy()
        if name == "int8": pl = kern.plan
        if name == "int8fin": pf = kern.plan; assert kern.info["float_input"]

        res[name] = Timer(lambda f=f, a=a: f(*a), "cpu")
    assert np.array_equal(outs["int8"], outs["int8fin"])
    samples = {sc: [] for sc in res}
    for _ in range(7):
        for sc, t in res.items():
            samples[sc].append(t(40.0))
    us = {sc: float(np.median(v)) * 1e6 for sc, v in samples.items()}
    print(f"{pl.tiles}/{pl.ocb} u{pl.unrolled_taps} -> {pf.tiles}/{pf.ocb} dw{ks} {c}@{h}x{w} b{n}: " + "  ".join(f"{sc} {v:.1f}" for sc, v in us.items()), flush=True)
