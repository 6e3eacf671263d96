"""One 3x3 conv kernel (stride 1, pad 1, uint8 residual, ReLU; int8: uint8 output) exported
to ``OUT.so`` and called ``REPS`` times in a loop, for ``perf record`` to sample; then
``perf_regions.py`` splits the samples over the kernel's loops.

    TVM_NUM_THREADS=1 perf record -e cpu-clock -F 20000 -o /tmp/k.data python \
        docs/runs/s51/perf_wino.py '{"kind":"llvm","mcpu":"skylake-avx512","num-cores":1}' \
        16 16 32 32 int8 6000 /tmp/k.so
    python docs/runs/s51/perf_regions.py /tmp/k.data /tmp/k.so
"""

import json
import sys
import time

import numpy as np
import tvm

from aiq_tvm import quant, testing
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel


def main() -> None:
    tj = json.loads(sys.argv[1])
    n, hw, c, k = map(int, sys.argv[2:6])
    prec, reps, out = sys.argv[6], int(sys.argv[7]), sys.argv[8]
    spec = ConvSpec(n, hw, hw, c, k, 3, 3, padding=1)
    x, w, b, res, qp = testing.layer_data(spec, np.random.default_rng(0), residual=True,
                                          offset=0.5)
    if prec == "int8":
        rq = quant.ActQParams.from_range(float(res.min()), float(res.max()))
        kern = conv2d_kernel(spec, "int8", w, b, act="relu", act_qparams=qp, residual=True,
                             residual_qparams=rq, out_qparams=qp, target=tj)
        x, res = quant.quantize_act(x, qp), quant.quantize_act(res, rq)
    else:
        kern = conv2d_kernel(spec, "fp32", w, b, act="relu", residual=True, target=tj)
    print(kern.info.get("schedule"))
    testing.compile_prim_func(kern.prim_func, tj).export_library(out)
    f = tvm.runtime.load_module(out)["main"]
    args = testing.kernel_args(kern, x, res)
    f(*args)
    t0 = time.perf_counter()
    for _ in range(reps):
        f(*args)
    print(f"{(time.perf_counter() - t0) / reps * 1e6:.1f} us per call")


if __name__ == "__main__":
    main()
