"""Transposed convolutions after a 1x1 conv (64 channels, 28 x 28, batch 1), built FP32 by
the checkout whose interpreter runs this: median time of the network (20 runs), relative error
to torch, and every kernel with its isolated time (``aiq_tvm.profiling.profile``).

    TVM_NUM_THREADS=1 python docs/runs/s41/transposed_conv.py
"""

import numpy as np
import torch
import torch.nn as nn

import aiq_tvm
from aiq_tvm import profiling

CASES = {
    "no transposed conv (1x1 conv only)": lambda: nn.Identity(),
    "ConvTranspose2d(64, 64, 2, stride=2)": lambda: nn.ConvTranspose2d(64, 64, 2, stride=2),
    "ConvTranspose2d(64, 64, 3, stride=2, padding=1, output_padding=1)":
        lambda: nn.ConvTranspose2d(64, 64, 3, stride=2, padding=1, output_padding=1),
    "ConvTranspose2d(64, 32, 4, stride=2, padding=1)":
        lambda: nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1),
}


class Net(nn.Module):
    def __init__(self, up):
        super().__init__()
        self.conv, self.up = nn.Conv2d(64, 64, 1), up

    def forward(self, x):
        return self.up(torch.relu(self.conv(x)))


def main():
    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((1, 64, 28, 28)).astype("float32")
    print("| layer | network ms | rel. err. | kernels (isolated us) |")
    print("|---|---|---|---|")
    for name, make in CASES.items():
        net = Net(make()).eval()
        mod, params = aiq_tvm.from_torch(net, x)
        res = aiq_tvm.build(mod, params=params, plan="fp32")
        with torch.no_grad():
            ref = net(torch.from_numpy(x)).numpy()
        err = float(np.abs(res.run(x) - ref).max() / np.abs(ref).max())
        ms = res.benchmark(1, repeat=20)["median_ms"]
        kernels = ", ".join(f"{k} {t:.0f}" for k, t in profiling.profile(res, batch_size=1))
        print(f"| {name} | {ms:.3f} | {err:.1e} | {kernels} |", flush=True)


if __name__ == "__main__":
    main()
