"""Does TVM's thread pinning (TVM_BIND_THREADS) change our build's speed? Times it both ways.

Each case runs ``--procs`` fresh interpreters (the pinning is decided when a process starts
its thread pool): build ResNet-20 at uniform int8 and print ``--repeats`` consecutive
``BuildResult.benchmark(1)`` medians.  ``TVM_BIND_THREADS=1`` is TVM's default (pool workers
pinned to cores, the calling thread not); our benchmark entry points (``aiq-tvm run``,
``scripts/bench_*.py``, via ``aiq_tvm.threads.unpin_tvm_threads``) set 0 unless the user chose
a value; ``import aiq_tvm`` alone sets nothing.

    TVM_NUM_THREADS=2 python scripts/check_thread_binding.py --out docs/threading.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
from pathlib import Path

CHILD = """
import torch
import aiq_tvm
from aiq_tvm import datasets, models
model = models.resnet20(pretrained=True)
mod, params = aiq_tvm.from_torch(model, torch.randn(2, 3, 32, 32))
calib, _ = datasets.calibration_set(128)
res = aiq_tvm.build(mod, "llvm", params=params, plan="int8", calib_data=calib)
print(" ".join(f"{{res.benchmark(1)['median_ms']:.4f}}" for _ in range({repeats})))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", type=int, default=4, help="fresh processes per setting")
    ap.add_argument("--repeats", type=int, default=4, help="benchmark() medians per process")
    ap.add_argument("--out", default="", help="also write the output to this Markdown file")
    args = ap.parse_args()
    os.environ.setdefault("TVM_NUM_THREADS", "2")
    lines = [f"TVM_NUM_THREADS={os.environ['TVM_NUM_THREADS']}; ResNet-20 uniform int8, batch 1, "
             f"ms per inference ({args.repeats} consecutive benchmark() medians per process)"]
    print(lines[0], flush=True)
    for bind in ("1", "0"):
        for i in range(args.procs):
            env = dict(os.environ, TVM_BIND_THREADS=bind)
            out = subprocess.run([sys.executable, "-c", CHILD.format(repeats=args.repeats)],
                                 env=env, capture_output=True, text=True, check=True)
            times = out.stdout.strip().splitlines()[-1]
            line = f"TVM_BIND_THREADS={bind}  process {i + 1}: {times}"
            print(line, flush=True)
            lines.append(line)
    if args.out:
        cmd = (f"TVM_NUM_THREADS={os.environ['TVM_NUM_THREADS']} python "
               f"scripts/check_thread_binding.py {' '.join(sys.argv[1:])}")
        Path(args.out).write_text(
            "# TVM thread pinning\n\n"
            f"Command: `{cmd}`\n\nDate: {datetime.date.today().isoformat()}.\n\n"
            "```\n" + "\n".join(lines) + "\n```\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
