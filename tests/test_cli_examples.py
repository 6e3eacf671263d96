"""scripts/make_cli_examples.py's mobilenet_v2 training (docs/cli.md), on synthetic 28 x 28
images: it trains on images disjoint from images/, preprocesses them as ``aiq-tvm --data
FOLDER`` does, and saves a state dict that ``--weights`` loads as a 10-class model."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from aiq_tvm import datasets
from aiq_tvm.datasources import load_data
from aiq_tvm.sources import torch_module

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_cli_examples.py"


@pytest.fixture(scope="module")
def mce():
    spec = importlib.util.spec_from_file_location("make_cli_examples", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fake_raw(per_class):
    """Fashion-MNIST-like (uint8 28 x 28 images, labels 0..9 shuffled): random pixels."""
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.repeat(np.arange(10), per_class))
    return rng.integers(0, 256, (len(labels), 28, 28)).astype(np.uint8), labels


def test_loader_matches_the_cli_image_folder_loader(mce, tmp_path):
    imgs, labels = _fake_raw(4)
    mce.write_class_pngs(tmp_path / "f", imgs, labels, 0, 3)
    x, y = mce.load_class_folder(tmp_path / "f", (3, 64, 64))
    assert x.shape == (30, 3, 64, 64) and sorted(y.tolist()) == sorted(list(range(10)) * 3)
    d = load_data(str(tmp_path / "f"), (3, 64, 64), calib=10, val=20)
    cli_rows = sorted(r.tobytes() for r in np.concatenate([d.calib, d.val[0]]))
    assert cli_rows == sorted(r.tobytes() for r in x.numpy())


def test_mobilenet_trains_on_images_outside_the_folders(mce, tmp_path, monkeypatch):
    imgs, labels = _fake_raw(303)
    monkeypatch.setattr(datasets, "_fashion_mnist_raw", lambda split, root: (imgs, labels))
    mce.write_class_pngs(tmp_path / "images" / "train", imgs, labels, 0, 300)
    mce.write_class_pngs(tmp_path / "images" / "test", imgs, labels, 0, 2)
    seen = []
    real = mce.load_class_folder

    def spy(root, shape):
        x, y = real(root, shape)
        seen.append((root, x))
        return x, y

    monkeypatch.setattr(mce, "load_class_folder", spy)
    acc = mce.train_mobilenet(tmp_path, epochs=1, per_class=3)
    assert 0.0 <= acc <= 1.0
    train_x = seen[0][1]
    assert train_x.shape == (30, 3, 64, 64)
    folder, _ = real(tmp_path / "images" / "train", (3, 64, 64))
    # images 300..302 of each class: none equals an image of images/train (0..299)
    assert not {r.tobytes() for r in train_x.numpy()} & {r.tobytes() for r in folder.numpy()}
    model = torch_module("torchvision:mobilenet_v2", str(tmp_path / "mobilenet_v2_fmnist.pt"))
    assert model.classifier[-1].out_features == 10
