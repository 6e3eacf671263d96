"""Hash the TIR of every distinct conv kernel of torchvision models, to check that a change
leaves the builders' kernel choices alone.

Builds (no compile) each conv shape of ResNet-18, MobileNetV2 and ResNet-50 at 224 x 224 in
fp32 / int8 / int4 at batch 1 and 8 with random weights, and writes ``{shape precision: "hash
algorithm schedule"}`` as JSON; run it with two checkouts' interpreters and compare::

    python scripts/kernel_hashes.py --target llvm --json before.json   # e.g. /work/main/.venv
    python scripts/kernel_hashes.py --target llvm --json after.json    # this checkout
    python scripts/kernel_hashes.py --compare before.json after.json

``--ours`` hashes our 32 x 32 models instead (ResNet-20 and MobileNetV2 of
``aiq_tvm.models``, the ISA benchmarks' models) at batch 1 and 16.
"""

from __future__ import annotations

import argparse
import hashlib
import json

MODELS = ("resnet18", "mobilenet_v2", "resnet50")


def torchvision_nets(models=MODELS) -> list[tuple]:
    """(network, input size) of torchvision ``models`` at 224 x 224, random weights."""
    import torchvision

    return [(getattr(torchvision.models, name)(weights=None).eval(), 224) for name in models]


def our_nets() -> list[tuple]:
    """(network, input size) of our 32 x 32 models."""
    from aiq_tvm.models import MODEL_NAMES, get_model

    return [(get_model(name).eval(), 32) for name in MODEL_NAMES]


def conv_shapes(nets) -> list[tuple]:
    """(H, W, C, O, K, stride, padding, groups) of every distinct conv of ``nets``
    ((network, input size) pairs)."""
    import torch

    seen: set = set()
    for net, size in nets:

        def hook(mod, inp, _out):
            h, w = inp[0].shape[2:]
            seen.add((h, w, mod.in_channels, mod.out_channels, mod.kernel_size[0],
                      mod.stride[0], mod.padding[0], mod.groups))  # fmt: skip

        hooks = [m.register_forward_hook(hook) for m in net.modules()
                 if isinstance(m, torch.nn.Conv2d)]  # fmt: skip
        with torch.no_grad():
            net(torch.zeros(1, 3, size, size))
        for h in hooks:
            h.remove()
    return sorted(seen)


def hashes(target_text: str, nets=None, batches=(1, 8)) -> dict:
    """``{shape precision: "hash algorithm schedule"}`` of every conv of ``nets`` (default
    the torchvision models) at each batch size."""
    import numpy as np

    from aiq_tvm.quant import ActQParams
    from aiq_tvm.targets import resolve_target
    from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel

    target = resolve_target(target_text)[0]
    rng = np.random.default_rng(0)
    qp = ActQParams.from_range(-1.0, 3.0)
    out = {}
    for h, w, c, o, k, s, p, g in conv_shapes(nets or torchvision_nets()):
        for n in batches:
            spec = ConvSpec(n, h, w, c, o, k, k, stride=s, padding=p, groups=g)
            wt = rng.standard_normal(spec.weight_shape).astype(np.float32)
            for prec in ("fp32", "int8", "int4"):
                kw = {} if prec == "fp32" else {"act_qparams": qp}
                kern = conv2d_kernel(spec, prec, wt, None, target=target, **kw)
                dig = hashlib.sha1(kern.prim_func.script().encode()).hexdigest()[:12]
                out[f"{(n, h, w, c, o, k, s, p, g)} {prec}"] = (
                    f"{dig} {kern.info.get('algorithm', 'direct')} {kern.info.get('schedule')}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="llvm")
    ap.add_argument("--json", default=None, help="write the hashes here")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"), default=None,
                    help="compare two written files instead")
    ap.add_argument("--ours", action="store_true",
                    help="our 32 x 32 models at batch 1 and 16 instead of the torchvision ones")
    args = ap.parse_args(argv)
    if args.compare:
        a, b = (json.load(open(f)) for f in args.compare)
        diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        print(f"{len(a)} / {len(b)} kernels, {len(diff)} differ")
        for k in diff:
            print(f"  {k}: {a.get(k)} -> {b.get(k)}")
        return 1 if diff else 0
    out = hashes(args.target, our_nets(), (1, 16)) if args.ours else hashes(args.target)
    print(f"{len(out)} kernels")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
