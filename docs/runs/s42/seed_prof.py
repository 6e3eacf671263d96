"""Per-kernel in-situ times of one random network's builds: seed target batch variant..."""
import os, sys, json
import numpy as np
sys.path.insert(0, "/work/main/tests"); sys.path.insert(0, "/work/main/scripts")
import torch, tvm, aiq_tvm
from random_cnns import random_cnn
from profile_insitu import insitu_times
seed, target, batch = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
case = random_cnn(seed, max_blocks=int(os.environ.get("MAX_BLOCKS", "4")),
                  profile=os.environ.get("PROFILE", "wide"))
_, c, h, w = case.x.shape
x = np.random.default_rng([seed, 2]).standard_normal((batch, c, h, w)).astype(np.float32)
mod, params = aiq_tvm.from_torch(case.model, x[:2])
print(case.describe())
for v in sys.argv[4:]:
    plan, _, floor = v.partition(":")
    b = aiq_tvm.build(mod, target, params=params, plan=plan, batch_size=batch,
                      calib_data=None if plan == "fp32" else x, speed_floor=floor or None)
    for m in b.report.floor:
        print("  floor", m)
    vm = b.vm(batch)
    names, us, plain, inst, sizes = insitu_times(vm, tvm.runtime.tensor(x), 20)
    print(f"== {v}: plain {plain:.3f} ms")
    for n, u in zip(names, us):
        print(f"   {u:9.1f}  {n}")
