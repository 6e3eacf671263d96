"""Whole-model A/B in one process: ResidualInPlace off (A) vs on (B), same plan; outputs
compared, then alternating timing rounds."""
import os, sys, time, numpy as np, torch
sys.path.insert(0, "/work/main/scripts")
os.environ.setdefault("TVM_BIND_THREADS", "0")
import aiq_tvm, tvm
import aiq_tvm.pipeline as pl
from aiq_tvm.bench import Timer
from profile_layers import _model_and_calibration
name, plan, bs = sys.argv[1], sys.argv[2], int(sys.argv[3])
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 15
model, calib = _model_and_calibration(name, 224 if "/" in name else 32, 32)
calib = np.asarray(calib)
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
res = aiq_tvm.build(mod, os.environ.get("TARGET", "llvm"), params=params, plan=plan, calib_data=calib, micro_batch=None, calibration="percentile")
orig = pl.ResidualInPlace
class Off:
    def __call__(self, mod): return mod
pl.ResidualInPlace = lambda *a, **k: tvm.transform.module_pass(lambda m, c: m, opt_level=0, name="Off")
va = res.vm(bs)
import dataclasses
res2 = dataclasses.replace(res, micro_batches={}, _exes={}, _run_exes={}, _embedded_exes={}, unscheduled={})
pl.ResidualInPlace = orig
vb = res2.vm(bs)
txt = res2.run_executable(bs).as_text()
x = tvm.runtime.tensor(res.example_input(bs))
ya, yb = va["main"](x).numpy(), vb["main"](x).numpy()
yb2 = vb["main"](x).numpy()
print("identical outputs:", np.array_equal(ya, yb), np.array_equal(yb, yb2), "max diff", float(np.abs(ya - yb).max()))
fa, fb = va["main"], vb["main"]
ta, tb = Timer(lambda: fa(x)), Timer(lambda: fb(x))
ra, rb, ratio = [], [], []
for r in range(rounds):
    time.sleep(0.05)
    pair = (ta, tb) if r % 2 == 0 else (tb, ta)
    v = [p(200) for p in pair]
    a, b = (v[0], v[1]) if r % 2 == 0 else (v[1], v[0])
    ra.append(a); rb.append(b); ratio.append(b / a)
print(f"{name} {plan} b{bs}: separate {np.median(ra)*1e3:.3f} ms, in place {np.median(rb)*1e3:.3f} ms, per-round ratio in-place/separate {np.median(ratio):.3f} (p10 {np.percentile(ratio,10):.3f}, p90 {np.percentile(ratio,90):.3f})", flush=True)
import re
n = 0
for line in txt.splitlines():
    m = re.search(r"call\s+(\S+)\s+in: (.*) dst", line)
    if m:
        regs = [a.strip() for a in m.group(2).split(",")]
        if len(regs) >= 2 and regs[-1] == regs[-2]:
            n += 1
print("kernel calls writing over an input:", n)
def insitu(vm, runs):
    rec, start = [], [0.0]
    def instrument(func, fname, before_run, ret_value, *args):
        if str(fname).startswith("vm."):
            return 0
        if before_run:
            start[0] = time.perf_counter()
        else:
            rec.append((str(fname), time.perf_counter() - start[0]))
        return 0
    vm.set_instrument(instrument)
    per = {}
    for _ in range(runs):
        rec.clear(); vm["main"](x)
        for i, (n, t) in enumerate(rec):
            per.setdefault((i, n), []).append(t)
    vm.set_instrument(None)
    return per
pa, pb = {}, {}
for r in range(int(os.environ.get("INSITU_ROUNDS", "0"))):
    for vm, acc in ((va, pa), (vb, pb)) if r % 2 == 0 else ((vb, pb), (va, pa)):
        for k, v in insitu(vm, 3).items():
            acc.setdefault(k, []).extend(v)
if pa:
    ma = {k: np.median(v) * 1e6 for k, v in pa.items()}; mb = {k: np.median(v) * 1e6 for k, v in pb.items()}
    print(f"in-situ sums: separate {sum(ma.values())/1e3:.3f} ms, in place {sum(mb.values())/1e3:.3f} ms")
    for k in sorted(ma, key=lambda k: mb[k] - ma[k])[:10]:
        print(f"  {k[1]:32s} {ma[k]:9.1f} -> {mb[k]:9.1f} us")
    for k in sorted(ma, key=lambda k: mb[k] - ma[k])[-4:]:
        print(f"  {k[1]:32s} {ma[k]:9.1f} -> {mb[k]:9.1f} us (largest increases)")
