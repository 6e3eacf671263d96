"""Session 32: INT8 logits of a torchvision model (random init, BN statistics set, 16
validation images at 224) against torch FP32, uniform int8 and with the first conv (and the
classifier) at fp32: does keeping the input layer in float lift the smallest cosine to 0.99?
Output: int8_fp32_stem.txt::

    TVM_NUM_THREADS=2 python docs/runs/s32/int8_fp32_stem.py mobilenet_v2
"""
import sys, numpy as np, torch
import aiq_tvm
from aiq_tvm.models import torchvision_zoo as zoo
sys.path.insert(0, "/work/main/scripts")  # check_torchvision helpers
from check_torchvision import min_cosine, _torch_logits
name = sys.argv[1]; size = 224
model = zoo.torchvision_model(name, size=size)
calib = zoo.calibration_images(32, size); x, _ = zoo.validation_images(16, size)
ref = _torch_logits(model, x, 8)
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
res = aiq_tvm.build(mod, "llvm", params=params, plan="int8", calib_data=calib, batch_size=8, eval_batch_size=8)
names = list(res.plan.precisions) if hasattr(res.plan, "precisions") else None
print(type(res.plan), str(res.plan)[:300])
y = res.run(x, 8); print(name, "uniform int8 min cos %.4f" % min_cosine(y, ref), flush=True)
first = res.cost.searchable[0] if hasattr(res.cost, "searchable") else None
print("first layer", first)
from aiq_tvm.plan import Plan
for keep in ([first], [first, res.cost.searchable[-1]]):
    res2 = aiq_tvm.build(mod, "llvm", params=params, plan=Plan({k: "fp32" for k in keep}, default="int8"), calib_data=calib, batch_size=8, eval_batch_size=8)
    y2 = res2.run(x, 8); print(name, keep, "fp32, rest int8: min cos %.4f" % min_cosine(y2, ref), flush=True)
