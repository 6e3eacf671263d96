"""Ad-hoc: ResNet-50 / MobileNetV2 FP32 whole inference with the planner's L2 set to X."""
import importlib, sys, time, json
import numpy as np
sys.path.insert(0, "/work/main/scripts")
l2 = int(sys.argv[1]); model_name = sys.argv[2]; bs = int(sys.argv[3]); prec = sys.argv[4] if len(sys.argv) > 4 else "fp32"
caps_mod = importlib.import_module("aiq_tvm.targets.capabilities")
real = caps_mod.host_cache_bytes
if l2 >= 0:
    caps_mod.host_cache_bytes = lambda level=None, caches=caps_mod.SYSFS_CACHES: (l2 if level == 2 else real(level, caches))
import torch, aiq_tvm
from bench_models import load_model
model, xc = load_model(model_name, 224)
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(xc[:1]))
res = aiq_tvm.build(mod, "llvm", params=params, plan=prec, calib_data=xc[:16], batch_size=bs)
x = np.ascontiguousarray(np.concatenate([xc] * 8)[:bs])
ts = [res.benchmark(bs, repeat=20, min_repeat_ms=200, x=x)["median_ms"] for _ in range(3)]
print(json.dumps({"l2": l2, "model": model_name, "batch": bs, "prec": prec, "median_ms": float(np.median(ts)), "runs": ts}))
