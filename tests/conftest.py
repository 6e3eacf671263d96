"""Shared fixtures: thread count, target, and small torch models with non-trivial BN stats."""

import os

os.environ.setdefault("TVM_NUM_THREADS", "2")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give batch norms O(1) statistics so folded weights are not the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


class TinyNet(nn.Module):
    """Conv-BN-ReLU, depthwise, a grouped conv (2 channels per group: no AIQ kernel), a residual
    add, and a linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=4)
        self.head = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        y = torch.relu(self.bn(self.stem(x)))
        y = nn.functional.relu6(self.dw(y)) + y
        y = self.grouped(y)
        return self.head(torch.flatten(y, 1))


@pytest.fixture(scope="session")
def target():
    from aiq_tvm.targets import resolve_target

    return resolve_target("llvm")[0]


@pytest.fixture(scope="session")
def tiny():
    torch.manual_seed(0)
    return randomize_bn(TinyNet())
