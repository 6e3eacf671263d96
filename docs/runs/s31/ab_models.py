"""Session 31: torchvision classification models built by two checkouts (before: the
session's start; after: this session's Winograd changes), each build in its own process with
the timing under the lock, the checkouts alternating for ``--rounds`` rounds. Each process
builds one plan at one batch size, checks the logits against torch (relative error; cosine)
and times ``res.benchmark`` (median of 30 calls).

    cd /tmp && python /work/main/docs/runs/s31/ab_models.py --rounds 3 --models resnet50:8 \\
        --checkouts before=/tmp/s31/oldvenv/bin/python after=/work/main/.venv/bin/python

Run from outside the repository so each interpreter imports its own checkout.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys

import numpy as np


def worker(name: str, plan: str, batch: int) -> None:
    import torch

    import aiq_tvm
    from aiq_tvm.models import torchvision_zoo as zoo

    size = 299 if name == "inception_v3" else 224
    model = zoo.torchvision_model(name, size=size)
    calib = zoo.calibration_images(32, size)
    x, _ = zoo.validation_images(batch, size)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
    res = aiq_tvm.build(mod, "llvm", params=params, plan=plan, calib_data=calib,
                        batch_size=batch)
    y = res.run(x).reshape(-1).astype(np.float64)
    r = ref.reshape(-1).astype(np.float64)
    with open(os.environ["AIQ_LOCK"], "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        ms = res.benchmark(batch_size=batch, repeat=30)["median_ms"]
    print(json.dumps({"ms": ms, "rel_err": float(np.abs(y - r).max() / np.abs(r).max()),
                      "cos": float(y @ r / np.linalg.norm(y) / np.linalg.norm(r))}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["resnet50:8"], help="NAME:BATCH")
    ap.add_argument("--plans", nargs="+", default=["fp32"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--lock", default="/work/bench.lock")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--checkouts", nargs="+", default=[], help="LABEL=PYTHON")
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], int(args.worker[2]))
        return
    pythons = dict(c.split("=", 1) for c in args.checkouts)
    env = dict(os.environ, AIQ_LOCK=args.lock)
    for spec in args.models:
        name, batch = spec.split(":")
        for plan in args.plans:
            runs: dict[str, list] = {k: [] for k in pythons}
            for _ in range(args.rounds):
                for label, py in pythons.items():
                    out = subprocess.run([py, __file__, "--worker", name, plan, batch],
                                         capture_output=True, text=True, env=env, check=True)
                    runs[label].append(json.loads(out.stdout.strip().splitlines()[-1]))
            line = [f"{name} {plan} b{batch}:"]
            for label, recs in runs.items():
                ms = float(np.median([r["ms"] for r in recs]))
                times = ", ".join(f"{r['ms']:.3f}" for r in recs)
                line.append(f"{label} {ms:.3f} ms (runs {times}; rel err {recs[0]['rel_err']:.1e},"
                            f" cos {recs[0]['cos']:.4f})")
            labels = list(runs)
            if len(labels) == 2:
                a, b = (float(np.median([r["ms"] for r in runs[k]])) for k in labels)
                line.append(f"{labels[0]}/{labels[1]} x{a / b:.2f}")
            print(" | ".join(line), flush=True)


if __name__ == "__main__":
    sys.exit(main())
