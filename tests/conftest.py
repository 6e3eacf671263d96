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
    """Conv-BN-ReLU, depthwise, a grouped conv (2 channels per group) whose weight forward()
    scales, so it has no AIQ kernel (aiq_tvm.regroup_convs pads parameters only), a residual
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
        y = nn.functional.conv2d(y, self.grouped.weight * 0.5, self.grouped.bias, padding=1,
                                 groups=4)
        return self.head(torch.flatten(y, 1))


@pytest.fixture(scope="session")
def target():
    from aiq_tvm.targets import resolve_target

    return resolve_target("llvm")[0]


@pytest.fixture(scope="session")
def tiny():
    torch.manual_seed(0)
    return randomize_bn(TinyNet())


# Zen 4's data caches per level (32 KiB L1d, 1 MiB L2 per core, 32 MiB L3), which the
# schedule tests that use zen4_caches were written against (sessions 1-22 ran on Zen 4 hosts).
ZEN4_CACHE_BYTES = {1: 32 << 10, 2: 1 << 20, 3: 32 << 20}
# The Intel Xeon guest of sessions 23-50 as its sysfs listed it (48 KiB L1d, 2 MiB L2 per
# core, 480 MiB last level), which the tests that use xeon_caches were written against.
XEON_CACHE_BYTES = {1: 48 << 10, 2: 2 << 20, 3: 480 << 20}


def _pin_host_caches(monkeypatch, sizes: dict) -> None:
    """This machine's caches (``capabilities.host_cache_bytes``) read as ``sizes`` per level;
    a test's own fake sysfs directory is still read."""
    import importlib

    caps_mod = importlib.import_module("aiq_tvm.targets.capabilities")
    real = caps_mod.host_cache_bytes

    def pinned(level=None, caches=caps_mod.SYSFS_CACHES):
        if caches != caps_mod.SYSFS_CACHES:
            return real(level, caches)
        return sizes[max(sizes) if level is None else level]

    monkeypatch.setattr(caps_mod, "host_cache_bytes", pinned)


@pytest.fixture
def zen4_caches(monkeypatch):
    """Plan kernels as on a Zen 4 host whatever this machine's caches are.

    A host-runnable target takes this machine's L2 (``TargetCaps.l2_bytes``), and a scratch or
    weights past its share select other schedules: on an Intel host with a 2 MiB L2, the 1.2 MB
    int8 weights of a test's "wide" conv stay in L2 and keep the row split.  Tests of the
    schedules that only weights past the L2 take pin the caches here; their numerics still
    run on this machine."""
    _pin_host_caches(monkeypatch, ZEN4_CACHE_BYTES)


@pytest.fixture
def xeon_caches(monkeypatch):
    """Plan kernels as on the 2 MiB-L2 Intel host whatever this machine's caches are: for the
    tests whose plans hold only while a layer's weights fit that L2 (on a Zen 4 host, 1 MiB of
    L2, MobileNetV2's 1.2 MB 960 -> 320 weights are priced as cycled past it)."""
    _pin_host_caches(monkeypatch, XEON_CACHE_BYTES)
