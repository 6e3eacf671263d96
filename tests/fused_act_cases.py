"""Shared by the fused-activation tests (SiLU, hardswish): a small CNN with the activation
after every conv / dense kind, its FP32 and INT8 builds against torch, and the operator kinds
left to TVM's own kernels."""

import numpy as np
import torch
from torch import nn

import aiq_tvm


def act_cnn(act: type[nn.Module]) -> nn.Module:
    """Stem conv, depthwise, 1x1 and dense, each followed by ``act()``; BN with non-trivial
    statistics so the fold is exercised."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), act(),
        nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.BatchNorm2d(32), act(),
        nn.Conv2d(32, 48, 1), act(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(48, 24), act(), nn.Linear(24, 10))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def glue_kinds(res) -> set[str]:
    """Operator kinds left to TVM's own kernels (outside the AIQ layers)."""
    from tvm import relax

    kinds = set()
    for val in relax.analysis.get_var2val(res.annotated["main"]).values():
        op = getattr(val, "op", None)
        if isinstance(val, relax.Call) and hasattr(op, "name"):
            kinds.add(op.name)
    return kinds


def build_fp32_int8(model: nn.Module):
    """(torch's logits, {plan: (BuildResult, logits)}) for plans fp32 and int8 on 16 random
    images at batch 8."""
    x = np.random.default_rng(0).standard_normal((16, 3, 16, 16)).astype(np.float32)
    ref = model(torch.from_numpy(x)).detach().numpy()
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(x[:2]))
    out = {}
    for plan in ("fp32", "int8"):
        res = aiq_tvm.build(mod, params=params, plan=plan, calib_data=x, batch_size=8)
        out[plan] = (res, res.run(x, 8))
    return ref, out


def min_cosine(y: np.ndarray, ref: np.ndarray) -> float:
    """Smallest per-image cosine similarity of two logit batches."""
    cos = (y * ref).sum(1) / (np.linalg.norm(y, axis=1) * np.linalg.norm(ref, axis=1))
    return float(cos.min())
