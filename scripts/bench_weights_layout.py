"""Inference time of the two export layouts of one build, in one process, interleaved.

One torchvision model (``measure_build.py`` conventions) is built once at one plan and exported
twice: the library with its weights file beside it (the default, ``main`` takes the weights
as arguments) and a single library with the weights embedded (``single_file=True``).  Both
are loaded with ``aiq_tvm.load`` and ``main`` is timed in ``--rounds`` interleaved rounds of
about ``--round-ms`` each (so machine noise hits both alike), on the process CPU time by
default; the medians and their ratio are printed, with a check that both give the same logits.

    TVM_NUM_THREADS=1 flock /work/bench.lock python scripts/bench_weights_layout.py \\
        --model resnet50 --plan int8
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet50", help="torchvision model name")
    ap.add_argument("--plan", default="int8", help="precision (uniform plan)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--calib", type=int, default=32, help="calibration images")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--round-ms", type=float, default=300.0)
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    import tvm

    import aiq_tvm
    from aiq_tvm.bench import Timer, round_orders
    from aiq_tvm.models import torchvision_zoo as zoo
    from aiq_tvm.threads import unpin_tvm_threads

    unpin_tvm_threads()
    model = zoo.torchvision_model(args.model, size=args.size)
    calib = zoo.calibration_images(args.calib, args.size)
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
    res = aiq_tvm.build(mod, params=params, plan=args.plan, calib_data=calib, batch_size=1,
                        eval_batch_size=min(args.calib, 16))
    x = tvm.runtime.tensor(calib[:1])
    with tempfile.TemporaryDirectory() as tmp:
        res.export_library(str(Path(tmp) / "split.so"))
        res.export_library(str(Path(tmp) / "one.so"), single_file=True)
        vms = {"library + weights file": aiq_tvm.load(Path(tmp) / "split.so"),
               "single file": aiq_tvm.load(Path(tmp) / "one.so")}
    fns = {k: vm["main"] for k, vm in vms.items()}
    outs = [f(x).numpy() for f in fns.values()]
    timers = {k: Timer(lambda f=f: f(x), args.clock) for k, f in fns.items()}
    times: dict[str, list[float]] = {k: [] for k in timers}
    for order in round_orders(timers, args.rounds):
        for k in order:
            times[k].append(timers[k](args.round_ms) * 1e3)
    med = {k: float(np.median(v)) for k, v in times.items()}
    rec = {"model": args.model, "plan": args.plan, "clock": args.clock,
           "threads": os.environ.get("TVM_NUM_THREADS", ""), "rounds": args.rounds,
           "median_ms": med, "weights": len(vms["library + weights file"].weights),
           "split_vs_single": med["library + weights file"] / med["single file"],
           "same_logits": bool(np.array_equal(*outs)),
           "command": "python scripts/bench_weights_layout.py " + " ".join(
               argv if argv is not None else sys.argv[1:])}
    print(json.dumps(rec, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
