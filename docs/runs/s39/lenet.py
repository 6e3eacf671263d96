"""LeNet-like Fashion-MNIST CNN (flatten + two linears) per precision, one thread, CPU clock."""
import json, sys
import numpy as np, torch, tvm
from torch import nn
import aiq_tvm
from aiq_tvm.bench import Timer
target = json.loads(sys.argv[1]); batch = int(sys.argv[2])
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Linear(64 * 8 * 8, 128), nn.ReLU(), nn.Linear(128, 10)).eval()
from aiq_tvm import datasets
xc, _ = datasets.calibration_set(64)
xc = xc[:, :1] if xc.shape[1] != 1 else xc
x = np.ascontiguousarray(xc[:batch])
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(x[:2]))
with torch.no_grad():
    ref = model(torch.from_numpy(x)).numpy()
res = {}
timers = {}
for plan in ("fp32", "int8", "int4"):
    b = aiq_tvm.build(mod, target, params=params, plan=plan, calib_data=xc, batch_size=batch)
    y = b.run(x, batch)
    f = b.vm(batch)["main"]; arg = tvm.runtime.tensor(x)
    timers[plan] = Timer(lambda f=f, arg=arg: f(arg), "cpu")
    res[plan + "_err"] = float(np.abs(y - ref).max() / np.abs(ref).max())
samples = {k: [] for k in timers}
for r in range(9):
    for k in timers:
        samples[k].append(timers[k](150))
for k, v in samples.items():
    res[k] = round(float(np.median(v)) * 1e3, 4)
res["int8_speedup"] = round(res["fp32"] / res["int8"], 3); res["int4_speedup"] = round(res["fp32"] / res["int4"], 3)
print(json.dumps({"who": aiq_tvm.__file__, "target": target.get("mcpu"), **res}))
