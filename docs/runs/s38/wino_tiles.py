"""Session 38: each 3x3 layer's direct, F(2, 3) and F(4, 3) kernels, fp32 and int8, timed
against the cost model's cycles for the same plans (the model's pick marked).

    TVM_NUM_THREADS=1 python docs/runs/s38/wino_tiles.py TARGET_JSON BATCH HxCxK...

``WINO_CLOCK=wall`` times on the wall clock (for more than one thread).
"""
import json
import os
import sys

import numpy as np
import tvm

sys.path.insert(0, "scripts")
from bench_winograd_int8 import _best_ms, _timer  # noqa: E402

from aiq_tvm import quant, testing  # noqa: E402
from aiq_tvm.schemes import get_precision  # noqa: E402
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel, cpu_model  # noqa: E402
from aiq_tvm.targets.x86 import winograd as wino  # noqa: E402
from aiq_tvm.targets.x86 import winograd_int8 as wino8  # noqa: E402
from aiq_tvm.targets.x86.conv2d import conv_choice_for  # noqa: E402


def main():
    target = json.loads(sys.argv[1])
    tgt = tvm.target.Target(target)
    batch = int(sys.argv[2])
    clock = os.environ.get("WINO_CLOCK", "cpu")
    print(f"target {sys.argv[1]}, batch {batch}, {os.environ.get('TVM_NUM_THREADS')} thread(s), "
          f"{clock} clock, best of 5 rounds")
    print("| layer | prec | kernel | model kcycles | ms | model picks |")
    print("|---|---|---|---|---|---|")
    for shape in sys.argv[3:]:
        hw, c, k = (int(v) for v in shape.split("x"))
        spec = ConvSpec(batch, hw, hw, c, k, 3, 3, padding=1)
        rng = np.random.default_rng(0)
        x, w, b, res, qp = testing.layer_data(spec, rng, residual=True, offset=0.5)
        rq = quant.ActQParams.from_range(float(res.min()), float(res.max()))
        xq, resq = quant.quantize_act(x, qp), quant.quantize_act(res, rq)
        for prec in ("fp32", "int8"):
            kw = dict(act="relu", residual=True, target=target)
            if prec == "int8":
                kw.update(act_qparams=qp, residual_qparams=rq, out_qparams=qp)
            inputs = (xq, resq) if prec == "int8" else (x, res)
            cpu = cpu_model(tgt).for_scheme(get_precision(prec))
            ar = wino8.arith(cpu) if prec == "int8" else None
            choice = conv_choice_for(spec, prec, tgt, requant=prec == "int8")
            picked = "direct" if choice.wplan is None else f"F{choice.wplan.m}"
            kernels, model = {}, {}
            for m in (False, 2, 4):
                name = "direct" if m is False else f"F{m}"
                kernels[name] = conv2d_kernel(spec, prec, w, b, winograd=m, **kw)
                model[name] = (choice.direct_cycles if m is False
                               else wino.winograd_plan(spec, cpu, (m,), ar).cost)
            times = _best_ms({n: _timer(kn, *inputs, target, clock) for n, kn in kernels.items()})
            for n in kernels:
                mark = " <" if n == picked else ""
                print(f"| {shape} | {prec} | {n} | {model[n] / 1e3:.1f} | {times[n]:.4f} |{mark} |",
                      flush=True)


if __name__ == "__main__":
    main()
