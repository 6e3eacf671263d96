"""Session 49: MobileNetV2 at batch 8 with its depthwise and projection layers FP32 and the
rest int8 (uint8 shortcuts and requantizing epilogues around the fused kernels), fused
against not: the outputs must be the same bits.

    TVM_NUM_THREADS=2 python docs/runs/s49/mixed_plan_fused.py
"""
import sys

import numpy as np
import torch
import tvm

sys.path.insert(0, "/work/main/scripts")
from profile_layers import _model_and_calibration  # noqa: E402

import aiq_tvm  # noqa: E402

model, calib = _model_and_calibration("tv/mobilenet_v2", 224, 32)
calib = np.asarray(calib)
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
plan = aiq_tvm.Plan({r"re:features\.\d+\.conv\.(1\.0|2)$": "fp32",
                     "features.1.conv.0.0": "fp32", "features.1.conv.1": "fp32"},
                    default="int8")
outs = {}
for fuse in (True, False):
    res = aiq_tvm.build(mod, params=params, plan=plan, calib_data=calib, batch_size=8,
                        fuse_depthwise=fuse)
    exe = res.executable(8)
    print(fuse, len(exe.aiq_fused_layers), "fused")
    outs[fuse] = res.vm(8)["main"](tvm.runtime.tensor(res.example_input(8))).numpy()
print("max diff", float(np.abs(outs[True] - outs[False]).max()))
