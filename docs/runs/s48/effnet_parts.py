"""EfficientNet-B0 (random init, BN statistics set) at 97 x 131, session 48: block
features[5][2]'s four parts (expand, depthwise, squeeze-and-excitation, project), each built
alone at FP32 on torch's float64 input to it; ours and torch's float32 against float64.

    TVM_NUM_THREADS=2 python docs/runs/s48/effnet_parts.py
"""
import numpy as np, torch, aiq_tvm, copy
from aiq_tvm.models.torchvision_zoo import torchvision_model
m = torchvision_model("efficientnet_b0", size=224)
hw = (97, 131)
rng = np.random.default_rng(0); rng.uniform(0, 1, (16, 3) + hw); x = rng.uniform(0, 1, (1, 3) + hw).astype(np.float32)
with torch.no_grad():
    h = torch.nn.Sequential(*m.features[:5], *list(m.features[5])[:2]).double()(torch.from_numpy(x).double())
m.float()
blk = m.features[5][2].eval()
inp = h.float().numpy()
with torch.no_grad():
    out64 = copy.deepcopy(blk).double()(torch.from_numpy(inp).double()).numpy()
    out32 = blk(torch.from_numpy(inp)).numpy()
r = lambda a, b: np.abs(a - b).max() / np.abs(b).max()
parts = list(blk.block)
with torch.no_grad():
    t = torch.from_numpy(inp).double()
    for i, p in enumerate(parts):
        p64 = copy.deepcopy(p).double()
        xin = t.float()
        o64 = p64(xin.double()).numpy()
        o32 = p(xin).numpy()
        mod, params = aiq_tvm.from_torch(p, xin)
        res = aiq_tvm.build(mod, params=params, plan="fp32", batch_size=1)
        y = res.run(xin.numpy(), 1)
        print(i, type(p).__name__, tuple(xin.shape), f"ours {r(y, o64):.2e} torch32 {r(o32, o64):.2e}")
        t = p64(t)
