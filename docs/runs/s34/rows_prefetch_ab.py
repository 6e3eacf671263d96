"""Session 34: one torchvision model built without and with the rows-first weight prefetch
(``prefetch.ROWS_FIRST_MIN_BYTES`` raised past any layer for "off"; the other prefetch
pattern stays on in both), whole inferences timed in alternating rounds in one process
(medians of ``benchmark``; the ratio is off / on), outputs compared bit for bit, and the
kernels the rewrite changed counted.

    TVM_NUM_THREADS=2 flock /work/bench.lock \\
        python docs/runs/s34/rows_prefetch_ab.py MODEL BATCH PLAN [ROUNDS]

Output: rows_prefetch_ab.jsonl.
"""
import json
import sys

import numpy as np

sys.path.insert(0, "scripts")
import torch  # noqa: E402
from bench_models import load_model  # noqa: E402

import aiq_tvm  # noqa: E402
from aiq_tvm.targets.x86 import prefetch  # noqa: E402


def main(argv: list[str]) -> None:
    model_name, bs, prec = argv[0], int(argv[1]), argv[2]
    rounds = int(argv[3]) if len(argv) > 3 else 7
    model, xc = load_model(model_name, 224)
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(xc[:1]))
    default = prefetch.ROWS_FIRST_MIN_BYTES
    builds, rewritten = {}, {}
    for flag, min_bytes in (("off", 1 << 62), ("on", default)):
        prefetch.ROWS_FIRST_MIN_BYTES = min_bytes
        calls = []
        real = prefetch._ssa  # called once per kernel the rows-first rewrite changed

        def counted(func, real=real, calls=calls):
            calls.append(1)
            return real(func)

        prefetch._ssa = counted
        builds[flag] = aiq_tvm.build(mod, "llvm", params=params, plan=prec,
                                     calib_data=xc[:16], batch_size=bs)
        prefetch._ssa = real
        rewritten[flag] = len(calls)
    prefetch.ROWS_FIRST_MIN_BYTES = default
    x = np.ascontiguousarray(np.concatenate([xc] * 8)[:bs])
    outs = {f: np.asarray(b.run(x)) for f, b in builds.items()}
    times = {f: [] for f in builds}
    for r in range(rounds):
        for f in (("off", "on") if r % 2 == 0 else ("on", "off")):
            times[f].append(builds[f].benchmark(bs, repeat=10, min_repeat_ms=200,
                                                x=x)["median_ms"])
    med = {f: float(np.median(v)) for f, v in times.items()}
    print(json.dumps({"model": model_name, "batch": bs, "plan": prec, "off_ms": med["off"],
                      "on_ms": med["on"], "off_over_on": med["off"] / med["on"],
                      "kernels_rewritten": rewritten["on"],
                      "same_output": bool(np.array_equal(outs["off"], outs["on"])),
                      "rounds": {f: [round(t, 3) for t in v] for f, v in times.items()}}))


if __name__ == "__main__":
    main(sys.argv[1:])
