"""Where does a torchvision model's INT8 error come from? Per-layer cosine to torch's logits.

Builds the model's switchable module (every layer compiled at fp32, int8 and w8 behind a
runtime switch, float32 between layers, as the plan search uses it) and prints the smallest
cosine similarity to torch's logits over the validation images (as scripts/check_torchvision.py
measures it) for: everything int8, everything w8 (int8 weights, float activations: the weight
share of the error), and each layer alone at int8 and at w8 (the others fp32). With
``--residuals`` it also builds uniform int8 with and without uint8 residual shortcuts
(``QuantizeAnnotated(requant_residuals=...)``).

    TVM_NUM_THREADS=2 python scripts/diagnose_int8.py --model mobilenet_v2 --residuals \
        --json /work/runs/diag_mobilenet_v2.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_torchvision import min_cosine  # noqa: E402


def _residual_builds(mod, params, calib, x, ref, calibration: str, batch: int) -> dict:
    """Uniform int8 min cosine with and without uint8 residual shortcuts."""
    import aiq_tvm
    from aiq_tvm import pipeline
    from aiq_tvm.passes import QuantizeAnnotated

    out = {}
    try:
        for requant in (True, False):
            pipeline.QuantizeAnnotated = functools.partial(QuantizeAnnotated,
                                                           requant_residuals=requant)
            res = aiq_tvm.build(mod, params=params, plan="int8", calib_data=calib,
                                batch_size=batch, eval_batch_size=batch,
                                calibration=calibration)
            out[f"int8_requant_residuals_{requant}"] = min_cosine(res.run(x, batch), ref)
            print(f"uniform int8 build, requant_residuals={requant}: min cos "
                  f"{out[f'int8_requant_residuals_{requant}']:.4f}", flush=True)
    finally:
        pipeline.QuantizeAnnotated = QuantizeAnnotated
    return out


def per_layer(mod, params, calib, x, ref, calibration: str, batch: int) -> dict:
    """Switchable module: all int8, all w8, and each layer alone at int8 / w8."""
    import tvm

    from aiq_tvm import phases
    from aiq_tvm.config import BuildConfig
    from aiq_tvm.passes import select_vector
    from aiq_tvm.runtime import run_batches

    cfg = BuildConfig(precisions=["fp32", "int8", "w8"], calibration=calibration,
                      batch_size=batch, eval_batch_size=batch)
    labels = np.zeros(len(x), np.int64)
    ctx = phases.resolve(mod, params, calib, (x, labels), cfg)
    cal = phases.calibrate(ctx)
    layers = list(ctx.cost.searchable)
    choices = cfg.choices(layers)
    main = phases._switchable_main(ctx, cal, choices)

    def cos(assignment):
        sel = tvm.runtime.tensor(select_vector(layers, choices, assignment))
        return min_cosine(run_batches(lambda a: main(a, sel), x, batch, tvm.cpu()), ref)

    out = {"all_int8": cos({n: "int8" for n in layers}),
           "all_w8": cos({n: "w8" for n in layers}), "layers": []}
    print(f"switchable: all int8 {out['all_int8']:.4f}, all w8 {out['all_w8']:.4f}", flush=True)
    for i, name in enumerate(layers):
        row = {"layer": name, "int8_alone": cos({name: "int8"}),
               "w8_alone": cos({name: "w8"}), "range": cal.ranges[name]}
        out["layers"].append(row)
        print(f"{i:3d} {name:40s} int8 alone {row['int8_alone']:.4f}  w8 alone "
              f"{row['w8_alone']:.4f}  input range ({row['range'][0]:.3g}, "
              f"{row['range'][1]:.3g})", flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="torchvision model name")
    ap.add_argument("--calibration", default="mse", help="minmax, percentile or mse")
    ap.add_argument("--val", type=int, default=16)
    ap.add_argument("--calib", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--residuals", action="store_true",
                    help="also compare uniform int8 builds with and without uint8 shortcuts")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    import aiq_tvm
    from aiq_tvm.models import torchvision_zoo as zoo

    model = zoo.torchvision_model(args.model)
    calib = zoo.calibration_images(args.calib)
    x, _ = zoo.validation_images(args.val)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
    out = {"model": args.model, "calibration": args.calibration}
    if args.residuals:
        out.update(_residual_builds(mod, params, calib, x, ref, args.calibration, args.batch))
    out.update(per_layer(mod, params, calib, x, ref, args.calibration, args.batch))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
