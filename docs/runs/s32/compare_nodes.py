"""Session 32: our in-situ kernel times (``scripts/profile_insitu.py`` output) beside ONNX
Runtime's per-node times (``ort_nodes.py`` output), conv layers grouped by shape (our
kernels are shared by layers of one shape and named after the first), other ops by kind::

    python docs/runs/s32/compare_nodes.py inception_v3 299 ours.txt ort.txt
"""
import collections, json, re, sys
import torch
from aiq_tvm.models import torchvision_zoo as zoo

name, size, ours_path, ort_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
model = zoo.torchvision_model(name, size=size)
shapes = {}
def hook(n):
    def f(m, i, o):
        shapes[n] = (tuple(m.weight.shape), tuple(i[0].shape[2:]), m.stride, m.groups)
    return f
for n, m in model.named_modules():
    if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
        if isinstance(m, torch.nn.Linear):
            m.stride = (1,); m.groups = 1
        m.register_forward_hook(hook(n))
model(torch.from_numpy(zoo.calibration_images(1, size)))
bykey = {}
for n, sh in shapes.items():
    bykey[n.replace(".", "_")] = sh
ours = collections.defaultdict(float); ocount = collections.Counter()
for line in open(ours_path):
    m = re.match(r"\| \d+ \| (\S+) \| ([\d.]+) \|", line)
    if not m:
        continue
    k, us = m.group(1), float(m.group(2))
    base = re.sub(r"_(fp32|int8|int4|w8|w4)\d*$", "", k)
    base = re.sub(r"_conv$", "", base) if base not in bykey else base
    cand = [b for b in (base, base + "_conv", re.sub(r"_conv$", "", base)) if b in bykey]
    key = (bykey[cand[0]][0], bykey[cand[0]][1]) if cand else re.sub(r"\d+$", "", k)
    ours[key] += us; ocount[key] += 1
ort = collections.defaultdict(float); rcount = collections.Counter()
for line in open(ort_path):
    p = line.rstrip("\n").split("\t")
    if len(p) != 3 or p[0] == "TOTAL":
        continue
    ort[p[0]] = float(p[2])
# ORT rows keyed by shape via the args file written next to it (json), else by op kind
ort_shapes = json.load(open(ort_path + ".shapes.json"))
ortk = collections.defaultdict(float)
for nm, (op, w, hw) in ort_shapes.items():
    key = (tuple(w), tuple(hw)) if op in ("Conv", "Gemm", "FusedConv", "FusedGemm") and w else op
    ortk[key] += ort.get(nm, 0.0); rcount[key] += 1
keys = sorted(set(ours) | set(ortk), key=lambda k: -(ours.get(k, 0) - ortk.get(k, 0)))
print(f"{'key':60s} {'n':>3s} {'ours us':>9s} {'ORT us':>9s} {'ours/ORT':>8s}")
for k in keys:
    o, r = ours.get(k, 0.0), ortk.get(k, 0.0)
    print(f"{str(k):60s} {ocount.get(k,0):3d} {o:9.1f} {r:9.1f} {o / r if r else float('nan'):8.2f}")
print(f"{'TOTAL':60s}     {sum(ours.values()):9.1f} {sum(ortk.values()):9.1f}")
