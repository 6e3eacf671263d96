"""torchvision classification CNNs at ImageNet size, with real Fashion-MNIST inputs.

No pretrained weights are available offline, so the models are torchvision's with
``weights=None`` (seeded random initialisation). Random batch-norm statistics (mean 0,
variance 1) would let activations grow or vanish through dozens of layers, so
:func:`torchvision_model` *sets* them: every batch norm runs in training mode with a
cumulative average (``momentum=None``) over real images while everything else stays in eval
mode (dropout and stochastic depth off), then the model is returned in eval mode.

Inputs are Fashion-MNIST images from the held-out pools of :mod:`aiq_tvm.datasets`
(32 x 32 x 3, normalised) resized bilinearly to ``size`` x ``size`` x 3: BN statistics and
calibration use the calibration pool, accuracy checks the disjoint validation pool.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision
from torch import nn

from aiq_tvm import datasets

__all__ = [
    "TORCHVISION_CNNS",
    "CNN_FAMILIES",
    "calibration_images",
    "validation_images",
    "resize_images",
    "set_bn_statistics",
    "torchvision_model",
    "SEGMENTATION_MODELS",
    "segmentation_model",
    "timm_model",
]

# Every torchvision classification CNN (transformers — ViT, Swin, MaxViT — are not CNNs and
# are not listed), grouped by family. The coverage script checks all of them.
CNN_FAMILIES: dict[str, tuple[str, ...]] = {
    "alexnet": ("alexnet",),
    "vgg": ("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"),
    "resnet": ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"),
    "resnext": ("resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d"),
    "wide_resnet": ("wide_resnet50_2", "wide_resnet101_2"),
    "squeezenet": ("squeezenet1_0", "squeezenet1_1"),
    "densenet": ("densenet121", "densenet161", "densenet169", "densenet201"),
    "googlenet": ("googlenet",),
    "inception": ("inception_v3",),
    "mobilenet": ("mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"),
    "mnasnet": ("mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3"),
    "shufflenet": ("shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5",
                   "shufflenet_v2_x2_0"),
    "efficientnet": tuple(f"efficientnet_b{i}" for i in range(8)),
    "efficientnet_v2": ("efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l"),
    "regnet": tuple(f"regnet_{k}_{s}" for k in "xy" for s in (
        "400mf", "800mf", "1_6gf", "3_2gf", "8gf", "16gf", "32gf")) + ("regnet_y_128gf",),
    "convnext": ("convnext_tiny", "convnext_small", "convnext_base", "convnext_large"),
}
TORCHVISION_CNNS: tuple[str, ...] = tuple(n for names in CNN_FAMILIES.values() for n in names)

# torchvision's semantic segmentation models (dilated backbones, atrous pyramids, bilinear
# upsampling to the input size); :func:`segmentation_model` returns their ``"out"`` map.
SEGMENTATION_MODELS: tuple[str, ...] = (
    "lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", "deeplabv3_resnet50",
    "deeplabv3_resnet101", "fcn_resnet50", "fcn_resnet101")

# Models whose constructor needs extra arguments with weights=None (auxiliary heads only run
# in training mode; switching them off keeps the exported graph and the state dict small).
_CTOR_KWARGS = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}


def resize_images(x: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of N x C x H x W float32 images to N x C x ``size`` x ``size``."""
    x = np.asarray(x, np.float32)
    if x.ndim != 4:
        raise ValueError(f"resize_images expects N x C x H x W images, got shape {x.shape}")
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    t = torch.nn.functional.interpolate(torch.from_numpy(x), size=(size, size),
                                        mode="bilinear", align_corners=False)
    return np.ascontiguousarray(t.numpy())


def calibration_images(n: int, size: int = 224, seed: int = 0) -> np.ndarray:
    """``n`` Fashion-MNIST images of the calibration pool at ``size`` x ``size`` x 3."""
    return resize_images(datasets.calibration_set(n, seed=seed)[0], size)


