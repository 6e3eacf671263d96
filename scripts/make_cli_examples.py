"""Inputs for trying ``aiq-tvm`` on a model and data that are not in the repository.

    python scripts/make_cli_examples.py --out /tmp/aiq-examples

writes, from the Debian Fashion-MNIST files:

* ``flatnet.pt2`` and ``flatnet.onnx``: a small CNN (1 x 28 x 28 input, two convs with batch
  norm, a linear classifier) trained for one epoch on 20,000 training images;
* ``fmnist.npz``: ``x``/``y`` = 5,000 other training images (normalized 1 x 28 x 28 float32),
  ``x_test``/``y_test`` = the 10,000-image test split;
* ``images/{train,test}/<class>/*.png``: 300 training and 100 test images per class as
  ordinary PNG files, an ImageFolder layout for ``torchvision:<name>`` models.

Then, for example (docs/cli.md)::

    aiq-tvm search /tmp/aiq-examples/flatnet.onnx --data /tmp/aiq-examples/fmnist.npz --out r
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn


class FlatNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32 * 14 * 14, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))


def main() -> None:
    from aiq_tvm import datasets

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="/tmp/aiq-examples")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x, y = datasets.fashion_mnist("train")
    x = np.ascontiguousarray(x[:, :1, 2:30, 2:30])  # normalized 1 x 28 x 28
    xt, yt = datasets.fashion_mnist("test")
    xt = np.ascontiguousarray(xt[:, :1, 2:30, 2:30])
    perm = np.random.default_rng(0).permutation(len(x))
    train, held = perm[:20000], perm[20000:25000]
    torch.manual_seed(0)
    net = FlatNet()
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    xs, ys = torch.from_numpy(x[train]), torch.from_numpy(y[train])
    net.train()
    for i in range(0, len(train), 100):
        opt.zero_grad()
        nn.functional.cross_entropy(net(xs[i:i + 100]), ys[i:i + 100]).backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        acc = (net(torch.from_numpy(xt)).argmax(1).numpy() == yt).mean()
    print(f"flatnet: test accuracy {100 * acc:.2f}% (PyTorch, FP32)")
    ex = torch.zeros(2, 1, 28, 28)
    torch.export.save(torch.export.export(net, (ex,)), out / "flatnet.pt2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (ex,), str(out / "flatnet.onnx"), dynamo=False,
                          input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    np.savez(out / "fmnist.npz", x=x[held], y=y[held], x_test=xt, y_test=yt)
    raw, labels = datasets._fashion_mnist_raw("train", datasets.DEFAULT_FASHION_MNIST_ROOT)
    raw_t, labels_t = datasets._fashion_mnist_raw("test", datasets.DEFAULT_FASHION_MNIST_ROOT)
    for split, imgs, labs, n in (("train", raw, labels, 300), ("test", raw_t, labels_t, 100)):
        for k, name in enumerate(datasets.FASHION_MNIST_CLASSES):
            d = out / "images" / split / name.replace("/", "-").replace(" ", "_")
            d.mkdir(parents=True, exist_ok=True)
            for j, i in enumerate(np.flatnonzero(labs == k)[:n]):
                Image.fromarray(np.asarray(imgs[i])).save(d / f"{j:04d}.png")
    print(f"wrote {out}/flatnet.pt2, flatnet.onnx, fmnist.npz, images/")


if __name__ == "__main__":
    main()
