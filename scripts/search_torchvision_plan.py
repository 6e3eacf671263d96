"""An AIQ plan for a random-weight torchvision model, for the 224 x 224 benchmarks.

The models of ``bench_models.py``'s ``tv/<name>`` (``weights=None``, seeded, BN statistics set
on Fashion-MNIST images resized to ``--size``) have no meaningful accuracy on any labels, so
the search's accuracy oracle is *agreement with the FP32 model*: the validation-pool images
(disjoint from the calibration images) are labelled with PyTorch's FP32 top-1 class, and a
plan's "accuracy" is the share of images whose top-1 it keeps.  Everything else is AIQ's
normal search (``aiq_tvm.build(search=...)``: greedy over fp32/int8/int4 by default, lambda
0.9, the AI objective unless ``--objective`` says otherwise: ``measured`` times every layer
kernel at each candidate precision on this machine at ``--build-batch``, so int4 is chosen
only where it is faster; run that under the bench lock).  Writes ``<out>_plan.json`` and
``<out>_calibration.json``, which
``bench_models.py --plan tv/<name>=<out>_plan.json:<out>_calibration.json`` builds.

    TVM_NUM_THREADS=2 python scripts/search_torchvision_plan.py --model resnet18 \
        --out docs/runs/tv_resnet18_greedy
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="torchvision model name")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--calib", type=int, default=32, help="calibration images")
    ap.add_argument("--val", type=int, default=32, help="validation images (agreement)")
    ap.add_argument("--precisions", nargs="+", default=["fp32", "int8", "int4"])
    ap.add_argument("--search", default="greedy")
    ap.add_argument("--lam", type=float, default=0.9)
    ap.add_argument("--objective", default="ai", help="ai, roofline or measured")
    ap.add_argument("--batch", type=int, default=16, help="batch of the accuracy runs")
    ap.add_argument("--build-batch", type=int, default=1,
                    help="batch size of the build (and of the measured objective's timings)")
    ap.add_argument("--speed-floor", default=None, metavar="P",
                    help="BuildConfig.speed_floor: offer no layer a precision modelled slower "
                    "than P on the target at --build-batch (e.g. int8)")
    ap.add_argument("--out", required=True, help="path prefix of the plan/calibration JSON")
    args = ap.parse_args(argv)
    os.environ.setdefault("TVM_NUM_THREADS", "2")
    # PyTorch's spinning OpenMP workers crawl on a shared host (see scripts/train.py); set
    # before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    import aiq_tvm
    from aiq_tvm.models import torchvision_zoo as zoo

    model = zoo.torchvision_model(args.model, size=args.size)
    calib = zoo.calibration_images(args.calib, args.size)
    x_val, _ = zoo.validation_images(args.val, args.size)
    with torch.no_grad():
        agree = model(torch.from_numpy(x_val)).numpy().argmax(1)
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
    t0 = time.perf_counter()
    res = aiq_tvm.build(mod, params=params, calib_data=calib, val_data=(x_val, agree),
                        precisions=args.precisions, search=args.search, lam=args.lam,
                        objective=args.objective,
                        batch_size=args.build_batch, eval_batch_size=args.batch,
                        speed_floor=args.speed_floor)
    res.plan.save(f"{args.out}_plan.json")
    res.calibration.save(f"{args.out}_calibration.json")
    counts = {p: list(res.plan.resolve(res.cost.names).values()).count(p)
              for p in args.precisions}
    words = " ".join(argv if argv is not None else sys.argv[1:])
    summary = {
        "command": f"TVM_NUM_THREADS={os.environ['TVM_NUM_THREADS']} python "
                   f"scripts/search_torchvision_plan.py {words}",
        "model": args.model, "objective": args.objective, "layers_per_precision": counts,
        "ai_fp32": res.plan.metadata.get("ai_fp32"), "ai_plan": res.plan.metadata.get("ai"),
        "agreement_fp32": res.report.accuracy_fp32, "agreement_plan": res.report.accuracy,
        "evaluations": res.plan.metadata.get("evaluations"),
        "speed_floor": args.speed_floor, "speed_floor_excluded": res.report.floor,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(summary, indent=1))
    with open(f"{args.out}_summary.json", "w") as fh:
        fh.write(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
