"""torchvision models exported by the TorchScript exporter at older opsets (as ONNX model-zoo
files are), imported and checked against torch at FP32 and INT8 (relative error of the logits).

    OPSETS=9,11,13 SIZE=112 TVM_NUM_THREADS=2 python docs/runs/s43/onnx_opsets.py MODEL...
"""
import sys, os, warnings
import numpy as np, torch, torchvision
import aiq_tvm
size = int(os.environ.get("SIZE", "112"))
opsets = [int(o) for o in os.environ.get("OPSETS", "9,11,13").split(",")]
for name in sys.argv[1:]:
    torch.manual_seed(0)
    m = getattr(torchvision.models, name)(weights=None).eval()
    x = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype("float32")
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).numpy()
    for opset in opsets:
        path = f"/tmp/ops_{name}_{opset}.onnx"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(m, (torch.from_numpy(x),), path, dynamo=False, opset_version=opset,
                                  input_names=["x"], dynamic_axes={"x": {0: "batch"}})
        except Exception as e:
            print(name, opset, "EXPORT-FAIL", type(e).__name__, flush=True); continue
        try:
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                mod, params = aiq_tvm.from_onnx(path)
            ws = [str(a.message)[:100] for a in w if "batch" in str(a.message)]
            errs = []
            for plan in ("fp32", "int8"):
                res = aiq_tvm.build(mod, "llvm", params=params, plan=plan, batch_size=2,
                                    calib_data=x if plan == "int8" else None)
                y = res.run(x)
                errs.append(float(np.abs(y - ref).max() / np.abs(ref).max()))
            print(name, opset, "ok" if errs[0] < 1e-4 else "FP32-WRONG", f"fp32 {errs[0]:.1e} int8 {errs[1]:.3f}", ws, flush=True)
        except Exception as e:
            print(name, opset, "FAIL", type(e).__name__, (str(e).strip().splitlines() or [""])[-1][:200], flush=True)
