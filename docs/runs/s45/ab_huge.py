"""A/B in one process: the same executable with its weights in TVM's own allocations vs in one
2 MB-aligned arena advised to transparent huge pages (zero-copy DLPack views)."""
import os, sys, ctypes, mmap, time, numpy as np, torch
sys.path.insert(0, "/work/main/scripts")
os.environ.setdefault("TVM_BIND_THREADS", "0")
import aiq_tvm, tvm
from aiq_tvm.bench import Timer
from aiq_tvm.weights import WeightedVM
from tvm import relax
from profile_layers import _model_and_calibration
name, plan, bs = sys.argv[1], sys.argv[2], int(sys.argv[3])
model, calib = _model_and_calibration(name, 224, 32)
calib = np.asarray(calib)
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
res = aiq_tvm.build(mod, params=params, plan=plan, calib_data=calib, micro_batch=None, calibration="percentile")
a = res.vm(bs)
ws = a.weights
total = sum(((t.numpy().nbytes + 63) // 64) * 64 for t in ws)
HP = 2 << 20
size = -(-total // HP) * HP
buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
libc = ctypes.CDLL("libc.so.6", use_errno=True)
addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
print("arena", size >> 20, "MB at", hex(addr), "aligned 2MB:", addr % HP == 0)
if os.environ.get("HUGE", "1") == "1":
    print("madvise HUGEPAGE", libc.madvise(ctypes.c_void_p(addr), ctypes.c_size_t(size), 14))
arena = np.frombuffer(buf, dtype=np.uint8)
views, off = [], 0
for t in ws:
    x = t.numpy(); n = x.nbytes
    v = arena[off:off + n].view(x.dtype).reshape(x.shape); v[...] = x
    views.append(tvm.runtime.from_dlpack(v)); off += (n + 63) // 64 * 64
print([l.strip() for l in open("/proc/self/smaps_rollup") if "AnonHuge" in l])
b = WeightedVM(a.vm, views, a.manifest)
x = tvm.runtime.tensor(res.example_input(bs))
ya, yb = a["main"](x).numpy(), b["main"](x).numpy()
print("max |a-b|", float(np.abs(ya - yb).max()))
fa, fb = a["main"], b["main"]
ta, tb = Timer(lambda: fa(x)), Timer(lambda: fb(x))
ra, rb, ratio = [], [], []
for r in range(20):
    time.sleep(0.1)
    pair = (ta, tb) if r % 2 == 0 else (tb, ta)
    v = [p(150) for p in pair]
    va, vb = (v[0], v[1]) if r % 2 == 0 else (v[1], v[0])
    ra.append(va); rb.append(vb); ratio.append(vb / va)
print(f"{name} {plan} b{bs}: tvm alloc {np.median(ra)*1e3:.3f} ms, arena {np.median(rb)*1e3:.3f} ms, per-round ratio arena/tvm median {np.median(ratio):.3f} (p10 {np.percentile(ratio,10):.3f}, p90 {np.percentile(ratio,90):.3f})")
