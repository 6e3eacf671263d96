"""Inputs for trying ``aiq-tvm`` on a model and data that are not in the repository.

    python scripts/make_cli_examples.py --out /tmp/aiq-examples

writes, from the Debian Fashion-MNIST files:

* ``flatnet.pt2`` and ``flatnet.onnx``: a small CNN (1 x 28 x 28 input, two convs with batch
  norm, a linear classifier) trained for one epoch on 20,000 training images;
* ``fmnist.npz``: ``x``/``y`` = 5,000 other training images (normalized 1 x 28 x 28 float32),
  ``x_test``/``y_test`` = the 10,000-image test split;
* ``images/{train,test}/<class>/*.png``: 300 training and 100 test images per class as
  ordinary PNG files, an ImageFolder layout for ``torchvision:<name>`` models;
* with ``--mobilenet-epochs N`` (N > 0), also ``mobilenet_v2_fmnist.pt``: the state dict of
  torchvision's ``mobilenet_v2(num_classes=10)`` trained from random initialization for N
  epochs at 3 x 64 x 64, for ``aiq-tvm ... torchvision:mobilenet_v2 --input-shape 3,64,64
  --data images --weights mobilenet_v2_fmnist.pt``. It trains on 300 other training images per
  class (the next 300 of each class in the Fashion-MNIST training split, none of them in
  ``images/``), so the calibration and validation images ``aiq-tvm`` draws from
  ``images/train`` and the test images in ``images/test`` are all unseen by the training. The
  training images go through the loader ``aiq-tvm`` uses for image folders (PNG, RGB, bilinear
  resize to 64 x 64, ImageNet mean/std: the ``--mean/--std`` defaults), and the script prints
  the PyTorch FP32 accuracy on ``images/test``. Run it with ``OMP_WAIT_POLICY=PASSIVE`` on a
  shared host (PyTorch's 2 threads then sleep instead of spinning between operators).

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


def train_flatnet(out: Path) -> None:
    """flatnet.pt2 / flatnet.onnx (one epoch on 20,000 training images) and fmnist.npz."""
    from aiq_tvm import datasets

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


def write_class_pngs(root: Path, imgs, labels, first: int, n: int) -> None:
    """root/<class>/NNNN.png: the images first .. first + n - 1 of each class."""
    from aiq_tvm import datasets

    for k, name in enumerate(datasets.FASHION_MNIST_CLASSES):
        d = root / name.replace("/", "-").replace(" ", "_")
        d.mkdir(parents=True, exist_ok=True)
        for j, i in enumerate(np.flatnonzero(labels == k)[first:first + n]):
            Image.fromarray(np.asarray(imgs[i])).save(d / f"{j:04d}.png")


def load_class_folder(root: Path, shape: tuple[int, int, int]):
    """(x, y) exactly as ``aiq-tvm --data FOLDER`` loads it (default --mean/--std)."""
    from aiq_tvm import datasources as ds

    mean, std = (ds.IMAGENET_MEAN, ds.IMAGENET_STD) if shape[0] == 3 else ((0.449,), (0.226,))
    _, files = ds._class_files(root)
    x = ds._ImageLoader(shape, mean, std)([f for f, _ in files])
    return torch.from_numpy(x), torch.tensor([k for _, k in files])


def train_mobilenet(out: Path, epochs: int, per_class: int, seed: int = 0) -> float:
    """Train torchvision mobilenet_v2 (10 classes, 3 x 64 x 64); save its state dict.

    Returns the FP32 accuracy on images/test. The training images are per_class images of
    each class after the 300 written to images/train, so nothing aiq-tvm validates on was seen.
    """
    import tempfile

    import torchvision

    from aiq_tvm import datasets

    shape = (3, 64, 64)
    raw, labels = datasets._fashion_mnist_raw("train", datasets.DEFAULT_FASHION_MNIST_ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        write_class_pngs(Path(tmp), raw, labels, 300, per_class)
        xs, ys = load_class_folder(Path(tmp), shape)
    torch.manual_seed(seed)
    net = torchvision.models.mobilenet_v2(weights=None, num_classes=10)
    steps_per_epoch, batch = -(-len(xs) // 50), 50
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        net.train()
        order, loss_sum = torch.randperm(len(xs), generator=gen), 0.0
        for i in range(0, len(xs), batch):
            idx = order[i:i + batch]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(xs[idx]), ys[idx])
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(idx)
        print(f"mobilenet_v2: epoch {epoch + 1}/{epochs}, mean training loss "
              f"{loss_sum / len(xs):.3f}", flush=True)
    net.eval()
    xt, yt = load_class_folder(out / "images" / "test", shape)
    with torch.no_grad():
        pred = torch.cat([net(xt[i:i + 200]).argmax(1) for i in range(0, len(xt), 200)])
    acc = float((pred == yt).float().mean())
    torch.save(net.state_dict(), out / "mobilenet_v2_fmnist.pt")
    print(f"mobilenet_v2: test accuracy {100 * acc:.2f}% on {len(xt)} images of "
          f"{out / 'images' / 'test'} (PyTorch, FP32, {epochs} epochs on {len(xs)} images)")
    return acc


def main() -> None:
    from aiq_tvm import datasets

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="/tmp/aiq-examples")
    ap.add_argument("--mobilenet-epochs", type=int, default=0,
                    help="also train mobilenet_v2_fmnist.pt for this many epochs (0: skip)")
    ap.add_argument("--mobilenet-images-per-class", type=int, default=300)
    ap.add_argument("--only-mobilenet", action="store_true",
                    help="skip flatnet/fmnist.npz/images (they must exist in --out)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.only_mobilenet:
        train_flatnet(out)
        root = datasets.DEFAULT_FASHION_MNIST_ROOT
        for split, n in (("train", 300), ("test", 100)):
            imgs, labels = datasets._fashion_mnist_raw(split, root)
            write_class_pngs(out / "images" / split, imgs, labels, 0, n)
        print(f"wrote {out}/flatnet.pt2, flatnet.onnx, fmnist.npz, images/")
    if args.mobilenet_epochs > 0:
        train_mobilenet(out, args.mobilenet_epochs, args.mobilenet_images_per_class)


if __name__ == "__main__":
    main()
