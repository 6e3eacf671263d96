"""Whole-model A/B of the kernel-column fold (``conv2d._fold_kw``) in one process.

Builds each torchvision model at int8 twice, with the fold and with ``_fold_kw`` forced off
(same calibration), checks the outputs are equal and times both interleaved (``--rounds``
rounds of 150 ms) under one hold of ``--lock`` per batch. Prints medians and spreads::

    TVM_NUM_THREADS=1 python scripts/bench_fold_kw.py --clock cpu --models resnet18 resnet50
"""

from __future__ import annotations

import argparse
import fcntl
import os

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="cpu")
    ap.add_argument("--lock", default="/work/bench.lock")
    args = ap.parse_args()
    os.environ.setdefault("TVM_NUM_THREADS", "1")
    from aiq_tvm.threads import unpin_tvm_threads

    unpin_tvm_threads()
    import torch
    import tvm

    import aiq_tvm
    from aiq_tvm.bench import Timer
    from aiq_tvm.models import torchvision_zoo as zoo
    from aiq_tvm.targets.x86 import conv2d as conv_mod

    fold = conv_mod._fold_kw
    for name in args.models:
        calib = zoo.calibration_images(32, 224)
        mod, params = aiq_tvm.from_torch(zoo.torchvision_model(name, size=224),
                                         torch.from_numpy(calib[:2]))
        builds, cal = {}, None
        for tag, rule in (("fold", fold), ("nofold", lambda spec, fmt: False)):
            conv_mod._fold_kw = rule
            builds[tag] = aiq_tvm.build(mod, params=params, plan="int8", calib_data=calib,
                                        calibration=cal or "percentile", eval_batch_size=16)
            cal = builds[tag].calibration or cal
            for bs in args.batches:
                builds[tag].executable(bs)  # compiled under this rule
        conv_mod._fold_kw = fold
        for bs in args.batches:
            x = tvm.runtime.tensor(np.resize(calib, (bs, 3, 224, 224)).astype("float32"))
            fns = {t: b.vm(bs)["main"] for t, b in builds.items()}
            same = np.array_equal(fns["fold"](x).numpy(), fns["nofold"](x).numpy())
            timers = {t: Timer(lambda f=f, x=x: f(x), args.clock) for t, f in fns.items()}
            ms: dict[str, list] = {t: [] for t in timers}
            with open(args.lock) as lk:
                fcntl.flock(lk, fcntl.LOCK_EX)
                for _ in range(args.rounds):
                    for t, timer in timers.items():
                        ms[t].append(timer(150) * 1e3)
            med = {t: float(np.median(v)) for t, v in ms.items()}
            print(f"{name} int8 b{bs} {args.clock} TVM_NUM_THREADS="
                  f"{os.environ['TVM_NUM_THREADS']}: " + ", ".join(
                      f"{t} {med[t]:.3f} ms ({min(v):.3f}-{max(v):.3f})" for t, v in ms.items())
                  + f", nofold/fold {med['nofold'] / med['fold']:.3f}x, outputs equal {same}",
                  flush=True)


if __name__ == "__main__":
    main()
