"""SeparableResize: the two-pass kernel against TVM's own resize2d legalization (every
coordinate mode, rounding method and layout it takes, up- and downsampling, ragged ratios),
what it leaves alone, and torch's interpolate -> build -> VM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import tvm
from tvm import relax

import aiq_tvm
from aiq_tvm import pipeline
from aiq_tvm.passes import SeparableResize
from aiq_tvm.passes.separable_resize import resize_tables

TARGET = tvm.target.Target({"kind": "llvm", "mcpu": "haswell"})  # AVX2: runs on any x86-64 CI


def _resize_module(shape, size, layout="NCHW", method="linear", mode="half_pixel",
                   rounding="round", dtype="float32") -> tvm.IRModule:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, dtype))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit_output(relax.op.image.resize2d(
                x, size, layout=layout, method=method, coordinate_transformation_mode=mode,
                rounding_method=rounding))
        bb.emit_func_output(y)
    return bb.get()


def _run(mod: tvm.IRModule, x: np.ndarray, ours: bool) -> np.ndarray:
    legalize = pipeline.legalize_passes(TARGET)
    if not ours:
        legalize = [p for p in legalize if p.info.name != "SeparableResize"]
    with TARGET:
        mod = tvm.transform.Sequential(legalize + pipeline.schedule_passes(TARGET)
                                       + pipeline.lower_passes(TARGET))(mod)
    ex = relax.build(mod, target=TARGET)
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


CASES = [
    # (input NCHW shape, output size, method, mode, rounding)
    ((1, 3, 7, 9), (24, 17), "linear", "half_pixel", ""),
    ((2, 4, 16, 12), (5, 7), "linear", "pytorch_half_pixel", ""),
    ((1, 2, 6, 5), (11, 13), "linear", "align_corners", ""),
    ((1, 2, 6, 5), (12, 15), "linear", "asymmetric", ""),
    ((1, 3, 5, 7), (10, 14), "nearest_neighbor", "asymmetric", "floor"),  # integer ratio
    ((1, 3, 5, 7), (12, 9), "nearest_neighbor", "asymmetric", ""),
    ((1, 3, 9, 8), (4, 20), "nearest_neighbor", "half_pixel", "round"),
    ((1, 2, 7, 7), (10, 3), "nearest_neighbor", "align_corners", ""),
    ((1, 2, 7, 6), (13, 11), "nearest_neighbor", "tf_half_pixel_for_nn", "round_prefer_ceil"),
    ((1, 2, 7, 6), (13, 11), "nearest_neighbor", "half_pixel", "round_prefer_floor"),
    ((1, 2, 8, 6), (5, 16), "nearest_neighbor", "asymmetric", "ceil"),
]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", CASES, ids=[f"{c[2][:7]}-{c[3]}-{c[4] or 'default'}-{i}"
                                             for i, c in enumerate(CASES)])
def test_matches_tvms_resize(case, layout):
    """Nearest: the same pixels; linear: TOPI's arithmetic up to FMA contraction."""
    shape, size, method, mode, rounding = case
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        shape = x.shape
    mod = _resize_module(shape, size, layout, method, mode, rounding)
    assert "resize2d_separable" in [gv.name_hint for gv in SeparableResize()(mod).functions]
    ours, tvms = _run(mod, x, True), _run(mod, x, False)
    assert ours.shape == tvms.shape
    if method == "nearest_neighbor":
        np.testing.assert_array_equal(ours, tvms)
    else:
        np.testing.assert_allclose(ours, tvms, rtol=0, atol=2e-6)


@pytest.mark.parametrize("kwargs", [
    dict(method="cubic"),  # no two-tap kernel
    dict(mode="tf_crop_and_resize"),  # reads the roi and the extrapolation value
    dict(dtype="float16"),
])
def test_other_resizes_are_left_to_tvm(kwargs):
    mod = _resize_module((1, 2, 6, 6), (12, 12), **kwargs)
    tvm.ir.assert_structural_equal(SeparableResize()(mod), mod)


def test_tables_follow_topi_coordinates():
    """Half-pixel 2x upsampling: output 0 sits at source -0.25 (both taps clamp to pixel 0),
    output 1 at 0.25 (pixels 0 and 1, weight 0.25 on pixel 1); nearest asymmetric with an
    integer ratio repeats each pixel."""
    i0, i1, t = resize_tables(4, 8, "linear", "half_pixel")
    assert list(i0) == [0, 0, 0, 1, 1, 2, 2, 3] and list(i1) == [0, 1, 1, 2, 2, 3, 3, 3]
    np.testing.assert_allclose(t[:3], [0.75, 0.25, 0.75])
    near, _, _ = resize_tables(3, 6, "nearest_neighbor", "asymmetric", "floor")
    assert list(near) == [0, 0, 1, 1, 2, 2]


class _Upsampler(torch.nn.Module):
    """A segmentation head: bilinear to the input size (both corner modes), nearest 2x."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 5, 3, stride=4, padding=1)

    def forward(self, x):
        y = self.conv(x)
        a = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        b = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=True)
        c = F.interpolate(F.interpolate(y, scale_factor=2, mode="nearest"), size=x.shape[-2:])
        return a + b + c


def test_torch_interpolate_builds_and_matches():
    torch.manual_seed(0)
    model = _Upsampler().eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 30, 26)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(x))
    res = aiq_tvm.build(mod, params=params, plan="fp32", batch_size=2)
    y = res.run(x)
    assert np.abs(y - ref).max() / np.abs(ref).max() < 1e-5


class _Nearest(torch.nn.Module):
    def __init__(self, **kwargs):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 4, 1)
        self.kwargs = kwargs

    def forward(self, x):
        return F.interpolate(self.conv(x), mode="nearest", **self.kwargs)


def _ops(mod: tvm.IRModule) -> list[str]:
    names = []
    relax.analysis.post_order_visit(mod["main"], lambda e: names.append(e.op.name) if isinstance(
        e, relax.Call) and isinstance(e.op, tvm.ir.Op) else None)
    return names


@pytest.mark.parametrize("kwargs,op", [
    (dict(size=(30, 26)), "relax.image.resize2d"),  # 16 -> 30: TVM's converter picked others
    (dict(scale_factor=3.0), "relax.image.resize2d"),
    (dict(scale_factor=1.7), "relax.take"),  # torch's scale is 1 / 1.7, not 16 / 27
])
def test_torch_nearest_picks_torchs_pixels(kwargs, op):
    x = np.random.default_rng(1).standard_normal((1, 2, 16, 14)).astype(np.float32)
    torch.manual_seed(0)
    model = _Nearest(**kwargs).eval()
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(x))
    assert op in _ops(mod)
    y = aiq_tvm.build(mod, params=params, plan="fp32", batch_size=1).run(x)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)  # a wrong pixel is off by O(1)
