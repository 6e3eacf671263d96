"""Models with weights we trained ourselves on Fashion-MNIST in CIFAR-10 input format.

``resnet20`` is the CIFAR ResNet-20 of He et al. (2016); ``mobilenet_v2`` is exactly
``torchvision.models.mobilenet_v2(num_classes=10)``. Both take N x 3 x 32 x 32 float32 inputs
as produced by :func:`aiq_tvm.datasets.fashion_mnist`. ``pretrained=True`` loads the float32
state dicts in ``aiq_tvm/models/weights`` written by ``scripts/train.py`` (see docs/models.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn

from aiq_tvm.models.resnet import BasicBlock, ResNetCifar

__all__ = [
    "MODEL_NAMES",
    "WEIGHTS_DIR",
    "BasicBlock",
    "ResNetCifar",
    "evaluate_accuracy",
    "get_model",
    "mobilenet_v2",
    "resnet20",
    "weights_path",
]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
_WEIGHT_FILES = {
    "resnet20": "resnet20_fmnist.pt",
    "mobilenet_v2": "mobilenet_v2_fmnist.pt",
}


def weights_path(name: str) -> Path:
    """Path of the shipped weights file of model ``name`` (which need not exist yet).

    Parameters
    ----------
    name : {"resnet20", "mobilenet_v2"}
        Model name.

    Returns
    -------
    Path
        ``aiq_tvm/models/weights/<name>_fmnist.pt``.
    """
    _check_name(name)
    return WEIGHTS_DIR / _WEIGHT_FILES[name]


def _load_pretrained(model: nn.Module, name: str) -> nn.Module:
    path = weights_path(name)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights for {name} not found at {path}: run "
            f"`python scripts/train.py --model {name} --out aiq_tvm/models/weights` first"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def resnet20(pretrained: bool = False, num_classes: int = 10) -> ResNetCifar:
    """CIFAR ResNet-20: 3 stages x 3 BasicBlocks (16/32/64 channels), ~0.27 M parameters.

    Parameters
    ----------
    pretrained : bool, default False
        Load the Fashion-MNIST weights (then ``num_classes`` must be 10) and return the model
        in eval mode; otherwise the model is Kaiming-initialised and in train mode.
    num_classes : int, default 10
        Output classes.

    Returns
    -------
    ResNetCifar
        Modules ``conv1``, ``bn1``, ``layer1``..``layer3`` (``nn.Sequential`` of
        :class:`BasicBlock` with ``conv1``, ``bn1``, ``conv2``, ``bn2`` and, in the first block
        of ``layer2``/``layer3``, ``downsample``), ``avgpool`` and ``fc``.

    Raises
    ------
    FileNotFoundError
        If ``pretrained`` and the weights file is missing.
    ValueError
        If ``pretrained`` and ``num_classes != 10``.
    """
    if pretrained and num_classes != 10:
        raise ValueError(f"pretrained weights have 10 classes, got num_classes={num_classes}")
    model = ResNetCifar(blocks_per_stage=3, num_classes=num_classes)
    return _load_pretrained(model, "resnet20") if pretrained else model


def mobilenet_v2(pretrained: bool = False) -> nn.Module:
    """``torchvision.models.mobilenet_v2(num_classes=10)``, unchanged.

    Parameters
    ----------
    pretrained : bool, default False
        Load the Fashion-MNIST weights and return the model in eval mode.

    Returns
    -------
    torchvision.models.MobileNetV2

    Raises
    ------
    FileNotFoundError
        If ``pretrained`` and the weights file is missing.
    """
    model = torchvision.models.mobilenet_v2(num_classes=10)
    return _load_pretrained(model, "mobilenet_v2") if pretrained else model


_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "resnet20": resnet20,
    "mobilenet_v2": mobilenet_v2,
}
MODEL_NAMES = tuple(_REGISTRY)


def _check_name(name: str) -> None:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")


def get_model(name: str, pretrained: bool = False) -> nn.Module:
    """Build a model by name.

    Parameters
    ----------
    name : {"resnet20", "mobilenet_v2"}
        Model name.
    pretrained : bool, default False
        Load the shipped Fashion-MNIST weights (eval mode).

    Returns
    -------
    nn.Module

    Raises
    ------
    ValueError
        If ``name`` is unknown.
    FileNotFoundError
        If ``pretrained`` and the weights file is missing.
    """
    _check_name(name)
    return _REGISTRY[name](pretrained=pretrained)


@torch.no_grad()
def evaluate_accuracy(
    model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 500
) -> float:
    """Top-1 accuracy of ``model`` (put in eval mode) on ``(x, y)``.

    Parameters
    ----------
    model : nn.Module
        Classifier taking N x 3 x 32 x 32 float32 inputs.
    x : np.ndarray
        float32 inputs, shape (N, 3, 32, 32).
    y : np.ndarray
        Integer labels, shape (N,).
    batch_size : int, default 500
        Images per forward pass.

    Returns
    -------
    float
        Fraction of correctly classified images, in [0, 1].
    """
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"need equally many (>0) images and labels, got {len(x)} and {len(y)}")
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size]))
        pred = model(xb).argmax(dim=1).numpy()
        correct += int((pred == y[start : start + batch_size]).sum())
    return correct / len(x)
