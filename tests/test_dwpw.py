"""The fused depthwise -> pointwise FP32 kernel (targets/x86/dwpw.py): the same outputs bit
for bit as the two kernels it replaces and a numpy reference, the pairs it refuses, the pass
that emits it (QuantizeAnnotated) and the profile that attributes its time."""

import numpy as np
import pytest
import torch
import tvm

import aiq_tvm
from aiq_tvm.passes.quantize_annotated import depthwise_pointwise_pairs
from aiq_tvm.profiling import attribute_kernel_times, measured_report
from aiq_tvm.targets import capabilities, resolve_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel, dwpw
from aiq_tvm.testing import compile_prim_func
from isa import HASWELL, runnable

# This host with the kernels planned for two threads whatever TVM_NUM_THREADS says: the
# pointwise plans (and so which pairs fuse) depend on the thread count.
HOST = tvm.target.Target({**resolve_target("llvm")[0].export(), "num-cores": 2})


def _pair(n, h, c, o, stride=1, k=3):
    dw = ConvSpec(n, h, h, c, c, k, k, stride=stride, padding=k // 2, groups=c)
    return dw, ConvSpec(n, dw.OH, dw.OW, c, o, 1, 1)


def _weights(dw, pw, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(dw.weight_shape).astype(np.float32) * 0.3,
            rng.standard_normal(dw.O).astype(np.float32),
            rng.standard_normal(pw.weight_shape).astype(np.float32) * 0.1,
            rng.standard_normal(pw.O).astype(np.float32))


def _run(kernel, target, *inputs):
    f = compile_prim_func(kernel.prim_func, target)["main"]
    args = [tvm.runtime.tensor(a) for a in (*inputs, *kernel.consts)]
    args = [args[0], *args[len(inputs):], *args[1:len(inputs)]]  # (x, consts, [residual])
    y = tvm.runtime.tensor(np.zeros(kernel.out_shape, kernel.out_dtype))
    f(*args, y)
    return y.numpy()


def _numpy_reference(x, dw, pw, w1, b1, w2, b2, residual=None):
    """relu6(depthwise(x) + b1) then the 1x1 conv + b2 (+ residual), NHWC."""
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2))
    d = torch.nn.functional.conv2d(xt, torch.from_numpy(w1), torch.from_numpy(b1),
                                   stride=dw.stride, padding=dw.padding[:2], groups=dw.groups)
    y = torch.nn.functional.conv2d(d.clamp(0, 6), torch.from_numpy(w2), torch.from_numpy(b2))
    y = y.numpy().transpose(0, 2, 3, 1)
    return y if residual is None else y + residual


@pytest.mark.parametrize("n,h,c,o,stride,k,residual", [
    (1, 14, 32, 16, 1, 3, False),
    (2, 12, 48, 24, 2, 3, False),
    (1, 10, 40, 40, 1, 5, True),
    (1, 7, 64, 96, 1, 3, True),
])
def test_fused_kernel_is_bit_exact_with_the_two_kernels(n, h, c, o, stride, k, residual):
    dw, pw = _pair(n, h, c, o, stride, k)
    w1, b1, w2, b2 = _weights(dw, pw)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(dw.in_shape).astype(np.float32)
    res = [rng.standard_normal(pw.out_shape).astype(np.float32)] if residual else []
    fused = dwpw.depthwise_pointwise_kernel(dw, pw, w1, b1, w2, b2, dw_act="relu6",
                                            residual=residual, target=HOST)
    assert fused.prim_func.attrs[dwpw.FUSED_LAYERS_ATTR] == 2
    mid = _run(conv2d_kernel(dw, "fp32", w1, b1, act="relu6", target=HOST), HOST, x)
    alone = _run(conv2d_kernel(pw, "fp32", w2, b2, residual=residual, target=HOST), HOST,
                 mid, *res)
    y = _run(fused, HOST, x, *res)
    np.testing.assert_array_equal(y, alone)
    ref = _numpy_reference(x, dw, pw, w1, b1, w2, b2, *res)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not runnable(HASWELL), reason="this host does not execute AVX2 code")
