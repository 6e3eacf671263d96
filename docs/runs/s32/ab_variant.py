"""Session 32: torchvision models built with the planner as it is ("base") and with one rule
patched in ("variant", see VARIANTS), each build in its own process with the timing under
the lock, the two alternating for ``--rounds`` rounds (median of 30 ``res.benchmark`` calls
per process); logits checked against torch::

    cd /tmp && TVM_NUM_THREADS=2 python /work/main/docs/runs/s32/ab_variant.py --variant osplit \\
        --rounds 3 --models resnet50:1 mobilenet_v2:1
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys

import numpy as np


def _osplit():
    # Unpadded float convs whose weights outweigh their input split output channels even
    # where the weights fit the L2 share (no "rows like neighbours").
    from aiq_tvm.targets.x86 import conv2d
    conv2d._rows_like_neighbours = lambda *a: False


def _noflat():
    # Pointwise convs planned on their rows only (no flat_spec plans).
    os.environ["AIQ_FLAT_POINTWISE"] = "0"


def _flat():
    # flat_spec plans offered (opt-in since they did not pay in whole networks).
    os.environ["AIQ_FLAT_POINTWISE"] = "1"


VARIANTS = {"base": lambda: None, "osplit": _osplit, "noflat": _noflat, "flat": _flat}


def worker(variant: str, name: str, plan: str, batch: int) -> None:
    import torch

    import aiq_tvm
    from aiq_tvm.models import torchvision_zoo as zoo

    VARIANTS[variant]()
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
    print(json.dumps({"ms": ms, "rel_err": float(np.abs(y - r).max() / np.abs(r).max())}),
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["resnet50:1"], help="NAME:BATCH")
    ap.add_argument("--plans", nargs="+", default=["fp32"])
    ap.add_argument("--variant", default="osplit", choices=[v for v in VARIANTS if v != "base"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--lock", default="/work/bench.lock")
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.worker[2], int(args.worker[3]))
        return
    env = dict(os.environ, AIQ_LOCK=args.lock)
    for spec in args.models:
        name, batch = spec.split(":")
        for plan in args.plans:
            runs: dict[str, list] = {"base": [], args.variant: []}
            for _ in range(args.rounds):
                for label in runs:
                    out = subprocess.run([sys.executable, __file__, "--worker", label, name,
                                          plan, batch], capture_output=True, text=True,
                                         env=env, check=True)
                    runs[label].append(json.loads(out.stdout.strip().splitlines()[-1]))
            med = {k: float(np.median([r["ms"] for r in v])) for k, v in runs.items()}
            parts = []
            for k, v in runs.items():
                times = ", ".join(f"{r['ms']:.3f}" for r in v)
                parts.append(f"{k} {med[k]:.3f} ms (runs {times}; rel err {v[0]['rel_err']:.1e})")
            print(f"{name} {plan} b{batch}: " + "; ".join(parts)
                  + f"; base/{args.variant} {med['base'] / med[args.variant]:.3f}x", flush=True)


if __name__ == "__main__":
    main()
