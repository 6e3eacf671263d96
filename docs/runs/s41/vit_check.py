"""ViT-B/16 at 224 (random init; torchvision zero-initializes the head, so it is redrawn to make
the logits non-zero) built FP32 with this checkout: relative error of the logits to torch's on
4 Fashion-MNIST images, and the batch-1 time (median of 20 runs)."""

import numpy as np
import torch

import aiq_tvm
from aiq_tvm.models import torchvision_zoo as zoo

torch.manual_seed(0)
net = zoo.torchvision_model("vit_b_16", size=224)
torch.nn.init.normal_(net.heads.head.weight, std=0.02)
x = zoo.calibration_images(4, 224)
mod, params = aiq_tvm.from_torch(net, x[:1])
res = aiq_tvm.build(mod, params=params, plan="fp32")
with torch.no_grad():
    ref = net(torch.from_numpy(x)).numpy()
out = np.concatenate([res.run(x[i:i + 1]) for i in range(len(x))])
print(f"max |tvm - torch| / max |torch| = {np.abs(out - ref).max() / np.abs(ref).max():.2e}")
print(f"batch 1: {res.benchmark(1, repeat=20)['median_ms']:.1f} ms")