def test_fused_kernel_on_avx2_vectors():
    dw, pw = _pair(1, 8, 24, 16)  # 24 channels: three 8-lane vectors
    w1, b1, w2, b2 = _weights(dw, pw)
    x = np.random.default_rng(2).standard_normal(dw.in_shape).astype(np.float32)
    fused = dwpw.depthwise_pointwise_kernel(dw, pw, w1, b1, w2, b2, dw_act="relu6",
                                            target=HASWELL)
    np.testing.assert_allclose(_run(fused, HASWELL, x),
                               _numpy_reference(x, dw, pw, w1, b1, w2, b2),
                               rtol=1e-5, atol=1e-5)


def test_pairs_that_do_not_fuse_say_why():
    dw, pw = _pair(1, 14, 32, 16)
    assert dwpw.fusion_reason(dw, pw, HOST) is None
    regular = ConvSpec(1, 14, 14, 32, 32, 3, 3, padding=1)
    assert "not an undilated depthwise" in dwpw.fusion_reason(regular, pw, HOST)
    strided = ConvSpec(1, 14, 14, 32, 16, 1, 1, stride=2)
    assert "1x1 stride-1" in dwpw.fusion_reason(dw, strided, HOST)
    other = ConvSpec(1, 7, 7, 32, 16, 1, 1)
    assert "does not read" in dwpw.fusion_reason(dw, other, HOST)
    odd, odd_pw = _pair(1, 14, 6, 8)
    assert "multiple of 4" in dwpw.fusion_reason(odd, odd_pw, HOST)
    with pytest.raises(ValueError, match="cannot fuse"):
        dwpw.depthwise_pointwise_kernel(regular, pw, *_weights(regular, pw), target=HOST)


def test_fusion_pays_with_enough_tasks_and_bytes_beyond_the_cache():
    target = {"kind": "llvm", "mcpu": "skylake-avx512", "num-cores": 2}
    l2 = capabilities(target).l2_bytes
    h = int(np.sqrt(l2 / (4 * 96))) + 16  # input and output beyond half an L2 per thread
    assert dwpw.fusion_pays(*_pair(8, h, 96, 24), target)
    assert not dwpw.fusion_pays(*_pair(8, h, 96, 24, k=5), target)  # 25 bounds-checked taps
    assert not dwpw.fusion_pays(*_pair(1, 7, 960, 160), target)  # one parallel task
    assert not dwpw.fusion_pays(*_pair(8, 8, 16, 16), target)  # 64 KB: stays in cache


class _Block(torch.nn.Module):
    """An inverted-residual block: 1x1 expand, depthwise 3x3 (ReLU6), 1x1 project + input;
    ``tap`` also returns the depthwise output, which then has a second reader."""

    def __init__(self, c=16, e=64, tap=False):
        super().__init__()
        self.expand = torch.nn.Conv2d(c, e, 1)
        self.dw = torch.nn.Conv2d(e, e, 3, padding=1, groups=e)
        self.project = torch.nn.Conv2d(e, c, 1)
        self.tap = tap

    def forward(self, x):
        d = torch.nn.functional.relu6(self.dw(torch.relu(self.expand(x))))
        y = self.project(d) + x
        return (y, d) if self.tap else y


def _import(model, shape):
    torch.manual_seed(0)
    return aiq_tvm.from_torch(model.eval(), torch.randn(*shape))


def test_pairs_are_fp32_depthwise_outputs_with_one_pointwise_reader():
    mod, params = _import(_Block(), (2, 16, 12, 12))
    ann = aiq_tvm.passes.AnnotatePrecision("fp32")(mod)
    assert depthwise_pointwise_pairs(ann) == {"project": "dw"}
    assert depthwise_pointwise_pairs(aiq_tvm.passes.AnnotatePrecision(
        aiq_tvm.Plan({"project": "int8"}))(mod)) == {}
    tapped, _ = _import(_Block(tap=True), (2, 16, 12, 12))
    assert depthwise_pointwise_pairs(aiq_tvm.passes.AnnotatePrecision("fp32")(tapped)) == {}
    shortcut, _ = _import(_DepthwiseShortcut(), (2, 16, 12, 12))
    assert depthwise_pointwise_pairs(aiq_tvm.passes.AnnotatePrecision("fp32")(shortcut)) == {}


class _DepthwiseShortcut(torch.nn.Module):
    """A 1x1 conv that adds the depthwise output it reads: that output is also a residual."""

    def __init__(self, c=16):
        super().__init__()
        self.dw = torch.nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.project = torch.nn.Conv2d(c, c, 1)

    def forward(self, x):
        d = self.dw(x)
        return self.project(d) + d


