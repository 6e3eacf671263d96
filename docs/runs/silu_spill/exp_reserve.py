"""Does reserving vector registers for a fused SiLU / hardswish epilogue pay? (scratch
experiment of docs/performance_224.md, section "SiLU epilogue register spills")

Builds one conv layer with each ``--variants`` entry ``ACT:EXTRA[:DWEXTRA]``: the activation,
EXTRA more registers taken from every ISA level's accumulator budget (``KernelIsa.acc_reserve``)
and, for depthwise layers, DWEXTRA more counted for the epilogue in ``_dw_window_fits``. Prints
the planner's pick, the number of vector instructions with a stack operand in the compiled
function (spills and reloads; the same count with ReLU is the baseline), the error against the
numpy reference (``--requant``: uint8 codes, off by at most one) and, with ``--rounds``, the
median CPU time per call of interleaved rounds::

    TVM_NUM_THREADS=1 flock /work/bench.lock python docs/runs/silu_spill/exp_reserve.py \
        --layer 56,24,144,1 --requant --variants relu:0 silu:0 silu:14 --rounds 15

``--layer H,C,O,K[,dw[,STRIDE]]``.
"""

import argparse
import json
import time

import numpy as np

import aiq_tvm.targets.x86.conv2d as conv_mod
from aiq_tvm import testing
from aiq_tvm.quant import ActQParams
from aiq_tvm.targets import resolve_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.targets.x86.isa import KERNEL_ISAS


def parse_layer(text: str) -> ConvSpec:
    h, c, o, k, *rest = text.split(",")
    h, c, o, k = map(int, (h, c, o, k))
    dw = rest[:1] == ["dw"]
    stride = int(rest[1]) if len(rest) > 1 else 1
    return ConvSpec(1, h, h, c, o, k, k, stride=stride, padding=k // 2, groups=c if dw else 1)


def build(spec, variant: str, data, oq, target):
    """The kernel of ``variant`` (ACT:EXTRA[:DWEXTRA]) with the reserves raised meanwhile."""
    x, w, b, _, qp = data
    act, extra, *dwx = variant.split(":")
    budgets = {id(i.acc_reserve): i.acc_reserve for i in KERNEL_ISAS.values()}.values()
    saved = [dict(d) for d in budgets]
    dw_saved = conv_mod.DW_EPILOGUE_REGS
    for d in budgets:
        for m in d:
            d[m] += int(extra)
    conv_mod.DW_EPILOGUE_REGS += int(dwx[0]) if dwx else 0
    try:
        return act, conv2d_kernel(spec, "int8", w, b, act=act, act_qparams=qp, out_qparams=oq,
                                  target=target)
    finally:
        for d, s in zip(budgets, saved, strict=True):
            d.update(s)
        conv_mod.DW_EPILOGUE_REGS = dw_saved


def stack_vector_ops(ex) -> int:
    mod = ex.mod.imports[0] if ex.mod.imports else ex.mod
    return sum(1 for ln in mod.inspect_source("asm").splitlines() if "(%rsp)" in ln and "mm" in ln)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layer", default="56,24,144,1")
    ap.add_argument("--variants", nargs="+", default=["relu:0", "silu:0", "silu:14"])
    ap.add_argument("--requant", action="store_true")
    ap.add_argument("--target", default="llvm")
    ap.add_argument("--rounds", type=int, default=0)
    ap.add_argument("--calls", type=int, default=30)
    a = ap.parse_args()
    target = resolve_target(json.loads(a.target) if a.target.startswith("{") else a.target)[0]
    spec = parse_layer(a.layer)
    data = testing.layer_data(spec, np.random.default_rng(0))
    x, w, b, _, qp = data
    oq = ActQParams.from_range(-0.5, 6.0) if a.requant else None
    runs = {}
    for v in a.variants:
        act, kern = build(spec, v, data, oq, target)
        ex = testing.compile_prim_func(kern.prim_func, target)
        xin = testing.kernel_input("int8", x, qp)
        args = testing.kernel_args(kern, xin)
        f = ex.mod["main"]
        f(*args)
        rr = testing.reference(spec, "int8", xin, w, b, act=act, act_qparams=qp, out_qparams=oq,
                               target=target)
        y = args[-1].numpy()
        err = (float(np.abs(y.astype(int) - rr.q.astype(int)).max()) if a.requant
               else testing.relative_error(y, rr.y))
        print(f"{v:12s} {kern.info['schedule']:34s} stack vector ops {stack_vector_ops(ex):3d}  "
              f"error {err:.1e}", flush=True)
        runs[v] = (f, args)
    samples = {v: [] for v in runs}
    for _ in range(a.rounds):
        for v, (f, args) in runs.items():
            t0 = time.process_time()
            for _ in range(a.calls):
                f(*args)
            samples[v].append((time.process_time() - t0) / a.calls)
    for v, s in samples.items():
        if s:
            print(f"  {v:12s} {np.median(s) * 1e6:8.1f} us")


if __name__ == "__main__":
    main()
