"""Which part of the fused SiLU epilogue costs what (scratch experiment of
docs/performance_224.md, section "SiLU epilogue register spills"): the int8 conv built with
``fastmath.fast_silu`` replaced by parts of it. The values of the parts are wrong on purpose
(not checked); only their time is of interest. ``silu``: as shipped; ``nodiv``: the division
replaced by a multiply; ``divonly``: one FMA and the division; ``polyonly``: the degree-5
polynomial and a multiply; ``estrin``: the polynomial in Estrin's form (fewer dependent steps,
more operations). Other names are activations (``none``, ``relu``, ``hardswish``)::

    TVM_NUM_THREADS=1 flock /work/bench.lock python docs/runs/silu_spill/exp_silu_parts.py \
        56,24,144,1 1 none,silu,nodiv,divonly,polyonly,estrin,hardswish 15

Arguments: layer H,C,O,K[,dw]; 1 for a requantizing (uint8) epilogue, else 0; variants; rounds.
"""

import math
import sys
import time

import numpy as np
from tvm import tirx

from aiq_tvm import testing
from aiq_tvm.quant import ActQParams
from aiq_tvm.targets import fastmath as fm
from aiq_tvm.targets import resolve_target
from aiq_tvm.targets.x86 import ConvSpec, common, conv2d_kernel

f32 = fm._f32


def _reduced(x):
    """(z, r) of fast_silu: the rounding sum and the reduced argument."""
    xc = tirx.Max(tirx.Min(x, f32(-fm._EXP_MIN)), f32(-88.0))
    z, n = fm._round(xc * f32(-1.0 / math.log(2.0)))
    return z, xc + n * f32(fm._LN2_HI) + n * f32(fm._LN2_LO)


def _pow2(z):
    return tirx.reinterpret("float32", tirx.shift_left(tirx.reinterpret("int32", z),
                                                       tirx.IntImm("int32", 23)))


def _coefs():
    return tuple(c if k % 2 == 0 else -c for k, c in enumerate(fm._Q))


def nodiv(x):
    z, r = _reduced(x)
    return x * (fm._horner(_coefs()[::-1], r) * _pow2(z) + f32(1.0))


def estrin(x):
    z, r = _reduced(x)
    q = [f32(c) for c in _coefs()]
    r2 = r * r
    p = (q[0] + q[1] * r) + r2 * ((q[2] + q[3] * r) + r2 * (q[4] + q[5] * r))
    return x / (p * _pow2(z) + f32(1.0))


VARIANTS = {"silu": fm.fast_silu, "nodiv": nodiv, "estrin": estrin,
            "divonly": lambda x: x / (x * f32(0.3) + f32(2.0)),
            "polyonly": lambda x: fm._horner(fm._Q, x) * x}


def main() -> None:
    layer, requant, names, rounds = sys.argv[1], sys.argv[2] == "1", sys.argv[3].split(","), \
        int(sys.argv[4])
    target = resolve_target("llvm")[0]
    h, c, o, k, *rest = layer.split(",")
    h, c, o, k = map(int, (h, c, o, k))
    dw = rest[:1] == ["dw"]
    spec = ConvSpec(1, h, h, c, o, k, k, stride=1, padding=k // 2, groups=c if dw else 1)
    x, w, b, _, qp = testing.layer_data(spec, np.random.default_rng(0))
    oq = ActQParams.from_range(-0.5, 6.0) if requant else None
    runs = {}
    for v in names:
        act = "silu" if v in VARIANTS else v
        common._UNBOUNDED_ACTS["silu"] = VARIANTS.get(v, fm.fast_silu)
        try:
            kern = conv2d_kernel(spec, "int8", w, b, act=act, act_qparams=qp, out_qparams=oq,
                                 target=target)
        finally:
            common._UNBOUNDED_ACTS["silu"] = fm.fast_silu
        ex = testing.compile_prim_func(kern.prim_func, target)
        runs[v] = (ex.mod["main"], testing.kernel_args(kern, testing.kernel_input("int8", x, qp)))
    s = {v: [] for v in runs}
    for _ in range(rounds):
        for v, (f, args) in runs.items():
            t0 = time.process_time()
            for _ in range(40):
                f(*args)
            s[v].append((time.process_time() - t0) / 40)
    print(f"layer {layer} int8{' requantized' if requant else ''}: median of {rounds} rounds "
          f"of 40 calls, CPU time per call")
    for v in s:
        print(f"  {v:10s} {np.median(s[v]) * 1e6:8.1f} us")


if __name__ == "__main__":
    main()
