"""Session 32: ONNX Runtime's per-node times (its profiler, 2 threads) for a torchvision
model, to set beside ``scripts/profile_insitu.py`` layer by layer. Conv nodes are printed
under our kernel names (``Mixed_5b_branch1x1_conv`` for ``/Mixed_5b/branch1x1/conv/Conv``)::

    TVM_NUM_THREADS=2 flock /work/bench.lock python docs/runs/s32/ort_nodes.py inception_v3 299 1 [shapes.json]
"""
import json, sys, collections, tempfile
import numpy as np, torch, onnxruntime as ort
from aiq_tvm.models import torchvision_zoo as zoo

name, size, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
model = zoo.torchvision_model(name, size=size)
x = zoo.calibration_images(batch, size)
d = tempfile.mkdtemp()
torch.onnx.export(model, (torch.from_numpy(x[:1]),), f"{d}/m.onnx", dynamo=False,
                  input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}})
so = ort.SessionOptions(); so.intra_op_num_threads = 2; so.enable_profiling = True
so.profile_file_prefix = f"{d}/prof"
s = ort.InferenceSession(f"{d}/m.onnx", so, providers=["CPUExecutionProvider"])
for _ in range(20):
    s.run(None, {"x": x})
prof = s.end_profiling()
ev = json.load(open(prof))
per = collections.defaultdict(list)
shapes = {}
for e in ev:
    if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
        per[(e["name"][:-12], e["args"].get("op_name", ""))].append(e["dur"])
        ins = [list(t.values())[0] for t in e["args"].get("input_type_shape", [])]
        key = e["name"][:-12].strip("/").replace("/", "_")
        shapes[key] = (e["args"].get("op_name", ""), ins[1] if len(ins) > 1 else None,
                       ins[0][2:] if ins and len(ins[0]) == 4 else [])
if len(sys.argv) > 4:
    json.dump(shapes, open(sys.argv[4], "w"))
tot = 0.0
for (nm, op), ds in per.items():
    med = float(np.median(ds[5:])); tot += med
    key = nm.strip("/").replace("/", "_")
    print(f"{key}\t{op}\t{med:.1f}")
print(f"TOTAL\t-\t{tot:.1f}")
