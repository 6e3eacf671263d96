"""Odd input sizes, session 48: single conv layers at odd map sizes (every kernel path a
stride-2 or 'same' padding takes at a ragged border) and whole torchvision models at
non-square, odd inputs and batches, FP32 and INT8, against torch (float32 and float64).

    TVM_NUM_THREADS=2 python docs/runs/s48/odd_sizes.py
"""
import copy

import numpy as np
import torch
from torch import nn

import aiq_tvm
from aiq_tvm.models.torchvision_zoo import torchvision_model


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def single_layers():
    torch.manual_seed(0)
    worst, n = 0.0, 0
    for h, w in [(97, 131), (49, 66), (25, 33), (13, 17), (7, 9), (4, 5)]:
        for k, s, g, c in [(3, 2, 1, 3), (3, 1, 32, 32), (3, 2, 32, 32), (5, 2, 40, 40),
                           (5, 1, 40, 40), (3, 2, 16, 16), (5, 2, 112, 112), (3, 1, 1, 16),
                           (1, 1, 1, 24)]:
            o = c if g > 1 else 32
            m = nn.Sequential(nn.Conv2d(c, o, k, stride=s, padding=k // 2, groups=g),
                              nn.SiLU()).eval()
            x = np.random.default_rng(0).standard_normal((1, c, h, w)).astype(np.float32)
            with torch.no_grad():
                ref = m(torch.from_numpy(x)).numpy()
            mod, params = aiq_tvm.from_torch(m, torch.from_numpy(x))
            res = aiq_tvm.build(mod, params=params, plan="fp32", batch_size=1)
            err = rel(res.run(x, 1), ref)
            worst, n = max(worst, err), n + 1
            if err > 1e-5:
                print(f"  layer {(h, w)} k{k} s{s} groups {g} channels {c}: rel err {err:.2e}")
    print(f"single layers: {n} cases, largest FP32 rel. error to torch {worst:.2e}")


def models():
    for name, shape in [("resnet18", (3, 3, 240, 320)), ("mobilenet_v2", (2, 3, 181, 299)),
                        ("efficientnet_b0", (1, 3, 97, 131))]:
        m = torchvision_model(name, size=224)
        m64 = copy.deepcopy(m).double()
        rng = np.random.default_rng(0)
        calib = rng.uniform(0, 1, (16,) + shape[1:]).astype(np.float32)
        x = rng.uniform(0, 1, shape).astype(np.float32)
        with torch.no_grad():
            ref = m(torch.from_numpy(x)).numpy()
            ref64 = m64(torch.from_numpy(x).double()).numpy()
        mod, params = aiq_tvm.from_torch(m, torch.from_numpy(calib[:2]))
        for plan in ("fp32", "int8"):
            res = aiq_tvm.build(mod, params=params, plan=plan, calib_data=calib,
                                batch_size=shape[0])
            y = res.run(x, shape[0])
            cos = (y * ref).sum(1) / np.linalg.norm(y, axis=1) / np.linalg.norm(ref, axis=1)
            print(f"{name} {shape} {plan}: rel err to torch fp32 {rel(y, ref):.2e}, to float64 "
                  f"{rel(y, ref64):.2e} (torch fp32 to float64 {rel(ref, ref64):.2e}), "
                  f"min cosine {cos.min():.4f}", flush=True)


if __name__ == "__main__":
    single_layers()
    models()
