"""Random CNNs from a seed, for robustness tests of import -> annotate -> build -> run.

``random_cnn(seed)`` draws a small network mixing what real CNNs contain: odd channel counts,
kernels 1/3/5/7, strides, dilation, grouped and depthwise convs, residual adds (identity or 1x1
conv shortcuts), channel concat,
max/avg/adaptive pooling, the usual activations, non-square inputs and batch sizes 1/3/7. The
same seed always gives the same network, weights and input, so a failure is reproducible from
its seed alone (``python scripts/fuzz_models.py --seeds 17``).

``random_cnn(seed, profile="wide")`` draws the same kinds of layers at the sizes of real
networks' middle stages (3-channel input of 32 to 96 pixels a side, 16 to 256 channels,
groups up to 16, batches 1/2/8), where the planner takes the paths small maps never reach
(Winograd, row and channel tasks, AMX tiles, micro-batches, cache-sized reduction chunks).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hardswish": nn.Hardswish,
    "hardsigmoid": nn.Hardsigmoid,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "leaky_relu": lambda: nn.LeakyReLU(0.1),
    "none": nn.Identity,
}
BATCHES = (1, 3, 7)


@dataclass(frozen=True)
class Profile:
    """The sizes a drawn network's layers come from."""

    in_channels: tuple[int, ...] = (1, 3, 4)
    size: tuple[int, int] = (9, 25)  # input height and width: [low, high)
    widths: tuple[int, ...] = (3, 5, 7, 8, 12, 17, 24)
    shortcut_widths: tuple[int, ...] = (3, 8, 12, 17)
    groups: tuple[int, ...] = (2, 3, 4)
    batches: tuple[int, ...] = BATCHES
    max_flatten: int | None = None  # wider feature maps take the pooled head instead

    def __post_init__(self):
        if not (0 < self.size[0] < self.size[1]):
            raise ValueError(f"size must be [low, high) with 0 < low < high, got {self.size}")
        for name in ("in_channels", "widths", "shortcut_widths", "groups", "batches"):
            if not getattr(self, name) or min(getattr(self, name)) < 1:
                raise ValueError(f"{name} must hold positive integers, got {getattr(self, name)}")


PROFILES = {
    "small": Profile(),
    "wide": Profile(in_channels=(3,), size=(32, 97), widths=(16, 24, 32, 48, 64, 96, 128, 160, 256),
                    shortcut_widths=(32, 64, 128, 256), groups=(2, 4, 8, 16), batches=(1, 2, 8),
                    max_flatten=1 << 16),
}


@dataclass
class CnnCase:
    """A drawn network with its input and a one-line description of its layers."""

    seed: int
    model: nn.Module
    x: np.ndarray
    layers: list[str] = field(default_factory=list)

    def describe(self) -> str:
        n, c, h, w = self.x.shape
        return f"seed {self.seed}: input {n}x{c}x{h}x{w}; " + ", ".join(self.layers)


class _Residual(nn.Module):
    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None):
        super().__init__()
        self.body = body
        self.shortcut = nn.Identity() if shortcut is None else shortcut

    def forward(self, x):
        return self.shortcut(x) + self.body(x)


class _Concat(nn.Module):
    def __init__(self, a: nn.Module, b: nn.Module):
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], dim=1)


class _Net(nn.Module):
    def __init__(self, features: nn.Sequential, head: nn.Module):
        super().__init__()
        self.features, self.head = features, head

    def forward(self, x):
        return self.head(self.features(x))


