"""What a fused activation costs inside one conv kernel: the same layer built with each
activation, checked against the numpy reference, timed in interleaved rounds on the process's
CPU clock (one thread: run with ``TVM_NUM_THREADS=1``, under the bench lock).

Run it with another checkout's interpreter to compare code versions on the same shapes (the
script imports whichever ``aiq_tvm`` that interpreter has)::

    TVM_NUM_THREADS=1 flock /work/bench.lock python scripts/bench_epilogue.py \\
        --layer 56,24,144,1 --acts none relu silu hardswish [--precision int8]

``--layer H,C,O,K[,dw]``: an H x H input with C channels, O outputs, a K x K kernel (stride 1,
same padding), ``dw`` for a depthwise conv (C == O).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def _spec(layer: str):
    from aiq_tvm.targets.x86 import ConvSpec

    parts = layer.split(",")
    try:
        h, c, o, k = (int(v) for v in parts[:4])
    except ValueError:
        raise SystemExit(f"--layer {layer!r}: expected H,C,O,K[,dw]") from None
    dw = parts[4:] == ["dw"]
    if parts[4:] and not dw:
        raise SystemExit(f"--layer {layer!r}: the fifth field can only be 'dw'")
    return ConvSpec(1, h, h, c, o, k, k, stride=1, padding=k // 2, groups=c if dw else 1)


def _timer(spec, precision: str, act: str, data, target):
    """Build, check against the reference, return ``run(n) -> CPU seconds per call``."""
    from aiq_tvm import testing
    from aiq_tvm.targets.x86 import conv2d_kernel

    x, w, b, _, qp = data
    kernel = conv2d_kernel(spec, precision, w, b, act=act, act_qparams=qp, target=target)
    xin = testing.kernel_input(precision, x, qp)
    args = testing.kernel_args(kernel, xin)
    f = testing.compile_prim_func(kernel.prim_func, target).mod["main"]
    f(*args)
    ref = testing.reference(spec, precision, xin, w, b, act=act, act_qparams=qp,
                            target=target).y
    err = testing.relative_error(args[-1].numpy(), ref)
    if err > 1e-4:
        raise AssertionError(f"{act}: relative error {err:.2e} against the reference")

    def run(n: int) -> float:
        t0 = time.process_time()
        for _ in range(n):
            f(*args)
        return (time.process_time() - t0) / n

    return run


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layer", default="56,24,144,1", help="H,C,O,K[,dw]")
    ap.add_argument("--acts", nargs="+", default=["none", "relu", "silu", "hardswish"])
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--target", default="llvm")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=50, help="calls per round")
    args = ap.parse_args(argv)
    if os.environ.get("TVM_NUM_THREADS") != "1":
        raise SystemExit("bench_epilogue.py times on the CPU clock: run with TVM_NUM_THREADS=1")
    from aiq_tvm import testing
    from aiq_tvm.targets import resolve_target

    target, _ = resolve_target(args.target)
    spec = _spec(args.layer)
    data = testing.layer_data(spec, np.random.default_rng(0))
    runs = {a: _timer(spec, args.precision, a, data, target) for a in args.acts}
    samples: dict[str, list[float]] = {a: [] for a in args.acts}
    for _ in range(args.rounds):
        for a, run in runs.items():
            samples[a].append(run(args.calls))
    print(f"layer {args.layer} {args.precision} on {target}: median of {args.rounds} rounds "
          f"of {args.calls} calls, CPU time per call")
    for a, v in samples.items():
        print(f"  {a:10s} {np.median(v) * 1e6:9.1f} us")


if __name__ == "__main__":
    main()
