"""Session 35: the planner's choice (schedule, order, parallel loops, modelled cycles) for
every distinct conv of torchvision models, written as JSON, so two variants of the cost model
can be compared without building kernels. ``python plan_diff.py OUT.json [MODELS...]`` then
``python plan_diff.py --compare A.json B.json``."""
import json
import os
import sys

import torch
import torchvision
import tvm

from aiq_tvm.targets import resolve_target
from aiq_tvm.targets.x86 import ConvSpec
from aiq_tvm.targets.x86 import conv2d as cm
from aiq_tvm.targets.x86 import winograd as wino

DEFAULT = ("resnet18", "resnet50", "mobilenet_v2", "inception_v3", "wide_resnet50_2", "vgg16",
           "resnext50_32x4d", "densenet121", "googlenet", "mnasnet1_0", "regnet_y_800mf")


def shapes(name):
    size = 299 if name == "inception_v3" else 224
    kw = {"aux_logits": False, "init_weights": False} if name in ("inception_v3", "googlenet") \
        else {}
    net = getattr(torchvision.models, name)(weights=None, **kw).eval()
    seen = set()

    def hook(m, inp, _o):
        h, w = inp[0].shape[2:]
        seen.add((h, w, m.in_channels, m.out_channels, *m.kernel_size, *m.stride, *m.padding,
                  m.dilation[0], m.groups))

    hs = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        net(torch.zeros(1, 3, size, size))
    for h in hs:
        h.remove()
    return seen


def choice(spec, prec, target):
    ch = cm.conv_choice_for(spec, prec, target)
    if ch.wplan is not None:
        w = ch.wplan
        return f"winograd F({w.m}, 3) tiles {w.tiles} ocv {w.ocv} rows {w.rows} k {w.kgroup}"
    p = ch.plan
    t = getattr(p, "tile", None)
    if t is None:
        return f"{type(p).__name__}"
    return (f"{ch.fmt.name} tiles {'x'.join(map(str, t.tiles))} ocb {t.ocb} order "
            f"{'.'.join(t.order)} par {'.'.join(t.par)} kchunk {t.kchunk} cycles {p.cycles:.0f}")


if sys.argv[1] == "--compare":
    a, b = (json.load(open(f)) for f in sys.argv[2:4])
    diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    print(f"{len(a)} / {len(b)} choices, {len(diff)} differ")
    for k in diff:
        print(f"  {k}\n    {a.get(k)}\n    {b.get(k)}")
    sys.exit(0)
target = resolve_target("llvm")[0]
for assign in os.environ.get("PLAN_DIFF_SET", "").split(","):  # MODULE_CONSTANT=VALUE
    if assign:
        name, value = assign.split("=")
        setattr(wino, name, float(value))
names = sys.argv[2:] or DEFAULT
allshapes = set().union(*(shapes(n) for n in names))
out = {}
for h, w, c, o, kh, kw, sh, sw, ph, pw, d, g in sorted(allshapes):
    for n in (1, 8):
        spec = ConvSpec(n, h, w, c, o, kh, kw, stride=(sh, sw), padding=(ph, pw), dilation=d,
                        groups=g)
        for prec in ("fp32", "int8"):
            try:
                out[f"{(n, h, w, c, o, kh, kw, sh, ph, pw, d, g)} {prec}"] = choice(spec, prec,
                                                                                    target)
            except Exception as e:  # noqa: BLE001 - record what the planner refuses
                out[f"{(n, h, w, c, o, kh, kw, sh, ph, pw, d, g)} {prec}"] = f"error {e}"
json.dump(out, open(sys.argv[1], "w"), indent=0)
print(len(out), "choices")
