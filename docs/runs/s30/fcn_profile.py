"""Session 30: a torchvision segmentation model built at one precision, batch 1: its time
(``res.benchmark`` under the lock), its logits' relative error to torch and, with ``PROF=1``,
the 14 largest kernels by time inside whole inferences (summed over their calls; ``profile_insitu``'s
``insitu_times``). Output: fcn_profile.txt::

    cd /tmp && PROF=1 TVM_NUM_THREADS=2 python /work/main/docs/runs/s30/fcn_profile.py \
        fcn_resnet50 fp32
"""
import sys, os, time, json, numpy as np, torch
import aiq_tvm
from aiq_tvm.models import torchvision_zoo as zoo
name, plan = sys.argv[1], sys.argv[2]
model = zoo.segmentation_model(name, size=224)
calib = zoo.calibration_images(8, 224)
x, _ = zoo.validation_images(1, 224)
with torch.no_grad(): ref = model(torch.from_numpy(x)).numpy()
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
t0 = time.time()
res = aiq_tvm.build(mod, "llvm", params=params, plan=plan, calib_data=calib, batch_size=1)
b = time.time() - t0
y = res.run(x)
import fcntl
with open("/work/bench.lock", "w") as fh:
    fcntl.flock(fh, fcntl.LOCK_EX)
    ms = res.benchmark(batch_size=1, repeat=15)["median_ms"]
print(name, plan, "AIQ_KCHUNK=" + os.environ.get("AIQ_KCHUNK", ""), f"{ms:.2f} ms build {b:.0f}s relerr {np.abs(y-ref).max()/np.abs(ref).max():.1e}", flush=True)
if os.environ.get("PROF"):
    import tvm
    sys.path.insert(0, "/work/main/scripts")
    from profile_insitu import insitu_times
    vm = res.vm(1); xt = tvm.runtime.tensor(x)
    names, us, plain, instr, sizes = insitu_times(vm, xt, 5)
    agg = {}
    for n_, u in zip(names, us): agg[n_] = agg.get(n_, 0) + u
    for n_, u in sorted(agg.items(), key=lambda z: -z[1])[:14]: print(f"{u/1e3:8.2f} ms {n_}")
