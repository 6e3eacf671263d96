"""Where EfficientNet-B0's FP32 error at 97 x 131 grows, session 48: block features[5][2]'s
squeeze-and-excitation, piece by piece (pool + fc1 + SiLU; + fc2; + sigmoid), each built
alone at FP32 on torch's float64 input to it; ours and torch's float32 against float64.

    TVM_NUM_THREADS=2 python docs/runs/s48/effnet_se.py
"""
import numpy as np, torch, aiq_tvm, copy
from torch import nn
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
se = blk.block[2]
with torch.no_grad():
    t = torch.nn.Sequential(*list(blk.block)[:2]).double()(torch.from_numpy(inp).double()).float()
class FC1(nn.Module):
    def __init__(s, se): super().__init__(); s.se = se
    def forward(s, x): return s.se.activation(s.se.fc1(s.se.avgpool(x)))
class Scale(nn.Module):
    def __init__(s, se): super().__init__(); s.se = se
    def forward(s, x): return s.se.scale_activation(s.se.fc2(s.se.activation(s.se.fc1(s.se.avgpool(x)))))
class Z(nn.Module):
    def __init__(s, se): super().__init__(); s.se = se
    def forward(s, x): return s.se.fc2(s.se.activation(s.se.fc1(s.se.avgpool(x))))
for M in (FC1, Z, Scale):
    mm = M(se).eval()
    with torch.no_grad():
        o64 = copy.deepcopy(mm).double()(t.double()).numpy(); o32 = mm(t).numpy()
    mod, params = aiq_tvm.from_torch(mm, t)
    res = aiq_tvm.build(mod, params=params, plan="fp32", batch_size=1)
    y = res.run(t.numpy(), 1)
    print(M.__name__, f"ours {r(y, o64):.2e} torch32 {r(o32, o64):.2e}", "max|z|", np.abs(o64).max())
pooled64 = t.double().mean((2, 3), keepdim=True)
print("pool: torch32 mean err", r(t.mean((2,3), keepdim=True).numpy(), pooled64.numpy()))
