"""Ad-hoc (session 29): every kernel call's time inside whole inferences
(``scripts/profile_insitu.py``'s VM instrument, medians of 5 inferences) of a build that runs
the batch whole and of one that runs it in calls of ``M`` (``micro_batch=M``), the calls of
one layer summed over the micro-batches; inputs ``res.example_input``. Output:
insitu_mbv2_fp32_b8_m2.txt::

    TVM_NUM_THREADS=2 flock /work/bench.lock python docs/runs/s29/insitu_mb.py \\
        tv/mobilenet_v2 fp32 8 2
"""
import os
import sys
from collections import defaultdict

os.environ.setdefault("TVM_NUM_THREADS", "2")
import numpy as np  # noqa: E402
import torch  # noqa: E402
import tvm  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "scripts"))
from profile_insitu import insitu_times  # noqa: E402
from profile_layers import _model_and_calibration  # noqa: E402

import aiq_tvm  # noqa: E402


def main():
    name, plan, batch, m = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    model, calib = _model_and_calibration(name, 224, 32)
    calib = np.asarray(calib)
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
    out = {}
    for mb in (None, m):
        res = aiq_tvm.build(mod, "llvm", params=params, plan=plan, calib_data=calib,
                            batch_size=batch, eval_batch_size=16, micro_batch=mb)
        x = tvm.runtime.tensor(res.example_input(batch))
        names, us, plain, _, _ = insitu_times(res.vm(batch), x, 5)
        calls = defaultdict(list)
        for nm, u in zip(names, us, strict=True):
            calls[nm].append(u)
        out[mb] = (names, calls, batch // (mb or batch), plain)
    names, whole, _, plain_whole = out[None]
    _, split, parts, plain_split = out[m]
    print(f"{name} {plan} batch {batch}: plain inference whole {plain_whole:.3f} ms, in calls "
          f"of {m} {plain_split:.3f} ms\n")
    print(f"| kernel | whole us | calls of {m} us (summed) | whole / split |\n|---|---|---|---|")
    seen: dict = defaultdict(int)
    sums = [0.0, 0.0]
    for nm in names:
        k = seen[nm]
        seen[nm] += 1
        per = len(whole[nm])
        a, b = whole[nm][k], sum(split[nm][k + j * per] for j in range(parts))
        sums[0] += a
        sums[1] += b
        print(f"| {nm} | {a:.1f} | {b:.1f} | {a / b:.2f} |")
    extra = {nm: round(sum(v), 1) for nm, v in split.items() if nm not in whole}
    print(f"\nsums: whole {sums[0] / 1e3:.3f} ms, calls of {m} {sums[1] / 1e3:.3f} ms; kernels "
          f"only the split build has (us): {extra}")


if __name__ == "__main__":
    main()
