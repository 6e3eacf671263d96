"""Import only: torchvision classification models through ONNX (TorchScript and torch.export-based
exporters), with a dynamic batch; prints each import's parameter count and any fallback warning.

    HOW=script,dynamo SIZE=112 TVM_NUM_THREADS=2 python docs/runs/s43/onnx_import_tv.py MODEL...
"""
import sys, os, warnings, traceback
import numpy as np, torch, torchvision
import aiq_tvm
size = int(os.environ.get("SIZE", "112"))
hows = os.environ.get("HOW", "script,dynamo").split(",")
for name in sys.argv[1:]:
    torch.manual_seed(0)
    kw = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
    m = getattr(torchvision.models, name)(weights=None, **kw).eval()
    s = 299 if name == "inception_v3" else size
    x = torch.randn(2, 3, s, s)
    for how in hows:
        path = f"/tmp/tv_{name}_{how}.onnx"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if how == "dynamo":
                    torch.onnx.export(m, (x,), path, dynamo=True, input_names=["x"],
                                      dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, verbose=False)
                else:
                    torch.onnx.export(m, (x,), path, dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "n"}})
        except Exception as e:
            print(name, how, "EXPORT-FAIL", type(e).__name__, flush=True); continue
        try:
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                mod, params = aiq_tvm.from_onnx(path)
            ws = [str(a.message)[:120] for a in w if "batch" in str(a.message)]
            print(name, how, "ok", len(params), ws, flush=True)
        except Exception as e:
            print(name, how, "IMPORT-FAIL", type(e).__name__, (str(e).strip().splitlines() or [""])[-1][:200], flush=True)
        finally:
            if os.path.exists(path): os.remove(path)
