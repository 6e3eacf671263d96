"""Session 44: a small random-init ConvMixer (timm) built at each plan given, its smallest logit
cosine to torch's, then ONNX Runtime's static INT8 and torch FP32 on uint8-rounded input.

    TVM_NUM_THREADS=2 python docs/runs/s44/convmixer_small.py DIM DEPTH KERNEL [PLAN ...]
"""
import sys, numpy as np, torch, aiq_tvm
from timm.models.convmixer import ConvMixer
from aiq_tvm.models import torchvision_zoo as zoo
dim, depth, k = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
m = ConvMixer(dim=dim, depth=depth, kernel_size=k, patch_size=7, num_classes=100)
zoo.set_bn_statistics(m, zoo.calibration_images(32, 128, seed=1)); m.eval()
calib = zoo.calibration_images(16, 128); x, _ = zoo.validation_images(8, 128)
with torch.no_grad(): ref = m(torch.from_numpy(x)).numpy()
mod, params = aiq_tvm.from_torch(m, torch.from_numpy(calib[:2]))
def cos(a, b): return ((a*b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min()
for plan in sys.argv[4:]:
    res = aiq_tvm.build(mod, "llvm", params=params, plan=plan, calib_data=calib, batch_size=8)
    y = res.run(x, 8)
    print(plan, "min cos", round(float(cos(y, ref)), 4), "rel", float(np.abs(y-ref).max()/np.abs(ref).max()))
sys.path.insert(0, "/work/main/scripts")
from check_torchvision import _ort_int8_logits, _round_to_uint8
y = _ort_int8_logits(m, calib, x, 8)
print("ORT int8 min cos", round(float(cos(y, ref)), 4))
with torch.no_grad(): yu = m(torch.from_numpy(_round_to_uint8(x, calib))).numpy()
print("input rounded to uint8, torch fp32: min cos", round(float(cos(yu, ref)), 4))
