"""INT8 (or any plan's) cosine to torch of one torchvision model per weight correction.

The setup of ``scripts/check_torchvision.py`` (random init, BN statistics set, 32 calibration
and 16 validation Fashion-MNIST images at 224 x 224 x 3, batch 8), one JSON line per plan and
weight correction (``aiq_tvm.weight_correction``): smallest and per-image cosine, the logits'
relative squared error and top-1 agreement with torch. A calibration is reused by the next
builds of the plan once it holds GPTQ's second moments (same seed: the same ranges and means).

    TVM_NUM_THREADS=2 python scripts/compare_weight_corrections.py regnet_y_400mf \
        --corrections none,bias,gptq,bias+gptq --plans int8,w8
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--corrections", default="none,gptq")
    ap.add_argument("--plans", default="int8")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    from check_torchvision import _torch_logits, min_cosine

    import aiq_tvm
    from aiq_tvm.models import torchvision_zoo as zoo

    batch = 8
    model = zoo.torchvision_model(args.model, size=224)
    calib = zoo.calibration_images(32, 224)
    x, _ = zoo.validation_images(16, 224)
    ref = _torch_logits(model, x, batch)
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
    for plan in args.plans.split(","):
        cal = "mse"
        for fix in args.corrections.split(","):
            t0 = time.perf_counter()
            res = aiq_tvm.build(mod, params=params, plan=plan, calib_data=calib,
                                batch_size=batch, eval_batch_size=batch, calibration=cal,
                                weight_correction=fix)
            if res.calibration is not None and res.calibration.hessians:
                cal = res.calibration
            y = res.run(x, batch)
            print(json.dumps({
                "model": args.model, "plan": plan, "weight_correction": fix,
                "min_cos": min_cosine(y, ref),
                "rel_sq_err": float(((y - ref) ** 2).sum() / (ref ** 2).sum()),
                "top1_agree": float(np.mean(y.argmax(1) == ref.argmax(1))),
                "build_s": time.perf_counter() - t0,
                "weights": res.report.weight_correction}), flush=True)
            del res
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
