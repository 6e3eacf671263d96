import hashlib, json, sys
import numpy as np, torch, tvm, aiq_tvm
from aiq_tvm import pipeline as P, datasets, models
from aiq_tvm.compiler import specialize_batch
from aiq_tvm.models import torchvision_zoo as zoo
tgt = tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512"})
out = {}
for name in ["resnet20", "mobilenet_v2", "tv/resnet18", "tv/mobilenet_v2"]:
    if name.startswith("tv/"):
        m = zoo.torchvision_model(name[3:], size=224); xc = zoo.calibration_images(4, 224)
    else:
        m = models.get_model(name, pretrained=True); xc, _ = datasets.calibration_set(8)
    mod, params = aiq_tvm.from_torch(m, torch.from_numpy(xc[:2]))
    for plan in ("fp32", "int8"):
        cal = None
        if plan != "fp32":
            cal = aiq_tvm.build(mod, tgt, params=params, plan="int8", calib_data=xc, calibration="percentile", weight_correction="none", batch_size=1).calibration
        with tgt:
            low = tvm.transform.Sequential(P.quantize_passes(tgt, plan, cal, params))(specialize_batch(mod, 1))
        out[f"{name} {plan}"] = hashlib.sha1(low.script(show_meta=True).encode()).hexdigest()[:12]
        print(name, plan, out[f"{name} {plan}"], flush=True)
json.dump(out, open(sys.argv[1], "w"))
