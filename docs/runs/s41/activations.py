"""Every torch activation between two 1x1 convs (64 channels, 56 x 56, batch 1), built FP32 by
the checkout whose interpreter runs this: median time (20 runs), relative error to torch and
the libm functions the compiled library still calls (scalar, one call per element).

    TVM_NUM_THREADS=1 python docs/runs/s41/activations.py [names...]
"""

import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn

import aiq_tvm


class Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def _manual_softmax(x):
    e = (x - x.amax(1, keepdim=True)).exp()
    return e / e.sum(1, keepdim=True)


ACTS = {
    "relu": nn.ReLU(), "mish": nn.Mish(), "softplus": nn.Softplus(), "elu": nn.ELU(),
    "selu": nn.SELU(), "celu": nn.CELU(), "logsigmoid": nn.LogSigmoid(),
    "softsign": nn.Softsign(), "prelu": nn.PReLU(64), "gelu": nn.GELU(),
    "gelu_tanh": nn.GELU(approximate="tanh"), "hardtanh": nn.Hardtanh(), "silu": nn.SiLU(),
    "tanh": nn.Tanh(), "tanhshrink": nn.Tanhshrink(), "softmax_channels": nn.Softmax(dim=1),
    "log_softmax_channels": nn.LogSoftmax(dim=1), "softmin_channels": nn.Softmin(dim=1),
    "manual_softmax": Fn(_manual_softmax), "rrelu": nn.RReLU(), "hardshrink": nn.Hardshrink(),
    "softshrink": nn.Softshrink(), "threshold": nn.Threshold(0.1, 20.0), "glu": nn.GLU(1),
    "pow_sqrt": Fn(lambda x: x.pow(2) + x.pow(3) + x.abs().sqrt() + torch.rsqrt(x.abs() + 1)),
}


class Net(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.conv = nn.Conv2d(64, 64, 1)
        self.act = act
        channels = self.act(torch.zeros(1, 64, 2, 2)).shape[1]
        self.conv2 = nn.Conv2d(channels, 64, 1)

    def forward(self, x):
        return self.conv2(self.act(self.conv(x)))


def libm_calls(res) -> list[str]:
    path = os.path.join(tempfile.mkdtemp(), "m.so")
    res.export_library(path)
    undefined = subprocess.run(["nm", "-u", path], capture_output=True, text=True).stdout
    return sorted({u.split("@")[0] for u in undefined.split()
                   if re.fullmatch(r"(exp|log|log1p|expm1|pow|erf|tanh)f?(@.*)?", u)})


def main(names):
    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((1, 64, 56, 56)).astype("float32")
    print("| activation | ms | rel. err. | libm calls |")
    print("|---|---|---|---|")
    for name in names:
        net = Net(ACTS[name]).eval()
        try:
            mod, params = aiq_tvm.from_torch(net, x)
            res = aiq_tvm.build(mod, params=params, plan="fp32")
            ms = res.benchmark(1, repeat=20)["median_ms"]
            with torch.no_grad():
                ref = net(torch.from_numpy(x)).numpy()
            err = float(np.abs(res.run(x) - ref).max() / np.abs(ref).max())
            print(f"| {name} | {ms:.3f} | {err:.1e} | {', '.join(libm_calls(res)) or '-'} |",
                  flush=True)
        except Exception as e:  # noqa: BLE001 - a survey reports every failure
            print(f"| {name} | failed: {type(e).__name__}: {str(e).splitlines()[0][:90]} | | |",
                  flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or list(ACTS))