def test_build_runs_the_fused_kernel_bit_exact_and_profiles_both_layers(monkeypatch):
    # Whether fusing pays depends on the host's L2; the plumbing is tested with it forced.
    monkeypatch.setattr(dwpw, "fusion_pays", lambda *a: True)
    model = _Block()
    mod, params = _import(model, (2, 16, 12, 12))
    x = np.random.default_rng(3).standard_normal((2, 16, 12, 12)).astype(np.float32)
    res = aiq_tvm.build(mod, HOST, params=params, plan="fp32", batch_size=2)
    assert res.executable(2).aiq_fused_layers == {"project_dw_fp32": 2}
    unfused = aiq_tvm.build(mod, HOST, params=params, plan="fp32", batch_size=2,
                            fuse_depthwise=False)
    assert unfused.executable(2).aiq_fused_layers == {}
    y = res.vm(2)["main"](tvm.runtime.tensor(x)).numpy()
    np.testing.assert_array_equal(y, unfused.vm(2)["main"](tvm.runtime.tensor(x)).numpy())
    with torch.no_grad():
        np.testing.assert_allclose(y, model(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-5)
    rep = measured_report(res, repeat=2)
    rows = {r.name: r.measured_us for r in rep.rows}
    assert rows["dw"] is None and rows["project"] > 0 and rows["expand"] > 0
    assert any("dw in project" in n for n in rep.notes)


def test_profile_gives_a_fused_kernel_both_layers():
    calls = [("a_fp32", 2.0), ("c_dw_fp32", 5.0), ("glue", 1.0), ("d_int8", 3.0)]
    t = attribute_kernel_times(calls, ["a", "b", "c", "d"], fused={"c_dw_fp32": 2})
    assert t.per_layer == {"a": 2.0, "c": 5.0, "d": 3.0}
    assert t.fused_into == {"b": "c"} and t.unmatched_layers == [] and t.other_us == 1.0


def test_fused_kernel_requantizes_for_8_bit_consumers_as_the_pointwise_kernel_does():
    from aiq_tvm.quant import ActQParams

    dw, pw = _pair(1, 10, 32, 16)
    w1, b1, w2, b2 = _weights(dw, pw)
    x = np.random.default_rng(4).standard_normal(dw.in_shape).astype(np.float32)
    out_q = ActQParams.from_range(-2.0, 6.0)
    fused = dwpw.depthwise_pointwise_kernel(dw, pw, w1, b1, w2, b2, dw_act="relu6",
                                            pw_act="relu", out_qparams=out_q, target=HOST)
    assert fused.out_dtype == "uint8"
    mid = _run(conv2d_kernel(dw, "fp32", w1, b1, act="relu6", target=HOST), HOST, x)
    alone = conv2d_kernel(pw, "fp32", w2, b2, act="relu", out_qparams=out_q, target=HOST)
    np.testing.assert_array_equal(_run(fused, HOST, x), _run(alone, HOST, mid))


def test_fuse_depthwise_must_be_a_bool():
    with pytest.raises(ValueError, match="fuse_depthwise must be True or False, got 'no'"):
        aiq_tvm.BuildConfig(fuse_depthwise="no")


def test_fused_kernel_adds_a_uint8_shortcut_as_the_pointwise_kernel_does():
    from aiq_tvm.quant import ActQParams

    dw, pw = _pair(1, 10, 32, 32)
    w1, b1, w2, b2 = _weights(dw, pw)
    rng = np.random.default_rng(5)
    x = rng.standard_normal(dw.in_shape).astype(np.float32)
    shortcut = rng.integers(0, 256, pw.out_shape).astype(np.uint8)
    res_q = ActQParams.from_range(-1.0, 3.0)
    fused = dwpw.depthwise_pointwise_kernel(dw, pw, w1, b1, w2, b2, dw_act="relu6",
                                            residual=True, residual_qparams=res_q, target=HOST)
    mid = _run(conv2d_kernel(dw, "fp32", w1, b1, act="relu6", target=HOST), HOST, x)
    alone = conv2d_kernel(pw, "fp32", w2, b2, residual=True, residual_qparams=res_q,
                          target=HOST)
    np.testing.assert_array_equal(_run(fused, HOST, x, shortcut),
                                  _run(alone, HOST, mid, shortcut))
