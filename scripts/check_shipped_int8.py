"""Uniform INT8 test accuracy of the shipped models, per calibration method and weight
correction.

For each model (pretrained ResNet-20 / MobileNetV2 on Fashion-MNIST), each method and each
weight correction (optional third argument, default the build's; ``aiq_tvm.weight_correction``)
and plan (optional fourth argument, default ``int8``): build the uniform plan calibrated on 512
calibration-pool images and print its top-1 accuracy on the 10,000-image test split. Used to
check that a calibration or weight-correction default does not cost accuracy.

    TVM_NUM_THREADS=2 python scripts/check_shipped_int8.py resnet20,mobilenet_v2 percentile,mse
    TVM_NUM_THREADS=2 python scripts/check_shipped_int8.py resnet20,mobilenet_v2 mse none,gptq \
        int8,int4
    TVM_NUM_THREADS=2 python scripts/check_shipped_int8.py mobilenet_v2 mse \
        --target '{"kind":"llvm","mcpu":"haswell"}'

``--target`` builds for another target (default: this host; one this host cannot run is
checked through a host build with its numerics, as ``aiq_tvm.build`` does).
"""

import argparse
import itertools
import sys

import numpy as np
import torch

import aiq_tvm
from aiq_tvm import datasets
from aiq_tvm.models import get_model
from aiq_tvm.weight_correction import DEFAULT_WEIGHT_CORRECTION


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", help="comma-separated shipped models")
    ap.add_argument("methods", help="comma-separated calibration methods")
    ap.add_argument("fixes", nargs="?", default=DEFAULT_WEIGHT_CORRECTION,
                    help="comma-separated weight corrections")
    ap.add_argument("plans", nargs="?", default="int8", help="comma-separated uniform plans")
    ap.add_argument("--target", default="llvm", help="build target (default: this host)")
    args = ap.parse_args(argv)
    models, methods = args.models.split(","), args.methods.split(",")
    fixes, plans = args.fixes.split(","), args.plans.split(",")
    xc, _ = datasets.calibration_set(512)
    xt, yt = datasets.fashion_mnist("test")
    for name in models:
        model = get_model(name, pretrained=True)
        mod, params = aiq_tvm.from_torch(model, torch.from_numpy(xc[:2]))
        for plan, cal, fix in itertools.product(plans, methods, fixes):
            res = aiq_tvm.build(mod, args.target, params=params, plan=plan, calib_data=xc,
                                batch_size=500, eval_batch_size=100, calibration=cal,
                                weight_correction=fix)
            pred = res.run(xt, 500).argmax(1)
            print(f"{name} {plan} target={args.target} calibration={cal} "
                  f"weight_correction={fix}: test accuracy "
                  f"{100 * np.mean(pred == yt):.2f} % ({int((pred == yt).sum())}/{len(yt)})",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
