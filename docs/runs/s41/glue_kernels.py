"""Kernels alone, as the checkout whose interpreter runs this legalizes and schedules them:
float32 exp / sigmoid over 1 x 56 x 56 x 64 (haswell target) and layer norm over the last
axis of 1 x 197 x 768 (ViT) and 1 x 56 x 56 x 96 (ConvNeXt) (this host's target). Median of
5 x 50 calls of the compiled function (its output preallocated).

    TVM_NUM_THREADS=1 python docs/runs/s41/glue_kernels.py
"""

import numpy as np
import tvm
from tvm import relax

from aiq_tvm import pipeline
from aiq_tvm.targets import host_target


def kernel_us(make, shape, target) -> float:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(make(x))
        bb.emit_func_output(out)
    with target:
        mod = tvm.transform.Sequential(pipeline.legalize_passes(target)
                                       + pipeline.schedule_passes(target))(bb.get())
    (func,) = [f for _, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    lib = tvm.tirx.build(func.with_attr("global_symbol", "main"), target=target)
    rng = np.random.default_rng(0)
    args = [tvm.runtime.tensor(rng.standard_normal(shape).astype("float32"))]
    args += [tvm.runtime.tensor(rng.standard_normal(shape[-1:]).astype("float32"))
             for _ in range(len(func.params) - 2)]  # layer norm's scale and shift
    args.append(tvm.runtime.tensor(np.zeros(shape, "float32")))
    timer = lib.time_evaluator("main", tvm.cpu(), number=50, repeat=5)
    return float(np.median(timer(*args).results)) * 1e6


def layer_norm(x):
    c = int(x.ty.shape[-1])
    rng = np.random.default_rng(1)
    gamma, beta = (relax.const(rng.standard_normal(c).astype("float32")) for _ in range(2))
    return relax.op.nn.layer_norm(x, gamma, beta, axes=[-1], epsilon=1e-6)


haswell = tvm.target.Target({"kind": "llvm", "mcpu": "haswell", "num-cores": 1})
host = tvm.target.Target(host_target())
print(f"exp 1x56x56x64 haswell: {kernel_us(relax.op.exp, (1, 56, 56, 64), haswell):.1f} us")
print(f"sigmoid 1x56x56x64 haswell: {kernel_us(relax.op.sigmoid, (1, 56, 56, 64), haswell):.1f} us")
for shape in ((1, 197, 768), (1, 56, 56, 96)):
    name = "x".join(map(str, shape))
    print(f"layer_norm {name} host: {kernel_us(layer_norm, shape, host):.1f} us")
