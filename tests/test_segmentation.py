"""torchvision segmentation: LR-ASPP (dilated depthwise backbone, bilinear upsampling to the
input) through torch -> build -> VM at FP32 and INT8, every conv on an AIQ kernel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import aiq_tvm
from aiq_tvm.models import torchvision_zoo as zoo


def test_segmentation_model_returns_the_out_map():
    model = zoo.segmentation_model("lraspp_mobilenet_v3_large", size=64, bn_images=4)
    with torch.no_grad():
        y = model(torch.from_numpy(zoo.validation_images(2, 64)[0]))
    assert tuple(y.shape) == (2, 21, 64, 64)
    with pytest.raises(ValueError, match="valid: lraspp_mobilenet_v3_large"):
        zoo.segmentation_model("resnet18")


def test_lraspp_builds_on_aiq_kernels_and_matches_torch():
    size = 64
    model = zoo.segmentation_model("lraspp_mobilenet_v3_large", size=size, bn_images=4)
    calib = zoo.calibration_images(4, size)
    x, _ = zoo.validation_images(2, size)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
    fp32 = aiq_tvm.build(mod, params=params, plan="fp32", batch_size=2)
    assert not [lc.name for lc in fp32.cost.layers if not lc.supported]  # dilated ones too
    assert np.abs(fp32.run(x) - ref).max() / np.abs(ref).max() < 1e-4
    int8 = aiq_tvm.build(mod, params=params, plan="int8", calib_data=calib, batch_size=2)
    y = int8.run(x).reshape(2, -1)
    r = ref.reshape(2, -1)
    cos = (y * r).sum(1) / np.linalg.norm(y, axis=1) / np.linalg.norm(r, axis=1)
    assert cos.min() > 0.95  # random weights amplify rounding (docs/models.md)
