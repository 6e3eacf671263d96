"""Per-kernel times (isolated, aiq_tvm.profiling.profile) of one torchvision model's FP32 build,
imported through torch and through ONNX, grouped by kernel kind: where an import path loses.

    TVM_NUM_THREADS=2 python docs/runs/s43/import_paths_profile.py MODEL SIZE torch,onnx-script[,onnx-dynamo]
"""
import sys, warnings, collections
import numpy as np, torch, torchvision
import aiq_tvm
from aiq_tvm.profiling import profile
name = sys.argv[1]; size = int(sys.argv[2]); hows = sys.argv[3].split(",")
torch.manual_seed(0)
m = getattr(torchvision.models, name)(weights=None).eval()
x = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype("float32")
for how in hows:
    if how == "torch":
        mod, params = aiq_tvm.from_torch(m, x)
    else:
        path = f"/tmp/p_{how}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(m, (torch.from_numpy(x),), path, dynamo=(how=="onnx-dynamo"), input_names=["x"],
                **({"dynamic_shapes": {"x": {0: torch.export.Dim("batch")}}} if how=="onnx-dynamo" else {"dynamic_axes": {"x": {0: "batch"}}}))
        mod, params = aiq_tvm.from_onnx(path)
    res = aiq_tvm.build(mod, "llvm", params=params, plan="fp32", batch_size=1)
    rows = profile(res, 1, repeat=9)
    agg = collections.defaultdict(float); cnt = collections.Counter()
    import re
    for n, us in rows:
        k = re.sub(r"\d+", "#", n) if "fp32" not in n else "conv/dense layers"
        agg[k] += us; cnt[k] += 1
    print(f"== {how}: total {sum(u for _, u in rows):.0f} us, {len(rows)} calls")
    for k, v in sorted(agg.items(), key=lambda kv: -kv[1])[:12]:
        print(f"   {v:8.1f} us  {cnt[k]:3d}x  {k[:110]}")
