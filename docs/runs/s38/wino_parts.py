"""Session 38: the cost model's Winograd plans (F(2, 3), F(4, 3)) and picks for ResNet-20's
3x3 layers, fp32 and int8: python docs/runs/s38/wino_parts.py TARGET_JSON BATCH."""
import sys

import tvm

from aiq_tvm.schemes import get_precision
from aiq_tvm.targets.x86 import winograd as wino
from aiq_tvm.targets.x86 import winograd_int8 as wino8
from aiq_tvm.targets.x86.common import ConvSpec
from aiq_tvm.targets.x86.conv2d import conv_choice_for
from aiq_tvm.targets.x86.isa import cpu_model

tgt = tvm.target.Target(sys.argv[1])
batch = int(sys.argv[2])
for hw, c in [(32, 16), (16, 32), (8, 64)]:
    spec = ConvSpec(batch, hw, hw, c, c, 3, 3, (1, 1), (1, 1, 1, 1))
    for sch in ("fp32", "int8"):
        prec = get_precision(sch)
        cpu = cpu_model(tgt).for_scheme(prec)
        ar = wino8.arith(cpu) if sch == "int8" else None
        for m in (2, 4):
            p = wino.winograd_plan(spec, cpu, (m,), ar)
            print(f"{hw}x{c} {sch} F{m}: cost {p.cost/1e3:.1f}k  {p.describe()}")
        ch = conv_choice_for(spec, sch, tgt)
        pick = "direct" if ch.wplan is None else f"F{ch.wplan.m}"
        print(f"   picked: {pick} direct {ch.direct_cycles / 1e3:.1f}k")
