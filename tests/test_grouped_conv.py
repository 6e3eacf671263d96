"""Grouped convs (1 < groups < C): int8/int4 kernels exact against numpy on every ISA level
the host runs, the fused epilogue, the support rule, and torch -> build -> VM with the grouped
layers quantized."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_x86_kernels import run_kernel
from torch import nn

import aiq_tvm
from aiq_tvm import quant
from aiq_tvm.quant import ActQParams
from aiq_tvm.targets import capabilities
from aiq_tvm.targets.x86 import ConvSpec, UnsupportedLayer, conv2d_kernel
from conftest import randomize_bn
from isa import HASWELL, ZNVER4, isa_params

# (spec, channel vector lanes on znver4): group widths 4 (xmm), 8 (ymm), 16 (zmm), 24 (3 ymm);
# stride 1 and 2, batch 2, asymmetric padding.
GROUPED = {
    "g4x8_s1": (ConvSpec(1, 7, 7, 32, 32, 3, 3, padding=1, groups=4), 8),
    "g2x16_s2": (ConvSpec(2, 9, 8, 32, 32, 3, 3, stride=2, padding=(1, 1, 1, 0), groups=2), 16),
    "g8x4_s1": (ConvSpec(1, 6, 6, 32, 32, 3, 3, padding=1, groups=8), 4),
    "g2x24_s2": (ConvSpec(1, 8, 8, 48, 48, 3, 3, stride=2, padding=1, groups=2), 8),
}


def grouped_data(spec: ConvSpec, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(spec.in_shape) + 0.3).astype(np.float32)
    fan_in = np.prod(spec.weight_shape[1:])
    w = (rng.standard_normal(spec.weight_shape) / np.sqrt(fan_in)).astype(np.float32)
    b = rng.standard_normal(spec.O).astype(np.float32)
    res = rng.standard_normal(spec.out_shape).astype(np.float32)
    return x, w, b, res, ActQParams.from_range(float(x.min()), float(x.max()))


def reference(spec, scheme, x, w, b, qp, target, **kw):
    return quant.ref_conv2d(x, w, b, scheme, stride=spec.stride, padding=spec.padding,
                            groups=spec.groups, act_qparams=qp,
                            int8_qmax=capabilities(target).int8_weight_qmax, **kw)


@pytest.mark.parametrize("target", isa_params(("avx512_vnni", "avx2", "ssse3", "sse")))
@pytest.mark.parametrize("scheme", ["int8", "int4"])
@pytest.mark.parametrize("name", list(GROUPED))
def test_grouped_int_accumulator_exact(name, scheme, target):
    """``acc - corr`` of the grouped kernel equals numpy's integer conv bit for bit."""
    spec, _ = GROUPED[name]
    x, w, b, _, qp = grouped_data(spec)
    k = conv2d_kernel(spec, scheme, w, b, act_qparams=qp, target=target, debug_acc=True)
    assert k.info["schedule"].startswith("nhwc_grouped_dot")  # a dot instruction, not scalar
    acc = run_kernel(k, quant.quantize_act(x, qp), target=target)
    np.testing.assert_array_equal(acc, reference(spec, scheme, x, w, b, qp, target).acc)


def test_grouped_channel_vectors_fit_the_groups():
    """Vectors narrow to the group width (xmm for 4 channels per group) on VNNI."""
    for name, (spec, lanes) in GROUPED.items():
        x, w, b, _, qp = grouped_data(spec)
        k = conv2d_kernel(spec, "int8", w, b, act_qparams=qp, target=ZNVER4)
        assert k.info["intrin"] == f"aiq_vpdpbusd{32 * lanes}_u8i8", name


