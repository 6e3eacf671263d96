"""Normalization layers between two 1x1 convs (64 channels, 56 x 56, batch 1, a ReLU after
the norm), built FP32 by the checkout whose interpreter runs this: median time of the whole
network (20 runs), relative error to torch, and the kernels of the norm with their isolated
times (``aiq_tvm.profiling.profile``: the norm and any layout transposes around it).

    TVM_NUM_THREADS=1 python docs/runs/s41/norms.py
"""

import numpy as np
import torch
import torch.nn as nn

import aiq_tvm
from aiq_tvm import profiling

NORMS = {
    "BatchNorm2d (folded)": lambda: nn.BatchNorm2d(64),
    "GroupNorm(8)": lambda: nn.GroupNorm(8, 64),
    "GroupNorm(32)": lambda: nn.GroupNorm(32, 64),
    "GroupNorm(1)": lambda: nn.GroupNorm(1, 64),
    "InstanceNorm2d(affine)": lambda: nn.InstanceNorm2d(64, affine=True),
    "LayerNorm over C (channels-last)": lambda: ChannelsLastLayerNorm(64),
}


class ChannelsLastLayerNorm(nn.LayerNorm):
    """ConvNeXt's LayerNorm2d: permute to NHWC, normalize the channels, permute back."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Net(nn.Module):
    def __init__(self, norm):
        super().__init__()
        self.c, self.norm, self.d = nn.Conv2d(64, 64, 1), norm, nn.Conv2d(64, 64, 1)

    def forward(self, x):
        return self.d(torch.relu(self.norm(self.c(x))))


def main():
    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((1, 64, 56, 56)).astype("float32")
    print("| norm | network ms | rel. err. | norm's kernels (isolated us) |")
    print("|---|---|---|---|")
    for name, make in NORMS.items():
        net = Net(make()).eval()
        mod, params = aiq_tvm.from_torch(net, x)
        res = aiq_tvm.build(mod, params=params, plan="fp32")
        with torch.no_grad():
            ref = net(torch.from_numpy(x)).numpy()
        err = float(np.abs(res.run(x) - ref).max() / np.abs(ref).max())
        ms = res.benchmark(1, repeat=20)["median_ms"]
        kernels = [f"{k} {t:.0f}" for k, t in profiling.profile(res, batch_size=1)
                   if not k.endswith("_fp32")]
        print(f"| {name} | {ms:.3f} | {err:.1e} | {', '.join(kernels)} |", flush=True)


if __name__ == "__main__":
    main()
