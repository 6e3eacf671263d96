"""Session 36: one conv kernel per shape, fp32 and int8 with a uint8 output, medians of 200
calls. ``python kt.py TARGET H,C,O,K,S,GROUPS ...`` (TARGET ``host`` or a JSON target);
output kt_epilogue.txt."""
import json, sys, time
import numpy as np, tvm
from aiq_tvm import testing
from aiq_tvm.quant import ActQParams
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.targets import host_target
t = tvm.target.Target(host_target() if sys.argv[1] == "host" else json.loads(sys.argv[1]))
for shape in sys.argv[2:]:
    h, c, o, k, s, g = map(int, shape.split(","))
    spec = ConvSpec(1, h, h, c, o, k, k, stride=s, padding=(k // 2, k // 2), groups=g)
    rng = np.random.default_rng(0)
    w = (rng.standard_normal(spec.weight_shape) / np.sqrt(c // g * k * k)).astype("float32")
    b = rng.standard_normal(o).astype("float32")
    x = np.abs(rng.standard_normal(spec.in_shape)).astype("float32")
    for scheme in ("fp32", "int8"):
        qp = ActQParams.from_range(0.0, 3.0) if scheme != "fp32" else None
        kk = conv2d_kernel(spec, scheme, w, b, act="relu", act_qparams=qp, out_qparams=qp, target=t)
        fn = testing.compile_prim_func(kk.prim_func, t).mod["main"]
        args = testing.kernel_args(kk, testing.kernel_input(scheme, x, qp))
        fn(*args)
        ts = []
        for _ in range(200):
            t0 = time.perf_counter(); fn(*args); ts.append(time.perf_counter() - t0)
        print(f"{shape:22} {scheme} {np.median(ts)*1e6:8.1f} us  {kk.info['schedule']} out {kk.out_shape} {kk.out_dtype}", flush=True)
