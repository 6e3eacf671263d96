"""A/B at B=8: in-module micro-batch m (BuildConfig.micro_batch=m) vs Python loop of batch-m calls vs whole batch (timed twice: the noise control)."""
import sys, time, os, fcntl, json, dataclasses
os.environ.setdefault("TVM_NUM_THREADS", "2")
from aiq_tvm.threads import unpin_tvm_threads
unpin_tvm_threads()
import numpy as np, torch, tvm
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../scripts")); sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_models import load_model
from quiet import clean_sample
import aiq_tvm
from aiq_tvm.bench import Timer

name, prec, m = sys.argv[1], sys.argv[2], int(sys.argv[3])
B = 8
ROUNDS = int(os.environ.get("ROUNDS", 25))
model, xc = load_model(name, 224)
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(xc[:2]))
b = aiq_tvm.build(mod, params=params, plan=prec, calib_data=xc, calibration="percentile", eval_batch_size=16, batch_size=B)
mb = dataclasses.replace(b, micro_batch=m, micro_batches={}, _exes={}, _run_exes={}, _embedded_exes={}, unscheduled={})
x = np.ascontiguousarray(np.resize(xc, (B, *xc.shape[1:])), np.float32)
xt = tvm.runtime.tensor(x)
f8 = b.vm(B)["main"]; fin = mb.vm(B)["main"]; fm = b.vm(m)["main"]
chunks = [tvm.runtime.tensor(np.ascontiguousarray(x[i:i + m])) for i in range(0, B, m)]
fns = {"whole": lambda: f8(xt), "whole-again": lambda: f8(xt), f"in-module m{m}": lambda: fin(xt),
       f"python-loop m{m}": lambda: [fm(c) for c in chunks]}
ref = f8(xt).numpy()
assert np.array_equal(fin(xt).numpy(), ref)
timers = {k: Timer(f, os.environ.get("CLOCK", "wall")) for k, f in fns.items()}
samples = {k: [] for k in fns}
with open("/work/bench.lock", "a") as fh:
    fcntl.flock(fh, fcntl.LOCK_EX)
    for _ in range(ROUNDS):
        for k, t in timers.items():
            time.sleep(0.1)
            v, tries, ok = clean_sample(t, 150)
            if ok: samples[k].append(v)
    fcntl.flock(fh, fcntl.LOCK_UN)
med = {k: float(np.median(v)) * 1e3 for k, v in samples.items()}
print(json.dumps({"model": name, "prec": prec, "m": m, "ms": med, "n": {k: len(v) for k, v in samples.items()}}))
print(f"RESULT {name} {prec} " + "  ".join(f"{k} {v:.3f} ({v / med['whole']:.3f})" for k, v in med.items()), flush=True)
