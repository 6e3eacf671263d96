"""Peak memory of ``aiq_tvm.build`` on Vision Transformers (torchvision, weights=None).

    flock /work/wt/bench.lock env TVM_NUM_THREADS=2 python scripts/vit_memory.py \\
        --layers 12 --plans fp32 int8 int4

Every (model, plan) is built in its own process, which reports its peak resident set size
(``ru_maxrss``), its RSS before the build (torch, TVM and the model loaded), the weights'
size, the build time, the relative error of the build against torch on two random images
(also the calibration data of low-bit plans), how many of the model's ``nn.Linear`` layers
became AIQ layers at the plan's precision under their module paths, and how many calls of
those layers' ``<module path>_<plan>`` kernels the compiled module makes.  ``--layers 12``
is torchvision's ``vit_b_16``; fewer layers give the same model with a shorter encoder.
The Markdown table it prints is in docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def vit(layers: int, image_size: int = 224):
    """torchvision's ``vit_b_16`` (weights=None, seeded) for 12 layers at 224, else the same
    architecture with ``layers`` encoder layers."""
    import torch
    from torchvision.models import VisionTransformer, vit_b_16

    torch.manual_seed(0)
    if layers == 12 and image_size == 224:
        model = vit_b_16(weights=None).eval()
    else:
        model = VisionTransformer(image_size=image_size, patch_size=16, num_layers=layers,
                                  num_heads=12, hidden_dim=768, mlp_dim=3072).eval()
    torch.nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision zero-inits it
    return model


def measure(layers: int, plan: str, image_size: int = 224) -> dict:
    """Build one ViT at one plan in this process (the row of the table)."""
    import numpy as np
    import torch
    from torch import nn

    import aiq_tvm

    model = vit(layers, image_size)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, image_size, image_size)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    mod, params = aiq_tvm.from_torch(model, x)
    weights_mb = sum(v.nbytes for v in params.values()) / 2**20
    before_mb = _rss_mb()
    # The high-water mark before the build: unlike the current RSS it does not drop when the
    # kernel evicts file-backed pages (torch's libraries) under memory pressure from other jobs.
    peak_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    res = aiq_tvm.build(mod, params=params, plan=plan, batch_size=2, micro_batch=None,
                        calib_data=x if plan != "fp32" else None)
    build_s = time.perf_counter() - t0
    out = res.run(x)
    linears = {n for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    linears |= {n + ".in_proj" for n, m in model.named_modules()
                if isinstance(m, nn.MultiheadAttention)}
    rows = {r.name: r for r in res.report.rows}
    quantized = sorted(n for n in linears if n in rows and rows[n].precision == plan)
    # The kernels the compiled module calls are named <module path>_<precision>.
    # Layers of the same shape share one kernel, named after the first of them: count the
    # calls of <module path>_<plan> kernels.
    symbols = {f"{n.replace('.', '_')}_{plan}" for n in linears}
    kernel_calls = sum(c.symbol in symbols for c in res.executable().aiq_kernel_calls)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"layers": layers, "plan": plan, "image_size": image_size,
            "weights_mb": weights_mb, "rss_before_mb": before_mb,
            "peak_before_mb": peak_before_mb, "peak_rss_mb": peak_mb,
            "build_s": build_s,
            "relerr": float(np.linalg.norm(out - ref) / np.linalg.norm(ref)),
            "linear_layers": len(linears), "linear_at_plan": len(quantized),
            "linear_kernel_calls": kernel_calls,
            "missing": sorted(linears - set(quantized))[:5]}


def run_child(layers: int, plan: str, image_size: int) -> dict:
    """:func:`measure` in a fresh process (so its peak RSS is its own)."""
    cmd = [sys.executable, __file__, "--child", "--layers", str(layers), "--plans", plan,
           "--image-size", str(image_size)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"layers": layers, "plan": plan, "image_size": image_size,
                "error": f"exit {proc.returncode}: {tail}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _table(rows: list[dict]) -> list[str]:
    lines = ["| encoder layers | plan | weights MB | RSS before build MB | peak RSS MB | "
             "build s | relerr vs torch | nn.Linear at plan precision, by module path | "
             "calls of <module path>_<plan> kernels |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['layers']} | {r['plan']} | | | | | | | {r['error']} |")
            continue
        lines.append(
            f"| {r['layers']} | {r['plan']} | {r['weights_mb']:.0f} | {r['rss_before_mb']:.0f} |"
            f" {r['peak_rss_mb']:.0f} | {r['build_s']:.0f} | {r['relerr']:.2e} | "
            f"{r['linear_at_plan']} / {r['linear_layers']} | "
            f"{r['linear_kernel_calls']} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=12, help="encoder layers (12 = vit_b_16)")
    ap.add_argument("--plans", nargs="+", default=["fp32", "int8"])
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.layers, args.plans[0], args.image_size)))
        return 0
    rows = []
    for plan in args.plans:
        rows.append(run_child(args.layers, plan, args.image_size))
        print(json.dumps(rows[-1]), flush=True)
    print("\n".join(_table(rows)))
    return int(any("error" in r for r in rows))


if __name__ == "__main__":
    sys.exit(main())
