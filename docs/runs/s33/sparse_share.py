"""Session 33: one dilated conv built at FP32 whole (the planner's kernel: direct, or
Winograd on the dilation phases) and split into its taps (targets/x86/sparse_taps.py,
forced whatever its share), timed in alternating rounds in one process.

    TVM_NUM_THREADS=2 python docs/runs/s33/sparse_share.py [C,O,MAP,RATE ...]
"""
import os
import sys

import numpy as np
import torch
from torch import nn

import aiq_tvm
import aiq_tvm.targets.x86.sparse_taps as st
from aiq_tvm.targets import x86
from aiq_tvm.bench import Timer

# (name, C, O, map, rate): the atrous convs of DeepLabV3 at 224 x 224
LAYERS = [("deeplabv3_mobilenet_v3 rate 12", 960, 256, 14, 12),
          ("deeplabv3_resnet50 rate 12", 2048, 256, 28, 12),
          ("deeplabv3_resnet50 rate 24", 2048, 256, 28, 24)]
if len(sys.argv) > 1:  # extra layers C,O,MAP,RATE ...
    LAYERS = [(f"rate {r}", c, o, hw, r) for c, o, hw, r in
              (map(int, a.split(",")) for a in sys.argv[1:])]


def build(conv, x, split):
    x86.layer_tap_pieces = ((lambda spec, target: st.tap_pieces(spec, share=1.0)) if split
                            else (lambda spec, target: None))
    mod, params = aiq_tvm.from_torch(nn.Sequential(conv, nn.ReLU()).eval(), x)
    return aiq_tvm.build(mod, params=params, target="llvm", plan="fp32")


for name, c, o, hw, rate in LAYERS:
    torch.manual_seed(0)
    conv = nn.Conv2d(c, o, 3, padding=rate, dilation=rate)
    x = torch.randn(1, c, hw, hw)
    ref = torch.relu(conv(x)).detach().numpy()
    fns = {}
    for label, split in (("whole", False), ("split", True)):
        res = build(conv, x, split)
        y = res.run(x.numpy())
        err = np.abs(y - ref).max() / np.abs(ref).max()
        vm_run = res.run
        fns[label] = (Timer(lambda r=vm_run: r(x.numpy()), "wall"), err)
    samples = {k: [] for k in fns}
    for _ in range(7):
        for k, (t, _) in fns.items():
            samples[k].append(t(100.0))
    ms = {k: float(np.median(v)) * 1e3 for k, v in samples.items()}
    print(f"{name} ({c} -> {o} @ {hw} x {hw}): whole {ms['whole']:.3f} ms, split "
          f"{ms['split']:.3f} ms ({ms['whole'] / ms['split']:.2f}x); rel. error to torch "
          f"{fns['whole'][1]:.1e} / {fns['split'][1]:.1e}", flush=True)
sys.exit(0)
