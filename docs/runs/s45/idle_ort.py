import sys, time, numpy as np, torch, onnxruntime as ort
sys.path.insert(0, "/work/main/scripts")
from profile_layers import _model_and_calibration
model, calib = _model_and_calibration("tv/resnet50", 224, 32)
x = np.asarray(calib)[:1].copy()
torch.onnx.export(model, (torch.from_numpy(x),), "/tmp/r50.onnx", dynamo=False, input_names=["x"])
so = ort.SessionOptions(); so.intra_op_num_threads = 2
sess = ort.InferenceSession("/tmp/r50.onnx", so, providers=["CPUExecutionProvider"])
f = lambda: sess.run(None, {"x": x})
for _ in range(20): f()
cont = []
for _ in range(50):
    t0 = time.perf_counter(); f(); cont.append(time.perf_counter() - t0)
seq = np.zeros((10, 10))
for r in range(10):
    time.sleep(0.1)
    for i in range(10):
        t0 = time.perf_counter(); f(); seq[r, i] = time.perf_counter() - t0
print(f"ORT continuous {np.median(cont)*1e3:.2f}; per run after 100 ms idle:", " ".join(f"{v*1e3:.2f}" for v in np.median(seq, 0)))
