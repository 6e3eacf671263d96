import os, sys, numpy as np, torch, collections
sys.path.insert(0, "/work/main/scripts")
import aiq_tvm, tvm
import aiq_tvm.passes.stack_small_buffers as ssb
from profile_layers import _model_and_calibration
name, plan, bs, target = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
log = collections.Counter()
orig = ssb._StackMutator._alloc
def _alloc(self, stmt):
    out = orig(self, stmt)
    if out is not stmt:
        log[(stmt.buffer.name, str(stmt.buffer.dtype), ssb.constant_bytes(stmt.buffer))] += 1
    return out
ssb._StackMutator._alloc = _alloc
model, calib = _model_and_calibration(name, 224 if name.startswith("tv/") else 32, 32)
calib = np.asarray(calib)
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
res = aiq_tvm.build(mod, target, params=params, plan=plan, calib_data=calib, micro_batch=None, batch_size=bs)
for k, v in sorted(log.items(), key=lambda t: -t[1]): print(v, k)
