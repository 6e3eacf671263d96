"""The same torchvision model imported through torch and through ONNX (both exporters): time each
build in alternating rounds in one process (medians), to see whether an import path loses speed.
    TVM_NUM_THREADS=2 python docs/runs/s43/onnx_speed.py MODEL [SIZE] [BATCH] [PLAN]

(session 43; code of the commit named in docs/runs/s43/onnx_speed.md)"""
import sys, warnings
import numpy as np, torch, torchvision
import aiq_tvm
name = sys.argv[1]
size = int(sys.argv[2]) if len(sys.argv) > 2 else 224
batch = int(sys.argv[3]) if len(sys.argv) > 3 else 1
plan = sys.argv[4] if len(sys.argv) > 4 else "fp32"
torch.manual_seed(0)
m = getattr(torchvision.models, name)(weights=None).eval()
x = np.random.default_rng(0).standard_normal((max(batch, 2), 3, size, size)).astype("float32")
builds = {}
for how in ("torch", "onnx-script", "onnx-dynamo"):
    if how == "torch":
        mod, params = aiq_tvm.from_torch(m, x)
    else:
        path = f"/tmp/speed_{name}_{how}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if how == "onnx-dynamo":
                torch.onnx.export(m, (torch.from_numpy(x),), path, dynamo=True, input_names=["x"],
                                  dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, verbose=False)
            else:
                torch.onnx.export(m, (torch.from_numpy(x),), path, dynamo=False, input_names=["x"],
                                  dynamic_axes={"x": {0: "batch"}})
        mod, params = aiq_tvm.from_onnx(path)
    res = aiq_tvm.build(mod, "llvm", params=params, plan=plan, batch_size=batch,
                        calib_data=x if plan != "fp32" else None)
    builds[how] = res
times = {k: [] for k in builds}
for _ in range(7):
    for k, r in builds.items():
        times[k].append(r.benchmark(batch, repeat=10, min_repeat_ms=50)["median_ms"])
base = np.median(times["torch"])
for k, v in times.items():
    print(f"{name} {plan} b{batch} {k:12s} {np.median(v):8.3f} ms  x{np.median(v)/base:.3f} of torch's")
