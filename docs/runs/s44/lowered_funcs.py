"""Session 44: hash the lowered module (main and every PrimFunc) of a torchvision model's
final build, to compare checkouts (imports from PYTHONPATH):

    cd /tmp && PYTHONPATH=<checkout> TVM_NUM_THREADS=1 python \
        /work/main/docs/runs/s44/lowered_funcs.py resnet50 224 int8 out.json
"""
import sys, json, hashlib, torch, tvm
from tvm import relax
import aiq_tvm
from aiq_tvm.models import torchvision_zoo as zoo
name, size, plan, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
if name.startswith("ours/"):  # aiq_tvm.models (32 x 32, Fashion-MNIST weights)
    from aiq_tvm import datasets, models
    model = models.get_model(name[5:], pretrained=True).eval()
    calib = datasets.calibration_set(8)[0]
else:
    model = zoo.torchvision_model(name, size=size)
    calib = zoo.calibration_images(8, size)
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
class Stop(Exception): pass
cap = []
orig = relax.build
def build(lowered, target, *a, **k):
    cap.append(lowered)
    if len(cap) == (2 if plan != "fp32" else 1): raise Stop
    return orig(lowered, target, *a, **k)
relax.build = build
try:
    aiq_tvm.build(mod, "llvm", params=params, plan=plan, calib_data=calib, batch_size=1)
except Stop:
    pass
low = cap[-1]
funcs = {gv.name_hint: hashlib.sha1(f.script().encode()).hexdigest()[:10] for gv, f in low.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}
main = low["main"].script()
json.dump({"funcs": funcs, "main": hashlib.sha1(main.encode()).hexdigest()[:10], "n_main_lines": main.count("\n")}, open(out, "w"))
print(name, plan, len(funcs), "funcs")
