"""Kernel calls that write over their residual, per model and plan (batch 1, 224)."""
import re, sys, numpy as np, torch
sys.path.insert(0, "/work/main/scripts")
import aiq_tvm
from profile_layers import _model_and_calibration
for spec in sys.argv[1:]:
    name, plan = spec.split(":")
    model, calib = _model_and_calibration(name, 224 if "/" in name else 32, 16)
    calib = np.asarray(calib)
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
    bs = int(__import__("os").environ.get("BS", "1"))
    res = aiq_tvm.build(mod, params=params, plan=plan, calib_data=calib, micro_batch=None, calibration="percentile", batch_size=bs)
    n = calls = 0
    for line in res.run_executable(bs).as_text().splitlines():
        m = re.search(r"call\s+(\S+)\s+in: (.*) dst", line)
        if m and not m.group(1).startswith("vm."):
            calls += 1
            regs = [a.strip() for a in m.group(2).split(",")]
            n += len(regs) > 2 and regs[-1] == regs[-2]
    print(f"{name} {plan}: {n} of {calls} kernel calls write over their residual", flush=True)
