"""Session 49: scripts/fuzz_models.py with every fusable depthwise -> pointwise pair fused
(targets/x86/dwpw.fusion_pays forced True), so random networks exercise the fused kernel at
any size. Same arguments as fuzz_models.py; rows say how many fused kernels each build ran.

    TVM_NUM_THREADS=2 python docs/runs/s49/fuzz_forced.py --profile wide --first 2000 \\
        --count 100 --minutes 10 --journal docs/runs/s49/fuzz_forced_wide.jsonl
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))

import fuzz_models  # noqa: E402

from aiq_tvm.targets.x86 import dwpw  # noqa: E402

dwpw.fusion_pays = lambda *args: True
_build = dwpw.depthwise_pointwise_kernel
built = []


def _counted(dw, pw, *args, **kwargs):
    built.append((dw, pw))
    return _build(dw, pw, *args, **kwargs)


dwpw.depthwise_pointwise_kernel = _counted

if __name__ == "__main__":
    code = fuzz_models.main()
    print(f"fused kernels built: {len(built)} ({len({(d, p) for d, p in built})} distinct pairs)")
    raise SystemExit(code)
