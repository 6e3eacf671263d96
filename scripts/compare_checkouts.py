"""One torchvision model built by two checkouts, timed in alternating rounds.

On a shared host two separate ``scripts/bench_models.py`` runs differ by more than a small
change does (other jobs' builds share the caches and memory bandwidth even on the CPU clock).
This builds the model once per checkout, each in its own process started with that
checkout's interpreter (a venv whose ``aiq_tvm`` is the checkout), then alternates rounds
between them under the lock and prints both medians and the median of the per-round ratios::

    python scripts/compare_checkouts.py --model efficientnet_b0 --plan fp32 --batch 1 \\
        before=/work/main/.venv/bin/python after=/work/wt/NAME/.venv/bin/python

One thread, process CPU time by default (``TVM_NUM_THREADS=1`` is set for the workers);
``--threads 2 --clock wall`` compares the two-thread builds (pool threads unpinned, as
``scripts/bench_models.py`` runs them).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import subprocess
import sys
import time

import numpy as np


def worker(model: str, plan: str, batch: int, clock: str) -> None:
    """Build, report the logits' smallest cosine to torch's, then time on request ('MS')."""
    import torch
    import tvm

    import aiq_tvm
    from aiq_tvm.bench import Timer
    from aiq_tvm.models import torchvision_zoo as zoo

    torch.set_num_threads(1)
    net = zoo.torchvision_model(model, size=224)
    xc = zoo.calibration_images(32, 224)
    mod, params = aiq_tvm.from_torch(net, torch.from_numpy(xc[:2]))
    built = aiq_tvm.build(mod, params=params, plan=plan, calib_data=xc,
                          calibration="percentile", eval_batch_size=16)
    x = np.ascontiguousarray(np.resize(xc, (batch, *xc.shape[1:])), np.float32)
    f, arg = built.vm(batch)["main"], tvm.runtime.tensor(x)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    y = f(arg).numpy()
    cos = (y * ref).sum(1) / (np.linalg.norm(y, axis=1) * np.linalg.norm(ref, axis=1))
    print(f"ready, smallest cosine to torch {cos.min():.4f}", flush=True)
    timer = Timer(lambda: f(arg), clock)
    for line in sys.stdin:
        print(f"{timer(float(line)) * 1e3:.4f}", flush=True)


def _start(python: str, args) -> subprocess.Popen:
    env = dict(os.environ, TVM_NUM_THREADS=str(args.threads))
    env.setdefault("TVM_BIND_THREADS", "0")  # as unpin_tvm_threads (docs/threading.md)
    return subprocess.Popen([python, os.path.abspath(__file__), "--worker", "--model", args.model,
                             "--plan", args.plan, "--batch", str(args.batch),
                             "--clock", args.clock],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                            cwd="/")


def compare(args) -> None:
    sides = {}
    for item in args.checkouts:
        label, sep, python = item.partition("=")
        if not sep or not python:
            raise SystemExit(f"{item!r}: expected LABEL=PYTHON (e.g. before=main/.venv/bin/python)")
        sides[label] = python
    if len(sides) != 2:
        raise SystemExit("give exactly two LABEL=PYTHON checkouts")
    procs = {label: _start(py, args) for label, py in sides.items()}
    for label, p in procs.items():
        line = p.stdout.readline().strip()
        if not line.startswith("ready"):
            raise SystemExit(f"{label}: worker failed (see its stderr above)")
        print(f"{label}: {line}", flush=True)
    samples: dict[str, list[float]] = {label: [] for label in procs}
    with open(args.lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        for _ in range(args.rounds):
            for label, p in procs.items():
                time.sleep(0.1)
                p.stdin.write(f"{args.round_ms}\n")
                p.stdin.flush()
                samples[label].append(float(p.stdout.readline()))
    for p in procs.values():
        p.stdin.close()
        p.wait()
    (a, ta), (b, tb) = samples.items()
    ratio = float(np.median(np.array(tb) / np.array(ta)))
    print(f"{args.model} {args.plan} batch {args.batch}, {args.threads} thread(s), "
          f"{args.clock} clock, median of {args.rounds} rounds: "
          f"{a} {np.median(ta):.3f} ms, {b} {np.median(tb):.3f} ms, {b}/{a} per round {ratio:.3f}")
    # Under intermittent load from other jobs the fastest rounds are the least disturbed ones.
    low = {k: float(np.percentile(v, 10)) for k, v in samples.items()}
    print(f"10th percentiles: {a} {low[a]:.3f} ms, {b} {low[b]:.3f} ms, {b}/{a} "
          f"{low[b] / low[a]:.3f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkouts", nargs="*", help="LABEL=PYTHON, two of them")
    ap.add_argument("--model", default="efficientnet_b0", help="torchvision model name")
    ap.add_argument("--plan", default="fp32", help="uniform precision")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--round-ms", type=float, default=300.0)
    ap.add_argument("--lock", default="/work/bench.lock")
    ap.add_argument("--threads", type=int, default=1, help="TVM_NUM_THREADS of the workers")
    ap.add_argument("--clock", default="cpu", choices=("cpu", "wall"),
                    help="process CPU time (one thread) or wall time (several)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.threads < 1:
        raise SystemExit(f"--threads must be at least 1, got {args.threads}")
    if args.worker:
        worker(args.model, args.plan, args.batch, args.clock)
    else:
        compare(args)


if __name__ == "__main__":
    main()