@pytest.mark.parametrize("target", isa_params(("avx512_vnni", "avx2")))
@pytest.mark.parametrize("scheme", ["fp32", "int8", "int4"])
def test_grouped_fused_epilogue(scheme, target):
    """Residual + activation + requantized uint8 output on a grouped layer, against numpy."""
    spec, _ = GROUPED["g2x24_s2"]
    x, w, b, res, qp = grouped_data(spec, seed=1)
    out_qp = ActQParams.from_range(0.0, 1.5)  # relu zeros and large values clip
    kw = dict(act="relu", act_qparams=qp, residual=True, target=target)
    ref = reference(spec, scheme, x, w, b, qp, target, act="relu", residual=res,
                    out_qparams=out_qp)
    xin = x if scheme == "fp32" else quant.quantize_act(x, qp)
    y = run_kernel(conv2d_kernel(spec, scheme, w, b, **kw), xin, res, target=target)
    np.testing.assert_allclose(y, ref.y, rtol=1e-5, atol=1e-5 * np.abs(ref.y).max())
    q = run_kernel(conv2d_kernel(spec, scheme, w, b, out_qparams=out_qp, **kw), xin, res,
                   target=target)
    assert q.dtype == np.uint8 and (q == 0).any() and (q == 255).any()
    # The reference rounds its float64 value: at most one code apart.
    assert np.abs(q.astype(int) - ref.q.astype(int)).max() <= 1


@pytest.mark.parametrize("c,o,groups,needle", [
    (8, 8, 4, "2 input / 2 output channels per group"),
    (24, 12, 4, "6 input / 3 output channels per group"),
])
def test_grouped_shapes_without_kernel_are_refused(c, o, groups, needle):
    spec = ConvSpec(1, 6, 6, c, o, 3, 3, padding=1, groups=groups)
    with pytest.raises(UnsupportedLayer, match=needle):
        conv2d_kernel(spec, "int8", np.zeros(spec.weight_shape, np.float32), None,
                      act_qparams=ActQParams.from_range(0.0, 1.0), target=HASWELL)


class TinyGrouped(nn.Module):
    """Stem, two ResNeXt/RegNet-style grouped 3x3 convs (8 channels per group at stride 1,
    4 input channels per group at stride 2), a residual add, pooling and a linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU())
        self.g1 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=2, bias=False),
                                nn.BatchNorm2d(16), nn.ReLU())
        self.g2 = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1, groups=4, bias=False),
                                nn.BatchNorm2d(32), nn.ReLU())
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        y = self.stem(x)
        y = self.g1(y) + y
        y = self.g2(y)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


def test_grouped_cnn_builds_int8_with_grouped_layers_quantized():
    torch.manual_seed(0)
    model = randomize_bn(TinyGrouped())
    x = np.random.default_rng(0).standard_normal((16, 3, 12, 12)).astype(np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(x[:2]))
    res = aiq_tvm.build(mod, params=params, plan="int8", calib_data=x, batch_size=16)
    prec = res.report.precisions()
    grouped = [r for r in res.report.rows if r.op == "grouped_conv2d"]
    assert [r.name for r in grouped] == ["g1.0", "g2.0"]
    assert all(prec[r.name] == "int8" for r in grouped)
    assert not any(r.note for r in grouped)  # no FP32 fallback recorded
    assert {"g1.0", "g2.0"} <= set(res.cost.searchable)  # the search's layer list
    assert not [lc.name for lc in res.cost.layers if not lc.supported]  # nothing left FP32
    out = res.run(x)
    cos = (out * logits).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(logits, axis=1)
    assert cos.min() > 0.99
    # The analysis counts a grouped conv's FLOPs over its C/G input channels.
    g2 = grouped[1]
    n, o, oh, ow = g2.out_shape
    assert g2.flops == 2 * n * o * oh * ow * (16 // 4) * 3 * 3


def test_grouped_shapes_script_summarizes_kernels():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from grouped_conv_shapes import summary_row

    rows = [(128, 128, 32, 3, 1, 3), (512, 512, 32, 3, 2, 1), (8, 8, 4, 3, 1, 2),
            (58, 58, 58, 3, 1, 5)]  # 4 and 16 per group, 2 per group (no kernel), depthwise
    line = summary_row("m", rows)
    assert line.startswith("| m | 6 | 2, 4, 16 | 16-lane vectors; 4-lane vectors; FP32: ")
    assert line.endswith("| 5 |")
