"""Attention blocks over token counts that no 16-lane vector divides evenly (196 = 14 x 14,
228, 49) or does (256), FP32, one thread: the module's time and its softmax / matmul kernels
in situ (scripts/profile_insitu.py's timer). Run with each checkout's interpreter:

    TVM_NUM_THREADS=1 python docs/runs/s42/attention_rows.py
"""
import sys
from pathlib import Path

import numpy as np
import torch
import tvm

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))
import aiq_tvm  # noqa: E402
from profile_insitu import insitu_times  # noqa: E402
from random_cnns import _MhaAttention, _SdpaAttention  # noqa: E402

CASES = [  # (kind, channels, heads, h, w, batch)
    ("mha", 64, 2, 14, 14, 1), ("sdpa", 128, 4, 14, 14, 4), ("mha", 16, 4, 19, 12, 8),
    ("sdpa", 96, 3, 7, 7, 8), ("mha", 64, 2, 16, 16, 1),
]
print(f"aiq_tvm at {Path(aiq_tvm.__file__).parent.parent}")
for kind, c, heads, h, w, n in CASES:
    torch.manual_seed(0)
    model = (_MhaAttention if kind == "mha" else _SdpaAttention)(c, heads).eval()
    x = np.random.default_rng(0).standard_normal((n, c, h, w)).astype(np.float32)
    mod, params = aiq_tvm.from_torch(model, x)
    res = aiq_tvm.build(mod, params=params, plan="fp32", batch_size=n)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    err = np.abs(res.run(x) - ref).max() / np.abs(ref).max()
    names, us, plain, _, _ = insitu_times(res.vm(n), tvm.runtime.tensor(x), 20)
    soft = sum(u for nm, u in zip(names, us) if "softmax" in nm)
    mm = sum(u for nm, u in zip(names, us) if nm.startswith("matmul"))
    print(f"{kind:4s} {c:3d} ch {heads} heads {h * w:3d} tokens batch {n}: module {plain:7.3f} ms"
          f" | softmax {soft:8.1f} us | matmuls {mm:8.1f} us | rel err {err:.1e}")
