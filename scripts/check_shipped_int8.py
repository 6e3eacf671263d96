"""Uniform INT8 test accuracy of the shipped models, per calibration method.

For each model (pretrained ResNet-20 / MobileNetV2 on Fashion-MNIST) and each method: build the
uniform ``int8`` plan calibrated on 512 calibration-pool images and print its top-1 accuracy on
the 10,000-image test split. Used to check that a calibration default does not cost accuracy.

    TVM_NUM_THREADS=2 python scripts/check_shipped_int8.py resnet20,mobilenet_v2 percentile,mse
"""

import sys

import numpy as np
import torch

import aiq_tvm
from aiq_tvm import datasets
from aiq_tvm.models import get_model


def main(argv: list[str]) -> int:
    models, methods = argv[0].split(","), argv[1].split(",")
    xc, _ = datasets.calibration_set(512)
    xt, yt = datasets.fashion_mnist("test")
    for name in models:
        model = get_model(name, pretrained=True)
        mod, params = aiq_tvm.from_torch(model, torch.from_numpy(xc[:2]))
        for cal in methods:
            res = aiq_tvm.build(mod, params=params, plan="int8", calib_data=xc, batch_size=500,
                                eval_batch_size=100, calibration=cal)
            pred = res.run(xt, 500).argmax(1)
            print(f"{name} int8 calibration={cal}: test accuracy "
                  f"{100 * np.mean(pred == yt):.2f} % ({int((pred == yt).sum())}/{len(yt)})",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
