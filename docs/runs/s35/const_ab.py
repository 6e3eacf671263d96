"""Session 35: one torchvision model built with a cost-model constant at its default ("a") and
at another value ("b"), whole inferences timed in alternating rounds in one process (medians
of ``benchmark``; the ratio is a / b), outputs compared, and their
largest difference relative to the largest output.

    TVM_NUM_THREADS=2 flock /work/bench.lock python docs/runs/s35/const_ab.py \\
        MODEL BATCH PLAN ROUNDS SIZE MODULE:NAME=VALUE [TARGET_JSON]

e.g. ``tv/wide_resnet50_2 1 fp32 7 224 aiq_tvm.targets.x86.winograd:MEMORY_BYTES_PER_CYCLE=8.4``.
Output: one JSON line (const_ab.jsonl).
"""
import importlib
import json
import sys

import numpy as np

sys.path.insert(0, "scripts")
import torch  # noqa: E402
from bench_models import load_model  # noqa: E402

import aiq_tvm  # noqa: E402


def main(argv: list[str]) -> None:
    model_name, bs, prec, rounds, size = argv[0], int(argv[1]), argv[2], int(argv[3]), int(argv[4])
    modname, assign = argv[5].split(":")
    target = json.loads(argv[6]) if len(argv) > 6 else "llvm"
    name, value = assign.split("=")
    module = importlib.import_module(modname)
    default = getattr(module, name)
    model, xc = load_model(model_name, size)
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(xc[:1]))
    builds = {}
    for flag, val in (("a", default), ("b", type(default)(value))):
        setattr(module, name, val)
        builds[flag] = aiq_tvm.build(mod, target, params=params, plan=prec,
                                     calib_data=xc[:16], batch_size=bs)
    setattr(module, name, default)
    x = np.ascontiguousarray(np.concatenate([xc] * 8)[:bs])
    outs = {f: np.asarray(b.run(x)) for f, b in builds.items()}
    times = {f: [] for f in builds}
    for r in range(rounds):
        for f in (("a", "b") if r % 2 == 0 else ("b", "a")):
            times[f].append(builds[f].benchmark(bs, repeat=10, min_repeat_ms=200,
                                                x=x)["median_ms"])
    med = {f: float(np.median(v)) for f, v in times.items()}
    rel = float(np.abs(outs["a"] - outs["b"]).max() / np.abs(outs["a"]).max())
    print(json.dumps({"model": model_name, "batch": bs, "plan": prec, "size": size,
                      "change": argv[5], "target": target, "a_ms": med["a"], "b_ms": med["b"],
                      "a_over_b": med["a"] / med["b"], "rel_diff": rel,
                      "rounds": {f: [round(t, 3) for t in v] for f, v in times.items()}}))


if __name__ == "__main__":
    main(sys.argv[1:])
