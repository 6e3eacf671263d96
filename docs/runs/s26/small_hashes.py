"""Ad-hoc (session 26): TIR hashes of the conv kernels of our 32 x 32 models (ResNet-20 and
MobileNetV2, the ISA benchmarks' models of docs/performance_isa.md) at batch 1 and 16, as
scripts/kernel_hashes.py does for the 224 models; run it with two checkouts' interpreters and
compare with ``scripts/kernel_hashes.py --compare A B``::

    python docs/runs/s26/small_hashes.py TARGET_JSON OUT.json
"""
import hashlib
import json
import sys

import numpy as np
import torch

from aiq_tvm.models import get_model
from aiq_tvm.quant import ActQParams
from aiq_tvm.targets import resolve_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel


def shapes() -> list[tuple]:
    seen: set = set()
    for name in ("resnet20", "mobilenet_v2"):
        net = get_model(name).eval()

        def hook(mod, inp, _out):
            h, w = inp[0].shape[2:]
            seen.add((h, w, mod.in_channels, mod.out_channels, mod.kernel_size[0],
                      mod.stride[0], mod.padding[0], mod.groups))

        hooks = [m.register_forward_hook(hook) for m in net.modules()
                 if isinstance(m, torch.nn.Conv2d)]
        with torch.no_grad():
            net(torch.zeros(1, 3, 32, 32))
        for h in hooks:
            h.remove()
    return sorted(seen)


target = resolve_target(json.loads(sys.argv[1]))[0]
rng = np.random.default_rng(0)
qp = ActQParams.from_range(-1.0, 3.0)
out = {}
for h, w, c, o, k, s, p, g in shapes():
    for n in (1, 16):
        spec = ConvSpec(n, h, w, c, o, k, k, stride=s, padding=p, groups=g)
        wt = rng.standard_normal(spec.weight_shape).astype(np.float32)
        for prec in ("fp32", "int8", "int4"):
            kw = {} if prec == "fp32" else {"act_qparams": qp}
            kern = conv2d_kernel(spec, prec, wt, None, target=target, **kw)
            dig = hashlib.sha1(kern.prim_func.script().encode()).hexdigest()[:12]
            out[f"{(n, h, w, c, o, k, s, p, g)} {prec}"] = (
                f"{dig} {kern.info.get('algorithm', 'direct')} {kern.info.get('schedule')}")
print(f"{len(out)} kernels")
with open(sys.argv[2], "w") as fh:
    json.dump(out, fh, indent=0)
