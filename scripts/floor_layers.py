"""What ``speed_floor`` does to a plan, from the kernel library's cost model alone (no build).

For each model and batch size: every searchable layer's modelled kernel cycles at the plan's
precision and at the floor precision (``aiq_tvm.floor.layer_cycles``, i.e. ``conv2d_cycles``
/ ``dense_cycles`` on the target), the layers the floor moves, and the plan's AI before and
after (``CostModel.ai``)::

    python scripts/floor_layers.py --plan tv/resnet18=docs/runs/tv_resnet18_int8int4_ai_plan.json \\
        --batches 1 8 --floor int8 --target '{"kind":"llvm","mcpu":"znver4","num-cores":2}'
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _target(text: str):
    """(TVM target, its preset)."""
    from aiq_tvm.targets import resolve_target

    return resolve_target(json.loads(text) if text.startswith("{") else text)


def model_rows(name: str, plan, batch: int, floor: str, target, image_size: int,
               preset=None) -> dict:  # fmt: skip
    """The floor's effect on ``plan`` for one model at one batch size."""
    import torch
    from bench_models import load_model

    import aiq_tvm
    from aiq_tvm._ir import specialize_batch
    from aiq_tvm.analysis import cost_model
    from aiq_tvm.compiler import prepare
    from aiq_tvm.floor import describe_floor_memory, floor_memory, floor_plan, layer_cycles

    model, xc = load_model(name, image_size)
    mod, _ = aiq_tvm.from_torch(model, torch.from_numpy(xc[:2]))
    cost = cost_model(specialize_batch(prepare(mod), batch), requant_fusion=True)
    before = cost.full_assignment(plan.resolve(cost.names))
    after, moves = floor_plan(before, cost, floor, target, preset)
    read = floor_memory(cost, floor, target, preset)[1]
    layers = []
    for n in cost.searchable:
        p = before[n]
        layers.append({"layer": n, "precision": p,
                       "cycles": layer_cycles(cost[n], p, target, read),
                       "floor_cycles": layer_cycles(cost[n], floor, target, read)})
    return {"model": name, "batch": batch, "floor": floor,
            "weight_reads": describe_floor_memory(cost, floor, target, preset),
            "ai_before": cost.ai(before),
            "ai_after": cost.ai(after), "ai_fp32": cost.fp32_ai(),
            "moved": [m.to_dict() for m in moves], "layers": layers}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plan", action="append", required=True, metavar="MODEL=PLAN.json")
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--floor", default="int8")
    ap.add_argument("--target", default="llvm")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--all-layers", action="store_true", help="print every layer's cycles")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from aiq_tvm import Plan

    target, preset = _target(args.target)
    out = []
    for spec in args.plan:
        name, _, path = spec.partition("=")
        for bs in args.batches:
            r = model_rows(name, Plan.load(path), bs, args.floor, target, args.image_size,
                           preset)  # fmt: skip
            out.append(r)
            print(r["weight_reads"])
            low = sum(lay["precision"] != args.floor for lay in r["layers"])
            print(f"{name} batch {bs}: floor {args.floor} moves {len(r['moved'])} of {low} "
                  f"non-{args.floor} layers; plan AI {r['ai_before']:.2f} -> "
                  f"{r['ai_after']:.2f} FLOP/B (x{r['ai_before'] / r['ai_fp32']:.3f} -> "
                  f"x{r['ai_after'] / r['ai_fp32']:.3f} of fp32)")
            for lay in r["layers"]:
                if lay["cycles"] is None or (lay["precision"] == args.floor
                                             and not args.all_layers):
                    continue
                ratio = lay["cycles"] / lay["floor_cycles"]
                moved = any(m["layer"] == lay["layer"] for m in r["moved"])
                print(f"  {lay['layer']:<28} {lay['precision']:<5} {lay['cycles'] / 1e3:9.1f} "
                      f"kcyc vs {args.floor} {lay['floor_cycles'] / 1e3:9.1f} kcyc  "
                      f"x{ratio:.3f}{'  MOVED' if moved else ''}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
