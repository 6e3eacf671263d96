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

``random_cnn(seed, profile="modern")`` adds the blocks of networks after ResNet: transposed
convs and resizes (decoders, feature pyramids), group / instance norm, ConvNeXt blocks
(channels-last layer norm between linear layers), self-attention over the positions,
squeeze-and-excitation, channel shuffle, and the activations those use (Mish, softplus,
ELU, GELU-tanh).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
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
# Activations drawn only by profiles that ask for them (``Profile.activations``), so the
# networks of the first profiles stay what their seeds drew before.
MORE_ACTIVATIONS = {
    "mish": nn.Mish,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "logsigmoid": nn.LogSigmoid,
}
BLOCKS = ("conv", "residual", "concat", "pool")
MODERN_BLOCKS = BLOCKS + ("upsample", "pyramid", "norm", "convnext", "attention", "se",
                          "shuffle")
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
    blocks: tuple[str, ...] = BLOCKS
    activations: tuple[str, ...] = tuple(ACTIVATIONS)
    max_positions: int = 1024  # feature maps an upsampling block may grow to (h * w)

    def __post_init__(self):
        unknown = [b for b in self.blocks if b not in MODERN_BLOCKS]
        if unknown:
            raise ValueError(f"unknown blocks {unknown}; choose from {list(MODERN_BLOCKS)}")
        known = {**ACTIVATIONS, **MORE_ACTIVATIONS}
        unknown = [a for a in self.activations if a not in known]
        if unknown:
            raise ValueError(f"unknown activations {unknown}; choose from {list(known)}")
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
    "modern": Profile(in_channels=(3,), size=(12, 41), widths=(8, 16, 24, 32, 48, 64),
                      shortcut_widths=(16, 32, 64), groups=(2, 4, 8), batches=(1, 2, 4),
                      max_flatten=1 << 14, blocks=MODERN_BLOCKS,
                      activations=tuple(ACTIVATIONS) + tuple(MORE_ACTIVATIONS)),
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


