"""Session 34: per-kernel times inside whole inferences (``scripts/profile_insitu.py``'s VM
instrument) of one model built without and with the rows-first weight prefetch
(``prefetch.ROWS_FIRST_MIN_BYTES`` raised past any layer for "off"), the two builds timed in
alternating rounds in one process. Prints each kernel call's median in-situ time off and on
(a kernel name repeats where layers share a kernel), the count of kernels the rewrite
changed, and the sums over all calls.

    TVM_NUM_THREADS=2 flock /work/bench.lock \\
        python docs/runs/s34/rows_prefetch_insitu.py MODEL BATCH PLAN [ROUNDS]

Output: rows_prefetch_insitu.txt.
"""
import sys

import numpy as np

sys.path.insert(0, "scripts")
import torch  # noqa: E402
from bench_models import load_model  # noqa: E402
from profile_insitu import _call_times  # noqa: E402

import aiq_tvm  # noqa: E402
from aiq_tvm.targets.x86 import prefetch  # noqa: E402


def main(argv: list[str]) -> None:
    model_name, bs, prec = argv[0], int(argv[1]), argv[2]
    rounds = int(argv[3]) if len(argv) > 3 else 5
    model, xc = load_model(model_name, 224)
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(xc[:1]))
    default = prefetch.ROWS_FIRST_MIN_BYTES
    builds, vms, calls = {}, {}, []
    real = prefetch._ssa  # called once per kernel the rows-first rewrite changes

    def counted(func):
        calls.append(1)
        return real(func)

    prefetch._ssa = counted
    for flag, min_bytes in (("off", 1 << 62), ("on", default)):
        prefetch.ROWS_FIRST_MIN_BYTES = min_bytes
        builds[flag] = aiq_tvm.build(mod, "llvm", params=params, plan=prec,
                                     calib_data=xc[:16], batch_size=bs)
        vms[flag] = builds[flag].vm(bs)  # (the build result stays alive: the VM uses it)
    prefetch.ROWS_FIRST_MIN_BYTES, prefetch._ssa = default, real
    x = np.ascontiguousarray(xc[:bs])  # (a slice of a larger array crashed the instrumented VM)
    per = {f: [] for f in vms}
    names = None
    for r in range(rounds):
        for f in (("off", "on") if r % 2 == 0 else ("on", "off")):
            names, us, _ = _call_times(vms[f], x, 10)
            per[f].append(us)
    med = {f: np.median(np.array(v), axis=0) for f, v in per.items()}
    print(f"# {model_name} {prec} batch {bs}: {rounds} alternating rounds of 10 inferences, "
          f"median in-situ us per call; kernels rewritten: {len(calls)}")
    print("| # | kernel | off us | on us | off / on |")
    print("|---|---|---|---|---|")
    for i, name in enumerate(names):
        print(f"| {i} | {name} | {med['off'][i]:.1f} | {med['on'][i]:.1f} | "
              f"{med['off'][i] / med['on'][i]:.2f} |")
    off, on = med["off"].sum(), med["on"].sum()
    print(f"all calls: off {off:.1f} us, on {on:.1f} us, off / on {off / on:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])

