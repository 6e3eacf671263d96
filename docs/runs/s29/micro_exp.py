"""Ad-hoc (session 29): whole-model time of one torchvision model built at several
micro-batches (``BuildConfig.micro_batch``: ``none``, an int, ``auto`` or ``measure``), all in
one process, medians of 7 interleaved rounds of ``time_evaluator`` (200 ms each), on
``res.example_input`` (random normal inputs, not images: EfficientNet-B0 ran 55 ms here
against 33 ms on images in scripts/bench_models.py, so read its rows against each other
only). Prints each build's micro-batch choice. Outputs: micro_sweep.txt, auto_choice.txt::

    TVM_NUM_THREADS=2 flock /work/bench.lock python docs/runs/s29/micro_exp.py \\
        tv/mobilenet_v2 fp32 8 none 4 2 1
"""
import os
import sys

os.environ.setdefault("TVM_NUM_THREADS", "2")
import numpy as np  # noqa: E402
import torch  # noqa: E402
import tvm  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "scripts"))
from profile_layers import _model_and_calibration  # noqa: E402

import aiq_tvm  # noqa: E402


def main():
    name, plan, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    micros = [None if m == "none" else (m if m in ("auto", "measure") else int(m))
              for m in sys.argv[4:]]
    model, calib = _model_and_calibration(name, 224, 32)
    calib = np.asarray(calib)
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
    fns = []
    for m in micros:
        res = aiq_tvm.build(mod, "llvm", params=params, plan=plan, calib_data=calib,
                            batch_size=batch, eval_batch_size=16, micro_batch=m)
        vm = res.vm(batch)
        print("choice", m, res.micro_batch_choice(batch).describe(), flush=True)
        x = tvm.runtime.tensor(res.example_input(batch))
        fns.append((vm.time_evaluator("main", tvm.cpu(), repeat=1, min_repeat_ms=200), x))
    times = {i: [] for i in range(len(micros))}
    for _ in range(7):
        for i, (ev, x) in enumerate(fns):
            times[i].append(ev(x).mean * 1e3)
    for i, m in enumerate(micros):
        print(name, plan, batch, "micro", m, f"{np.median(times[i]):.3f} ms", flush=True)


if __name__ == "__main__":
    main()
