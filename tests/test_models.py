"""Tests for aiq_tvm.models: architecture, registry, torch.export and pretrained accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from aiq_tvm import datasets, models

# FP32 accuracy targets on the official 10k Fashion-MNIST test split.
TARGETS = {"resnet20": 0.930, "mobilenet_v2": 0.915}


@pytest.fixture(scope="module")
def test_split() -> tuple[np.ndarray, np.ndarray]:
    return datasets.fashion_mnist("test")


@pytest.fixture(autouse=True)
def _two_threads() -> None:
    torch.set_num_threads(2)


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------------------------
# Architecture
# --------------------------------------------------------------------------------------------


def test_resnet20_parameter_count() -> None:
    n = _n_params(models.resnet20())
    assert 260_000 <= n <= 280_000, n


def test_resnet20_structure() -> None:
    model = models.resnet20()
    mods = dict(model.named_modules())
    for name in ("conv1", "bn1", "layer1.0.conv1", "layer1.0.bn1", "layer1.2.conv2",
                 "layer1.2.bn2", "layer2.0.downsample.0", "layer2.0.downsample.1",
                 "layer3.0.downsample.0", "layer3.2.bn2", "fc"):
        assert name in mods, name
    for layer, width in (("layer1", 16), ("layer2", 32), ("layer3", 64)):
        seq = mods[layer]
        assert isinstance(seq, nn.Sequential) and len(seq) == 3
        assert all(isinstance(b, models.BasicBlock) for b in seq)
        assert seq[-1].conv2.out_channels == width
    # Only the first blocks of stages 2 and 3 downsample, with a strided 1x1 conv + BN.
    assert mods["layer1.0"].downsample is None
    for layer in ("layer2", "layer3"):
        ds = mods[f"{layer}.0.downsample"]
        assert isinstance(ds[0], nn.Conv2d) and ds[0].kernel_size == (1, 1)
        assert ds[0].stride == (2, 2) and isinstance(ds[1], nn.BatchNorm2d)
        assert mods[f"{layer}.0.conv1"].stride == (2, 2)
        assert mods[f"{layer}.1"].downsample is None
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 19 + 2  # 19 3x3 convs + 2 shortcut convs (+ fc = 20 weight layers)
    assert all(c.bias is None for c in convs)
    assert isinstance(model.fc, nn.Linear) and model.fc.in_features == 64
    assert model.fc.out_features == 10
    assert models.resnet20(num_classes=100).fc.out_features == 100


def test_resnet20_output_shape_and_spatial_sizes() -> None:
    model = models.resnet20().eval()
    shapes = {}
    for name in ("layer1", "layer2", "layer3"):
        getattr(model, name).register_forward_hook(
            lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape))
        )
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert shapes == {"layer1": (2, 16, 32, 32), "layer2": (2, 32, 16, 16),
                      "layer3": (2, 64, 8, 8)}


def test_mobilenet_v2_is_torchvision() -> None:
    ours = models.mobilenet_v2()
    ref = torchvision.models.mobilenet_v2(num_classes=10)
    assert type(ours) is type(ref)
    ours_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    ref_shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert ours_shapes == ref_shapes
    assert ours.classifier[1].out_features == 10


# --------------------------------------------------------------------------------------------
# Registry and weights files
# --------------------------------------------------------------------------------------------


def test_get_model_names() -> None:
    assert set(models.MODEL_NAMES) == {"resnet20", "mobilenet_v2"}
    assert isinstance(models.get_model("resnet20"), models.ResNetCifar)
    assert isinstance(models.get_model("mobilenet_v2"), torchvision.models.MobileNetV2)


def test_get_model_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown model 'resnet18'.*resnet20.*mobilenet_v2"):
        models.get_model("resnet18")


def test_missing_weights_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="resnet20_fmnist.pt.*scripts/train.py"):
        models.resnet20(pretrained=True)
    with pytest.raises(FileNotFoundError, match="mobilenet_v2_fmnist.pt.*scripts/train.py"):
        models.get_model("mobilenet_v2", pretrained=True)


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2"])
def test_weights_file_is_float32_state_dict(name: str) -> None:
    state = torch.load(models.weights_path(name), map_location="cpu", weights_only=True)
    assert set(state) == set(models.get_model(name).state_dict())
    floats = [v for v in state.values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float32 for v in floats)
    assert all(torch.isfinite(v).all() for v in floats)


def test_pretrained_resnet20_requires_10_classes() -> None:
    with pytest.raises(ValueError, match="10 classes"):
        models.resnet20(pretrained=True, num_classes=100)


# --------------------------------------------------------------------------------------------
# torch.export
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2"])
def test_torch_export(name: str) -> None:
    model = models.get_model(name, pretrained=True)
    example = torch.randn(1, 3, 32, 32)
    exported = torch.export.export(model, (example,))
    with torch.no_grad():
        expected = model(example)
        got = exported.module()(example)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    targets = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert any("conv2d" in t for t in targets)


# --------------------------------------------------------------------------------------------
# Pretrained accuracy on the full 10k test split (evaluation only)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2"])
def test_pretrained_accuracy(name: str, test_split: tuple[np.ndarray, np.ndarray]) -> None:
    model = models.get_model(name, pretrained=True)
    assert not model.training
    x, y = test_split
    assert len(x) == 10_000
    acc = models.evaluate_accuracy(model, x, y, batch_size=500)
    assert acc >= TARGETS[name], f"{name}: {acc:.4f} < {TARGETS[name]}"


def test_evaluate_accuracy_counts_correctly() -> None:
    class Fixed(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # Predict class 3 for every image whose first pixel is positive, else class 0.
            logits = torch.zeros(len(x), 10)
            logits[:, 3] = (x[:, 0, 0, 0] > 0).float()
            return logits

    x = np.zeros((7, 3, 32, 32), dtype=np.float32)
    x[:4, 0, 0, 0] = 1.0
    y = np.array([3, 3, 3, 0, 0, 0, 3])  # 3 + 2 correct
    assert models.evaluate_accuracy(Fixed(), x, y, batch_size=3) == pytest.approx(5 / 7)
    with pytest.raises(ValueError):
        models.evaluate_accuracy(Fixed(), x, y[:3])