class _ConvNeXtBlock(nn.Module):
    """ConvNeXt's block: depthwise conv, channels-last layer norm, Linear 4x -> GELU -> Linear,
    a per-channel layer scale, and the residual add."""

    def __init__(self, c: int, k: int):
        super().__init__()
        self.dw = nn.Conv2d(c, c, k, padding=k // 2, groups=c)
        self.norm = nn.LayerNorm(c, eps=1e-6)
        self.pw1, self.act, self.pw2 = nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.full((c,), 0.5))

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.pw2(self.act(self.pw1(self.norm(y)))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class _ChannelsLastLayerNorm(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.norm = nn.LayerNorm(c)

    def forward(self, x):
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _MhaAttention(nn.Module):
    """Pre-norm self-attention over the positions with ``nn.MultiheadAttention``, residual."""

    def __init__(self, c: int, heads: int):
        super().__init__()
        self.norm = nn.LayerNorm(c)
        self.attn = nn.MultiheadAttention(c, heads, batch_first=True)

    def forward(self, x):
        n, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        q = self.norm(t)
        a, _ = self.attn(q, q, q, need_weights=False)
        return (t + a).transpose(1, 2).reshape(n, c, h, w)


class _SdpaAttention(nn.Module):
    """Self-attention written as modern code does: one qkv Linear, heads split by reshape,
    ``F.scaled_dot_product_attention``, an output projection, residual."""

    def __init__(self, c: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(c, 3 * c), nn.Linear(c, c)

    def forward(self, x):
        n, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        qkv = self.qkv(t).reshape(n, h * w, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, h * w, c)
        return x + self.proj(a).transpose(1, 2).reshape(n, c, h, w)


class _SqueezeExcite(nn.Module):
    def __init__(self, c: int, squeeze: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, squeeze, 1), nn.Conv2d(squeeze, c, 1)

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


class _Shuffle(nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x):
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class _Pyramid(nn.Module):
    """``x`` beside a pooled, convolved copy of it resized back to its size (PSPNet / FPN)."""

    def __init__(self, pool: int, conv: nn.Module, mode: str):
        super().__init__()
        self.pool, self.conv, self.mode = nn.AvgPool2d(pool), conv, mode

    def forward(self, x):
        y = self.conv(self.pool(x))
        corners = {} if self.mode == "nearest" else {"align_corners": False}
        y = F.interpolate(y, size=x.shape[-2:], mode=self.mode, **corners)
        return torch.cat([x, y], 1)


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
        name = self.pick(list(self.profile.activations))
        self.names.append(name)
        return {**ACTIVATIONS, **MORE_ACTIVATIONS}[name]()

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

    # The blocks below are drawn by the "modern" profile only (``Profile.blocks``).

    def upsample(self) -> nn.Module:
        """A 2x upsampling: a transposed conv (sub-pixel shapes, and one whose output is not a
        multiple of the stride) or a nearest / bilinear resize followed by a 3x3 conv."""
        if self.h * self.w * 4 > self.profile.max_positions:
            return self.conv()
        kind = self.pick(["tconv2", "tconv4", "tconv3", "tconv3odd", "nearest", "bilinear"])
        c, out = self.c, self.pick(list(self.profile.widths))
        if kind.startswith("tconv"):
            k, p, op = {"tconv2": (2, 0, 0), "tconv4": (4, 1, 0), "tconv3": (3, 1, 1),
                        "tconv3odd": (3, 1, 0)}[kind]
            layers: list[nn.Module] = [nn.ConvTranspose2d(c, out, k, 2, p, op,
                                                          bias=bool(self.rng.integers(2)))]
            self.h, self.w = (self.h - 1) * 2 - 2 * p + k + op, (self.w - 1) * 2 - 2 * p + k + op
            self.names.append(f"convT{k}x{k}/s2/p{p}/op{op} {c}->{out}")
            if self.rng.random() < 0.5:
                layers.append(nn.BatchNorm2d(out))
            layers.append(self._act())
            self.c = out
            return nn.Sequential(*layers)
        self.names.append(f"upsample2 {kind}")
        self.h, self.w = 2 * self.h, 2 * self.w
        corners = {} if kind == "nearest" else {"align_corners": False}
        return nn.Sequential(nn.Upsample(scale_factor=2, mode=kind, **corners),
                             self.conv(out=out, keep_size=True))

    def pyramid(self) -> nn.Module:
        if min(self.h, self.w) < 4:
            return self.conv()
        c, h, w = self.c, self.h, self.w
        pool = self.pick([2, 4]) if min(h, w) >= 8 else 2
        mode = self.pick(["nearest", "bilinear"])
        self.names.append(f"pyramid[avgpool{pool} {mode}")
        self.h, self.w = h // pool, w // pool
        conv = self.conv(keep_size=True)
        self.names.append("]")
        self.c, self.h, self.w = c + self.c, h, w
        return _Pyramid(pool, conv, mode)

    def norm(self) -> nn.Module:
        """A group / instance / channels-last layer norm and an activation."""
        c = self.c
        kind = self.pick(["group", "instance", "layer"])
        if kind == "group":
            g = self.pick([g for g in (1, 2, 4, 8, c) if c % g == 0])
            layer: nn.Module = nn.GroupNorm(g, c)
            self.names.append(f"groupnorm{g}")
        elif kind == "instance":
            layer = nn.InstanceNorm2d(c, affine=bool(self.rng.integers(2)))
            self.names.append("instancenorm")
        else:
            layer = _ChannelsLastLayerNorm(c)
            self.names.append("layernorm(channels last)")
        return nn.Sequential(layer, self._act())

    def convnext(self) -> nn.Module:
        k = self.pick([3, 7])
        self.names.append(f"convnext{k}x{k} {self.c}")
        return _ConvNeXtBlock(self.c, k)

    def attention(self) -> nn.Module:
        heads = [h for h in (1, 2, 4) if self.c % h == 0 and self.c // h >= 4]
        if self.h * self.w > 256 or not heads:
            return self.conv()
        kind, h = self.pick(["mha", "sdpa"]), self.pick(heads)
        self.names.append(f"attention({kind}, {h} heads) over {self.h * self.w} positions")
        return (_MhaAttention if kind == "mha" else _SdpaAttention)(self.c, h)

    def se(self) -> nn.Module:
        squeeze = max(1, self.c // self.pick([4, 8]))
        self.names.append(f"se {self.c}->{squeeze}")
        return _SqueezeExcite(self.c, squeeze)

    def shuffle(self) -> nn.Module:
        groups = [g for g in (2, 3, 4) if self.c % g == 0]
        if not groups:
            return self.conv()
        g = self.pick(groups)
        self.names.append(f"shuffle{g}")
        return _Shuffle(g)

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
    """O(1) batch-norm statistics, so folding changes the weights and eval mode is not trivial;
    other norms get an affine transform other than the identity."""
    with torch.no_grad():
        for m in model.modules():
            norm = isinstance(m, (nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d))
            if norm and m.weight is not None:
                m.weight.copy_(torch.from_numpy(
                    rng.uniform(0.5, 1.5, m.weight.shape).astype(np.float32)))
                m.bias.copy_(torch.from_numpy(
                    rng.normal(0, 0.1, m.bias.shape).astype(np.float32)))
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
            kind = d.pick(list(prof.blocks))
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


# How a case reaches aiq_tvm: through torch.export, or as an ONNX file written by PyTorch's
# TorchScript exporter or by its torch.export-based one (the default since PyTorch 2.9).
FRONTENDS = ("torch", "onnx-script", "onnx-dynamo")


class OnnxExportError(RuntimeError):
    """PyTorch's exporter could not write the case as ONNX (not a failure of aiq_tvm; e.g. the
    TorchScript exporter rejects adaptive pools whose output size does not divide the input)."""


def import_case(case: CnnCase, frontend: str = "torch", workdir=None):
    """``(mod, params)`` of ``case`` imported through ``frontend`` (one of ``FRONTENDS``), with
    a dynamic batch. An ONNX file is written to ``workdir`` (a temporary directory if None)."""
    import tempfile
    import warnings

    import aiq_tvm

    if frontend not in FRONTENDS:
        raise ValueError(f"unknown frontend {frontend!r}; choose one of {list(FRONTENDS)}")
    if frontend == "torch":
        return aiq_tvm.from_torch(case.model, case.x)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = f"{tmp}/case{case.seed}.onnx"
        x = torch.from_numpy(case.x)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation
                if frontend == "onnx-dynamo":
                    torch.onnx.export(case.model, (x,), path, dynamo=True, input_names=["x"],
                                      dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
                                      verbose=False)
                else:
                    torch.onnx.export(case.model, (x,), path, dynamo=False, input_names=["x"],
                                      dynamic_axes={"x": {0: "batch"}})
        except Exception as err:  # noqa: BLE001 - torch raises several kinds
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise OnnxExportError(f"{frontend}: {type(err).__name__}: {first}") from err
        return aiq_tvm.from_onnx(path)


def build_and_compare(case: CnnCase, target="llvm", frontend: str = "torch") -> dict[str, float]:
    """Import ``case`` (through ``frontend``, see :func:`import_case`), build it for ``target``
    at fp32 and at int8 (calibrated on its own input) and return each build's relative error
    against torch: ``{"fp32": e, "int8": e}`` (a target this host cannot run is run as a host
    build with its numerics)."""
    import aiq_tvm

    with torch.no_grad():
        ref = case.model(torch.from_numpy(case.x)).numpy().astype(np.float64)
    mod, params = import_case(case, frontend)
    n = len(case.x)
    errors = {}
    for plan in ("fp32", "int8"):
        res = aiq_tvm.build(mod, target, params=params, plan=plan, batch_size=n,
                            calib_data=case.x if plan == "int8" else None)
        errors[plan] = relative_error(res.run(case.x), ref)
    return errors
