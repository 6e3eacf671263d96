"""Session 30: torchvision segmentation models at batch 1, built by two checkouts (before: no
dilated kernels, TOPI's resize; after: this session's), FP32 and INT8, each build in its own
process under the lock, the checkouts alternating. Each process builds, checks its logits
against torch (relative error FP32, smallest cosine INT8) and times ``res.benchmark``.

    python docs/runs/s30/seg_before_after.py --rounds 1 --models lraspp_mobilenet_v3_large \\
        deeplabv3_mobilenet_v3_large fcn_resnet50 --checkouts before=/tmp/s30/oldvenv/bin/python \\
        after=/work/main/.venv/bin/python

Run from outside the repository (``cd /tmp``) so each interpreter imports its own checkout.
Output: seg_before_after.txt.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys

import numpy as np


def worker(name: str, plan: str, size: int) -> None:
    import torch
    import torchvision

    import aiq_tvm
    from aiq_tvm.models import torchvision_zoo as zoo

    class Out(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.model = m

        def forward(self, x):
            return self.model(x)["out"]

    torch.manual_seed(0)
    model = Out(torchvision.models.get_model(name, weights=None, weights_backbone=None,
                                             num_classes=21, aux_loss=False))
    zoo.set_bn_statistics(model, zoo.calibration_images(32, size, seed=1))
    model.eval()
    calib = zoo.calibration_images(32, size)
    x, _ = zoo.validation_images(1, size)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
    res = aiq_tvm.build(mod, "llvm", params=params, plan=plan, calib_data=calib, batch_size=1)
    y = res.run(x).reshape(-1).astype(np.float64)
    r = ref.reshape(-1).astype(np.float64)
    unsupported = [lc.name for lc in res.cost.layers if not lc.supported]
    with open(os.environ["AIQ_LOCK"], "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        ms = res.benchmark(batch_size=1, repeat=30)["median_ms"]
    print(json.dumps({"ms": ms, "rel_err": float(np.abs(y - r).max() / np.abs(r).max()),
                      "cos": float(y @ r / np.linalg.norm(y) / np.linalg.norm(r)),
                      "fp32_layers": len(unsupported)}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["lraspp_mobilenet_v3_large"])
    ap.add_argument("--plans", nargs="+", default=["fp32", "int8"])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--lock", default="/work/bench.lock")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--checkouts", nargs="+", default=[], help="LABEL=PYTHON")
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], int(args.worker[2]))
        return
    pythons = dict(c.split("=", 1) for c in args.checkouts)
    env = dict(os.environ, AIQ_LOCK=args.lock)
    for name in args.models:
        for plan in args.plans:
            runs: dict[str, list] = {k: [] for k in pythons}
            for _ in range(args.rounds):
                for label, py in pythons.items():
                    out = subprocess.run([py, __file__, "--worker", name, plan, str(args.size)],
                                         capture_output=True, text=True, env=env, check=True)
                    runs[label].append(json.loads(out.stdout.strip().splitlines()[-1]))
            line = [f"{name} {plan} b1:"]
            for label, recs in runs.items():
                ms = float(np.median([r["ms"] for r in recs]))
                times = ", ".join(f"{r['ms']:.3f}" for r in recs)
                line.append(f"{label} {ms:.3f} ms (runs {times};"
                            f" rel err {recs[0]['rel_err']:.1e}, cos {recs[0]['cos']:.4f},"
                            f" FP32-only layers {recs[0]['fp32_layers']})")
            labels = list(runs)
            if len(labels) == 2:
                a, b = (float(np.median([r["ms"] for r in runs[k]])) for k in labels)
                line.append(f"{labels[0]}/{labels[1]} x{a / b:.2f}")
            print(" | ".join(line), flush=True)


if __name__ == "__main__":
    sys.exit(main())
