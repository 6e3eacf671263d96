"""Is the INT8 cosine gap of random-init models a property of random weights? Same
architecture, trained vs random-init (BN statistics set), both through AIQ's uniform INT8.

For each of our two 32 x 32 models (``aiq_tvm.models``: ResNet-20 and MobileNetV2 trained on
Fashion-MNIST) this builds uniform ``int8`` twice, once with the shipped trained weights and
once with seeded random weights whose batch-norm statistics are set on the calibration
images (``torchvision_zoo.set_bn_statistics``, as ``check_torchvision.py`` prepares its
models), and prints for each the cosine similarity of every validation image's logits to
torch's FP32 logits (smallest and median), top-1 agreement with torch, and the same smallest
cosine for torch's own FP32 model run on the input rounded to the uint8 grid (what 8-bit
input alone costs, ``check_torchvision._round_to_uint8``).

    TVM_NUM_THREADS=2 python scripts/cosine_trained_vs_random.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_torchvision import _round_to_uint8, _torch_logits  # noqa: E402


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)


def one_model(name: str, weights: str, calib: np.ndarray, x: np.ndarray, batch: int) -> dict:
    import torch

    import aiq_tvm
    from aiq_tvm import models
    from aiq_tvm.models.torchvision_zoo import set_bn_statistics

    torch.manual_seed(0)
    model = models.get_model(name, pretrained=weights == "trained").eval()
    if weights == "random":
        set_bn_statistics(model, calib)
    ref = _torch_logits(model, x, batch)
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
    res = aiq_tvm.build(mod, params=params, plan="int8", calib_data=calib, batch_size=batch,
                        eval_batch_size=batch)
    y = res.run(x, batch)
    cos = cosines(y, ref)
    u8 = cosines(_torch_logits(model, _round_to_uint8(x, calib), batch), ref)
    return {"model": name, "weights": weights, "int8_min_cos": float(cos.min()),
            "int8_median_cos": float(np.median(cos)),
            "int8_top1_agree": float(np.mean(y.argmax(1) == ref.argmax(1))),
            "input_u8_min_cos": float(u8.min())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["resnet20", "mobilenet_v2"])
    ap.add_argument("--calib", type=int, default=128, help="calibration images")
    ap.add_argument("--val", type=int, default=256, help="validation images compared")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--json", default=None, help="write the records here")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from aiq_tvm import datasets

    calib = datasets.calibration_set(args.calib)[0]
    x = datasets.validation_set(args.val)[0]
    rows = [one_model(m, w, calib, x, args.batch) for m in args.models
            for w in ("trained", "random")]
    print(f"{args.val} validation images, {args.calib} calibration images, uniform int8")
    print("| model | weights | INT8 min cos | INT8 median cos | INT8 top-1 = torch | "
          "torch FP32, input rounded to uint8: min cos |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['weights']} | {r['int8_min_cos']:.4f} | "
              f"{r['int8_median_cos']:.4f} | {100 * r['int8_top1_agree']:.1f} % | "
              f"{r['input_u8_min_cos']:.4f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
