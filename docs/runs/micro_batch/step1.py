"""Step 1: B/m sequential calls of the batch-m build, m in {1,2,4,8}, B=8 (one process per model/prec)."""
import sys, time, os, fcntl, json
os.environ.setdefault("TVM_NUM_THREADS", "2")
from aiq_tvm.threads import unpin_tvm_threads
unpin_tvm_threads()
import numpy as np, torch, tvm
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../scripts"))
from bench_models import load_model
import aiq_tvm
from aiq_tvm.bench import Timer
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from quiet import clean_sample

name, prec = sys.argv[1], sys.argv[2]
B, MS = 8, [1, 2, 4, 8]
ROUNDS = int(os.environ.get('ROUNDS', 15))
model, xc = load_model(name, 224)
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(xc[:2]))
b = aiq_tvm.build(mod, params=params, plan=prec, calib_data=xc, calibration="percentile",
                  eval_batch_size=16)
x = np.ascontiguousarray(np.resize(xc, (B, *xc.shape[1:])), np.float32)
timers, outs = {}, {}
for m in MS:
    t0 = time.perf_counter()
    f = b.vm(m)["main"]
    print(f"compiled m={m} in {time.perf_counter()-t0:.1f}s", flush=True)
    chunks = [tvm.runtime.tensor(np.ascontiguousarray(x[i:i + m])) for i in range(0, B, m)]
    def fn(f=f, chunks=chunks):
        return [f(c) for c in chunks]
    outs[m] = np.concatenate([o.numpy() for o in fn()])
    timers[m] = Timer(fn, "wall")
samples = {m: [] for m in MS}
retries = dirty = 0
with open("/work/bench.lock", "a") as fh:
    fcntl.flock(fh, fcntl.LOCK_EX)
    for _ in range(ROUNDS):
        for m in MS:
            time.sleep(0.1)
            v, tries, ok = clean_sample(timers[m], 150)
            retries += tries - 1
            if ok:
                samples[m].append(v)
            else:
                dirty += 1
    fcntl.flock(fh, fcntl.LOCK_UN)
med = {m: float(np.median(v)) * 1e3 for m, v in samples.items()}
dev = {m: float(np.max(np.abs(outs[m] - outs[8]))) for m in MS}
print(json.dumps({"model": name, "prec": prec, "ms": med, "n": {m: len(v) for m, v in samples.items()}, "retries": retries, "dirty": dirty, "maxdiff_vs_m8": dev}))
print(f"RESULT {name} {prec} " + " ".join(f"m{m}={med[m]:.3f}" for m in MS)
      + "  rel: " + " ".join(f"m{m}={med[m]/med[8]:.3f}" for m in MS), flush=True)
