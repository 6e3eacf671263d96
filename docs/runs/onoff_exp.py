"""One torchvision model built with an environment switch at ``0`` and at ``1`` (a kernel
feature such as ``AIQ_WEIGHT_PREFETCH`` or ``AIQ_AMX``), whole inferences timed in alternating
rounds in one process (medians of TVM's time_evaluator per round; the ratio is off / on), the
two builds' outputs compared bit for bit. Shared by the sessions' on/off scripts.

    TVM_NUM_THREADS=2 flock /work/bench.lock \\
        python docs/runs/onoff_exp.py ENV_VAR MODEL BATCH PLAN [ROUNDS [TARGET_JSON]]

``TARGET_JSON`` (default ``llvm``, this host) builds for another target this host runs, e.g.
``'{"kind":"llvm","mcpu":"haswell","num-cores":2}'``.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, "scripts")
import torch  # noqa: E402
from bench_models import load_model  # noqa: E402

import aiq_tvm  # noqa: E402


def main(switch: str, argv: list[str]) -> None:
    model_name, bs, prec = argv[0], int(argv[1]), argv[2]
    rounds = int(argv[3]) if len(argv) > 3 else 7
    target = json.loads(argv[4]) if len(argv) > 4 else "llvm"
    model, xc = load_model(model_name, 224)
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(xc[:1]))
    builds = {}
    for flag in ("0", "1"):
        os.environ[switch] = flag
        builds[flag] = aiq_tvm.build(mod, target, params=params, plan=prec,
                                     calib_data=xc[:16], batch_size=bs)
    x = np.ascontiguousarray(np.concatenate([xc] * 8)[:bs])
    outs = {f: b.run(x) for f, b in builds.items()}
    same = bool(np.array_equal(np.asarray(outs["0"]), np.asarray(outs["1"])))
    times = {f: [] for f in builds}
    for r in range(rounds):
        for f in (("0", "1") if r % 2 == 0 else ("1", "0")):
            times[f].append(builds[f].benchmark(bs, repeat=10, min_repeat_ms=200,
                                                x=x)["median_ms"])
    med = {f: float(np.median(v)) for f, v in times.items()}
    where = {} if target == "llvm" else {"target": target}
    print(json.dumps({"model": model_name, "batch": bs, "plan": prec, **where, "off_ms": med["0"],
                      "on_ms": med["1"], "off_over_on": med["0"] / med["1"],
                      "same_output": same,
                      "rounds": {f: [round(t, 3) for t in v] for f, v in times.items()}}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
