"""How strongly random-init EfficientNet-B0 (BN statistics set at 224) amplifies a perturbation
at 97 x 131, session 48: relative noise of 1e-6 on the output of features[:4], float64
throughout, for two uniform random images (those of odd_sizes.py: x2 is its input).

    python docs/runs/s48/amplification.py
"""
import numpy as np
import torch

from aiq_tvm.models.torchvision_zoo import torchvision_model

m = torchvision_model("efficientnet_b0", size=224).double()
hw = (97, 131)
rng = np.random.default_rng(0)
rng.uniform(0, 1, (16, 3) + hw)
x2 = rng.uniform(0, 1, (1, 3) + hw)
x1 = np.random.default_rng(0).uniform(0, 1, (1, 3) + hw)


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


with torch.no_grad():
    for nm, x in (("x1", x1), ("x2", x2)):
        base = m(torch.from_numpy(x)).numpy()
        h4 = m.features[:4](torch.from_numpy(x))
        for k in range(3):
            noise = torch.from_numpy(np.random.default_rng(k).standard_normal(h4.shape))
            out = m.classifier(torch.flatten(m.avgpool(m.features[4:](h4 * (1 + 1e-6 * noise))),
                                             1)).numpy()
            print(f"{nm}: 1e-6 relative noise after features[:4] -> logits change "
                  f"{rel(out, base):.2e}")
