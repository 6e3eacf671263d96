"""Per-call overhead of the Relax VM: a chain of N tiny kernel calls (parallel or serial)."""
import time, numpy as np, tvm
from tvm import relax, te, tirx
from tvm.script import relax as R
import sys
N = 56
par = sys.argv[1] == "par"
bb = relax.BlockBuilder()
x = relax.Var("x", R.Tensor((64,), "float32"))
A = te.placeholder((64,), "float32", name="A")
B = te.compute((64,), lambda i: A[i] + 1.0, name="B")
f = te.create_prim_func([A, B])
if par:
    sch = tvm.s_tir.Schedule(f)
    blk = sch.get_block("B") if hasattr(sch, "get_block") else sch.get_sblock("B")
    (i,) = sch.get_loops(blk)
    io, ii = sch.split(i, [2, None])
    sch.parallel(io)
    f = sch.mod["main"]
f = f.with_attr("global_symbol", "add1")
with bb.function("main", [x]):
    with bb.dataflow():
        gv = bb.add_func(f, "add1")
        y = x
        for _ in range(N):
            y = bb.emit(relax.call_tir(gv, [y], R.Tensor((64,), "float32")))
        out = bb.emit_output(y)
    bb.emit_func_output(out)
mod = bb.get()
ex = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm", "mcpu": "rocketlake"}))
vm = relax.VirtualMachine(ex, tvm.cpu())
xt = tvm.runtime.tensor(np.zeros(64, "float32"))
fn = vm["main"]
for _ in range(100): fn(xt)
ts = []
for _ in range(2000):
    t0 = time.perf_counter(); fn(xt); ts.append(time.perf_counter() - t0)
print(f"{'parallel' if par else 'serial'}: {N} calls {np.median(ts)*1e6:.1f} us -> {np.median(ts)*1e6/N:.2f} us per call")
