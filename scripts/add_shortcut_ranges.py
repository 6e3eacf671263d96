"""Add shortcut ranges to a torchvision model's calibration file saved before they existed.

Since commit 5583d26 a calibration also holds the range of every fused shortcut that no layer
reads as data (``Calibration.residual_ranges``: a downsample conv's output), and builds write
those shortcuts as uint8. A file saved before (``scripts/search_torchvision_plan.py``'s
``<out>_calibration.json``) has none, so builds from it keep them float32. This measures the
calibration again, with the file's method and percentile, on the same images (the seeded
torchvision model and ``zoo.calibration_images(num_samples, size)``, as the search did). It
checks that every layer range it finds matches the file's within ``--rtol`` of the range's
width, and then writes the shortcut ranges into the file. The check catches another model or
other images, not sampling noise: ``percentile`` ranges come from a value sample, and a
re-measure of ResNet-18's file differed by up to 1.3 % of a range's width. Every other field
stays as it was, so plans built from the file keep their layer ranges::

    python scripts/add_shortcut_ranges.py --model resnet50 \\
        docs/runs/tv_resnet50_int8int4_ai_calibration.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def range_mismatches(old: dict, new: dict, rtol: float) -> list[str]:
    """Layers whose range differs between the two (``rtol`` of the range's width), or that
    only one of them has."""
    bad = sorted(set(old) ^ set(new))
    for name in sorted(set(old) & set(new)):
        (lo0, hi0), (lo1, hi1) = old[name], new[name]
        width = max(hi0 - lo0, 1e-12)
        if abs(lo0 - lo1) > rtol * width or abs(hi0 - hi1) > rtol * width:
            bad.append(f"{name}: file ({lo0:.6g}, {hi0:.6g}), measured ({lo1:.6g}, {hi1:.6g})")
    return bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("calibration", help="calibration JSON to update in place")
    ap.add_argument("--model", required=True, help="torchvision model name")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=16,
                    help="calibration batch (search_torchvision_plan.py's --batch)")
    ap.add_argument("--rtol", type=float, default=0.03,
                    help="largest layer-range difference, as a share of the range's width")
    args = ap.parse_args(argv)

    import torch

    import aiq_tvm
    from aiq_tvm import phases
    from aiq_tvm.calibrate import Calibration
    from aiq_tvm.config import BuildConfig
    from aiq_tvm.models import torchvision_zoo as zoo

    path = Path(args.calibration)
    data = json.loads(path.read_text())
    saved = Calibration.from_dict(data)
    if saved.residual_ranges:
        print(f"{path} already has {len(saved.residual_ranges)} shortcut ranges; unchanged")
        return 0
    model = zoo.torchvision_model(args.model, size=args.size)
    images = np.asarray(zoo.calibration_images(saved.num_samples, args.size))
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(images[:2]))
    cfg = BuildConfig(plan="int8", calibration=saved.method, percentile=saved.percentile,
                      weight_correction="none", eval_batch_size=args.batch)
    measured = phases.calibrate(phases.resolve(mod, params, images, None, cfg))
    bad = range_mismatches(saved.ranges, measured.ranges, args.rtol)
    if bad:
        print(f"{path}: {len(bad)} layer range(s) differ from the file's, so these are not the "
              f"images or model it was measured on; unchanged:\n  " + "\n  ".join(bad[:10]))
        return 1
    data["residual_ranges"] = {k: list(v) for k, v in measured.residual_ranges.items()}
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"{path}: {len(saved.ranges)} layer ranges match (rtol {args.rtol:g}); added "
          f"{len(measured.residual_ranges)} shortcut ranges: "
          + ", ".join(sorted(measured.residual_ranges)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