class _Drawer:
    """Draws layers while tracking the feature map's channels and size."""

    def __init__(self, rng: np.random.Generator, c: int, h: int, w: int,
                 side: np.random.Generator | None = None, profile: Profile = PROFILES["small"]):
        self.rng, self.c, self.h, self.w, self.profile = rng, c, h, w, profile
        # Draws added after the generator's first version (projected shortcuts) come from
        # their own stream, so every seed keeps drawing the layers it drew before.
        self.side = np.random.default_rng(0) if side is None else side
        self.names: list[str] = []

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def _act(self) -> nn.Module:
        name = self.pick(list(ACTIVATIONS))
        self.names.append(name)
        return ACTIVATIONS[name]()

    def conv(self, out: int | None = None, keep_size: bool = False) -> nn.Sequential:
        c = self.c
        k = self.pick([1, 3, 3, 5, 7])
        dil = self.pick([1, 1, 2]) if k == 3 else 1
        stride = 1 if keep_size else self.pick([1, 1, 2])
        if min(self.h, self.w) < (k - 1) * dil + 1:
            k, dil = 1, 1
        if out is None:
            out = self.pick(list(self.profile.widths))
        groups = 1
        kind = self.pick(["regular", "regular", "depthwise", "grouped"])
        if kind == "depthwise":
            out, groups = c, c
        elif kind == "grouped":
            common = [g for g in self.profile.groups if c % g == 0 and out % g == 0]
            groups = self.pick(common) if common else 1
        pad = (k - 1) // 2 * dil
        layers: list[nn.Module] = [nn.Conv2d(c, out, k, stride, pad, dilation=dil,
                                             groups=groups, bias=bool(self.rng.integers(2)))]
        desc = f"conv{k}x{k}/s{stride}/d{dil}/g{groups} {c}->{out}"
        if self.rng.random() < 0.6:
            layers.append(nn.BatchNorm2d(out))
            desc += "+bn"
        self.names.append(desc)
        layers.append(self._act())
        self.c = out
        self.h = (self.h + 2 * pad - dil * (k - 1) - 1) // stride + 1
        self.w = (self.w + 2 * pad - dil * (k - 1) - 1) // stride + 1
        return nn.Sequential(*layers)

    def residual(self) -> nn.Module:
        """``x + body(x)``, or half the time ``proj(x) + body(x)`` with a 1x1 conv (+BN)
        shortcut and a body that may change the channel count (ResNet's downsample block)."""
        c0 = self.c
        project = self.side.random() < 0.5
        out = int(self.side.choice(list(self.profile.shortcut_widths))) if project else self.c
        self.names.append("projected residual[" if project else "residual[")
        body = nn.Sequential(self.conv(out=out, keep_size=True),
                             self.conv(out=out, keep_size=True))
        self.names.append("]")
        if not project:
            return _Residual(body)
        layers: list[nn.Module] = [nn.Conv2d(c0, self.c, 1, bias=bool(self.side.integers(2)))]
        desc = f"shortcut conv1x1 {c0}->{self.c}"
        if self.side.random() < 0.6:
            layers.append(nn.BatchNorm2d(self.c))
            desc += "+bn"
        self.names.append(desc)
        return _Residual(body, nn.Sequential(*layers))

    def concat(self) -> nn.Module:
        c, h, w = self.c, self.h, self.w
        self.names.append("concat[")
        a = self.conv(keep_size=True)
        ca = self.c
        self.c, self.h, self.w = c, h, w
        b = self.conv(keep_size=True)
        self.names.append("]")
        self.c = ca + self.c
        return _Concat(a, b)

    def pool(self) -> nn.Module:
        kind = self.pick(["max", "avg", "adaptive_avg", "adaptive_max"])
        if kind.startswith("adaptive"):
            oh, ow = max(1, self.h // 2), max(1, self.w // 2)
            self.names.append(f"{kind}pool->{oh}x{ow}")
            self.h, self.w = oh, ow
            cls = nn.AdaptiveAvgPool2d if kind == "adaptive_avg" else nn.AdaptiveMaxPool2d
            return cls((oh, ow))
        if min(self.h, self.w) < 2:
            return nn.Identity()
        self.names.append(f"{kind}pool2")
        self.h, self.w = self.h // 2, self.w // 2
        return (nn.MaxPool2d if kind == "max" else nn.AvgPool2d)(2)

    def head(self, classes: int) -> nn.Module:
        pooled = self.rng.random() < 0.5
        limit = self.profile.max_flatten
        if pooled or (limit is not None and self.c * self.h * self.w > limit):
            self.names.append(f"gap+linear {self.c}->{classes}")
            return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(self.c, classes))
        feat = self.c * self.h * self.w
        self.names.append(f"flatten+linear {feat}->{classes}")
        return nn.Sequential(nn.Flatten(), nn.Linear(feat, classes))


def _set_bn_statistics(model: nn.Module, rng: np.random.Generator) -> None:
    """O(1) batch-norm statistics, so folding changes the weights and eval mode is not trivial."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, n).astype(np.float32)))
                m.bias.copy_(torch.from_numpy(rng.normal(0, 0.1, n).astype(np.float32)))
                m.running_mean.copy_(torch.from_numpy(rng.normal(0, 0.1, n).astype(np.float32)))
                m.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, n).astype(np.float32)))


def random_cnn(seed: int, max_blocks: int = 4, profile: str = "small") -> CnnCase:
    """Draw network ``seed``: 1 to ``max_blocks`` blocks after a stem, then a classifier, with
    the sizes of ``profile`` (a name in ``PROFILES``)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    prof = PROFILES[profile]
    rng = np.random.default_rng(seed)
    c = int(rng.choice(list(prof.in_channels)))
    h, w = int(rng.integers(*prof.size)), int(rng.integers(*prof.size))
    d = _Drawer(rng, c, h, w, side=np.random.default_rng([seed, 1]), profile=prof)
    # Modules draw their initial weights from torch's global generator as they are built, so
    # it is seeded before the first one (and restored after, leaving the caller's draws alone).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        blocks = [d.conv()]
        for _ in range(int(rng.integers(1, max_blocks + 1))):
            kind = d.pick(["conv", "residual", "concat", "pool"])
            blocks.append(getattr(d, kind)())
        classes = int(rng.integers(2, 12))
        model = _Net(nn.Sequential(*blocks), d.head(classes))
    _set_bn_statistics(model, rng)
    model.eval()
    n = int(rng.choice(list(prof.batches)))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    return CnnCase(seed=seed, model=model, x=x, layers=d.names)


def relative_error(out: np.ndarray, ref: np.ndarray) -> float:
    """``||out - ref|| / ||ref||`` over the whole output (0 when both are zero)."""
    den = float(np.linalg.norm(ref))
    num = float(np.linalg.norm(np.asarray(out, np.float64) - ref))
    return num / den if den else num


FP32_TOL = 1e-4
INT8_TOL = 0.1


def build_and_compare(case: CnnCase, target="llvm") -> dict[str, float]:
    """Import ``case``, build it for ``target`` at fp32 and at int8 (calibrated on its own
    input) and return each build's relative error against torch: ``{"fp32": e, "int8": e}``
    (a target this host cannot run is run as a host build with its numerics)."""
    import aiq_tvm

    with torch.no_grad():
        ref = case.model(torch.from_numpy(case.x)).numpy().astype(np.float64)
    mod, params = aiq_tvm.from_torch(case.model, case.x)
    n = len(case.x)
    errors = {}
    for plan in ("fp32", "int8"):
        res = aiq_tvm.build(mod, target, params=params, plan=plan, batch_size=n,
                            calib_data=case.x if plan == "int8" else None)
        errors[plan] = relative_error(res.run(case.x), ref)
    return errors
