"""EfficientNet-B0 (random init, BN statistics set) at 97 x 131, session 48: each MBConv block of
features[4] and features[5] built alone at FP32, fed torch's float64 result of the blocks
before it (rounded to float32); our output and torch's float32 against torch's float64.

    TVM_NUM_THREADS=2 python docs/runs/s48/effnet_blocks.py
"""
import numpy as np, torch, aiq_tvm, copy, sys
from torch import nn
from aiq_tvm.models.torchvision_zoo import torchvision_model
m = torchvision_model("efficientnet_b0", size=224)
hw = (97, 131)
rng = np.random.default_rng(0); rng.uniform(0, 1, (16, 3) + hw); x = rng.uniform(0, 1, (1, 3) + hw).astype(np.float32)
with torch.no_grad():
    h = m.features[:4].double()(torch.from_numpy(x).double())
blocks = list(m.features[4]) + list(m.features[5])
m.float()
for i, blk in enumerate(blocks):
    blk = blk.eval()
    inp = h.float().numpy()
    with torch.no_grad():
        out64 = copy.deepcopy(blk).double()(torch.from_numpy(inp).double()).numpy()
        out32 = blk(torch.from_numpy(inp)).numpy()
    mod, params = aiq_tvm.from_torch(blk, torch.from_numpy(inp))
    res = aiq_tvm.build(mod, params=params, plan="fp32", batch_size=1)
    y = res.run(inp, 1)
    r = lambda a, b: np.abs(a - b).max() / np.abs(b).max()
    d = np.abs(y - out64)
    print(i, inp.shape, "->", out64.shape, f"ours {r(y, out64):.2e} torch32 {r(out32, out64):.2e}", np.unravel_index(d.argmax(), d.shape), flush=True)
    with torch.no_grad():
        h = copy.deepcopy(blk).double()(h)
