import os, sys, json, torch
sys.path.insert(0, "/work/main/scripts"); sys.path.insert(0, "/work/main/scripts/arm")
import aiq_tvm
from count_instructions import count_plan
from check_models import arm_target
from bench_models import load_model
from aiq_tvm import datasets
for name in ("resnet20", "mobilenet_v2"):
    model, xc = load_model(name, 32); x, _ = datasets.validation_set(1)
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(x))
    t = arm_target("neon")
    for plan in ("int8", "int4"):
        res = aiq_tvm.build(mod, t, params=params, plan=plan, calib_data=xc[:32], batch_size=1, speed_floor="fp32")
        prec = {}
        for r in res.report.rows: prec[r.precision] = prec.get(r.precision, 0) + 1
        c = count_plan(res, x, 2)
        print(json.dumps({"model": name, "plan": plan, "floor": "fp32", "precisions": prec, "instr": c["instructions"], "exact": c["bit_exact"]}), flush=True)