def validation_images(n: int, size: int = 224, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` Fashion-MNIST images (and labels) of the validation pool at ``size``."""
    x, y = datasets.validation_set(n, seed=seed)
    return resize_images(x, size), y


def set_bn_statistics(model: nn.Module, images: np.ndarray, batch: int = 16) -> int:
    """Set every batch norm's running mean/variance to the statistics of ``images``.

    Only the batch-norm modules run in training mode (cumulative average); the model's
    other modules stay in eval mode and no weight changes. Returns the number of batch norms.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over all batches
        m.train()
    with torch.no_grad():
        for i in range(0, len(images), batch):
            model(torch.from_numpy(np.ascontiguousarray(images[i:i + batch])))
    model.eval()
    return len(bns)


def init_zero_linears(model: nn.Module) -> int:
    """Give every ``nn.Linear`` whose weight is all zeros torch's default initialisation
    (seeded by the caller); returns how many. torchvision's ViTs start their classifier at
    zero, so a random-init ViT's logits are zero for every image and comparing a build with
    them measures nothing."""
    n = 0
    for m in model.modules():
        if isinstance(m, nn.Linear) and not bool(m.weight.detach().any()):
            m.reset_parameters()
            n += 1
    return n


def torchvision_model(name: str, *, size: int = 224, seed: int = 0, bn_images: int = 32,
                      num_classes: int = 1000) -> nn.Module:
    """torchvision classification model ``name`` with seeded random weights, BN stats set
    (and no all-zero classifier: :func:`init_zero_linears`).

    Parameters
    ----------
    name : str
        A torchvision classification model (see :data:`TORCHVISION_CNNS`; any name
        ``torchvision.models.get_model`` knows is accepted).
    size : int
        Input resolution of the images that set the batch-norm statistics.
    seed : int
        ``torch.manual_seed`` before construction: the same seed gives the same weights in
        every process.
    bn_images : int
        Calibration-pool images used for the batch-norm statistics (0: keep mean 0, var 1).
    num_classes : int
        Classifier outputs (ImageNet's 1000 by default, so the head has its real size).

    Returns
    -------
    torch.nn.Module
        The model in eval mode.
    """
    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        raise ValueError(f"unknown torchvision classification model {name!r}; valid: "
                         f"{', '.join(known)}")
    torch.manual_seed(seed)
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes,
                                         **_CTOR_KWARGS.get(name, {}))
    init_zero_linears(model)
    if bn_images:
        set_bn_statistics(model, calibration_images(bn_images, size, seed=seed + 1))
    return model.eval()


def timm_model(name: str, *, size: int = 224, seed: int = 0, bn_images: int = 32,
               num_classes: int = 1000) -> nn.Module:
    """A `timm <https://github.com/huggingface/pytorch-image-models>`_ model ``name`` with
    seeded random weights and batch-norm statistics set as in :func:`torchvision_model`.

    timm is not a dependency of aiq_tvm (``pip install timm``); its models are the held-out
    architectures the coverage sweeps check beyond torchvision's (docs/models.md)."""
    try:
        import timm
    except ImportError as err:
        raise ImportError(f"timm model {name!r} needs the timm package: pip install timm") \
            from err
    known = timm.list_models()
    if name not in known:
        raise ValueError(f"unknown timm model {name!r}; valid: timm.list_models() "
                         f"({len(known)} names, e.g. resnet50d, mobilenetv3_large_100)")
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    init_zero_linears(model)
    if bn_images:
        set_bn_statistics(model, calibration_images(bn_images, size, seed=seed + 1))
    return model.eval()


class _SegmentationOut(nn.Module):
    """A torchvision segmentation model returning its ``"out"`` map (N, classes, H, W)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["out"]


def segmentation_model(name: str, *, size: int = 224, seed: int = 0, bn_images: int = 32,
                       num_classes: int = 21) -> nn.Module:
    """torchvision segmentation model ``name`` (:data:`SEGMENTATION_MODELS`) with seeded
    random weights (backbone too), no auxiliary head, BN statistics set as in
    :func:`torchvision_model`; its forward returns the ``"out"`` map. In eval mode."""
    if name not in SEGMENTATION_MODELS:
        raise ValueError(f"unknown torchvision segmentation model {name!r}; valid: "
                         f"{', '.join(SEGMENTATION_MODELS)}")
    torch.manual_seed(seed)
    model = torchvision.models.get_model(name, weights=None, weights_backbone=None,
                                         num_classes=num_classes, aux_loss=False)
    model = _SegmentationOut(model)
    if bn_images:
        set_bn_statistics(model, calibration_images(bn_images, size, seed=seed + 1))
    return model.eval()
