"""Import of PyTorch operators TVM's importer lacks or converts wrongly (aiq_tvm.torch_ops)."""

import warnings

import numpy as np
import pytest
import torch
import tvm
from torch import nn
from tvm import relax

import aiq_tvm
from aiq_tvm import torch_ops
from aiq_tvm.frontend import batch_var, specialize_batch
from aiq_tvm.pipeline import bind_params


class Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def _run(mod, params, x):
    mod = specialize_batch(mod, len(x)) if batch_var(mod) is not None else mod
    mod = tvm.transform.Sequential(bind_params(params))(mod)
    out = relax.VirtualMachine(tvm.compile(mod, "llvm"), tvm.cpu())["main"](
        tvm.runtime.tensor(x))
    return out.numpy() if hasattr(out, "numpy") else [o.numpy() for o in out]


def _amp_indices(x):
    values, indices = nn.functional.adaptive_max_pool2d(x, (3, 4), return_indices=True)
    return values + indices.float()


# Each operator is one output of one model (one compile for all of them).
OPERATORS = {
    # nn.AdaptiveMaxPool2d: divisible (max_pool2d) and ragged windows (per-window amax)
    "adaptive_max_pool_divisible": nn.AdaptiveMaxPool2d((4, 3)),
    "adaptive_max_pool_ragged": nn.AdaptiveMaxPool2d((3, 5)),
    "adaptive_max_pool_indices": Fn(_amp_indices),
    "adaptive_max_pool1d": Fn(lambda x: nn.functional.adaptive_max_pool1d(x.flatten(2), 5)),
    "amax_amin": Fn(lambda x: x.amax(dim=(2, 3)) - x.amin(dim=(2, 3))),
    "amax_all": Fn(lambda x: x.amax() + x[:, 0]),
    "min_dim": Fn(lambda x: x.min(dim=1).values + x.min(dim=1)[1].float()),
    "prod_logsumexp": Fn(lambda x: x.prod(dim=3) + torch.logsumexp(x, 3)),
    "selu_elu": nn.Sequential(nn.SELU(), nn.ELU(0.5)),  # TVM's elu drops SELU's scale
    "unfold": nn.Unfold(3, dilation=1, padding=1, stride=2),
    "rrelu": nn.RReLU(0.1, 0.3),  # eval mode: a leaky ReLU of slope 0.2
    "select": Fn(lambda x: x[:, 1][:, None] * x[..., -1][..., None]
                 + x.select(2, -2)[:, :, None]),
    "arange_eye": Fn(lambda x: x[:, :, 0] @ torch.eye(6) + torch.arange(6.0)
                     + torch.arange(1, 12, 2)),
    # Python numbers take the tensor's dtype: float // int, integer divisions rounded as
    # torch rounds them (negative quotients too), an integer tensor's true division in float
    "div_rounding": Fn(lambda x: x // 2 + torch.div(x, 3, rounding_mode="trunc")
                       + torch.div(torch.arange(6) - 3, 4, rounding_mode="floor")
                       + torch.div(torch.arange(6) - 3, 4, rounding_mode="trunc")),
    "int_true_div": Fn(lambda x: x + torch.arange(6) / 4),
}


class _AllOperators(nn.Module):
    def __init__(self):
        super().__init__()
        self.ops = nn.ModuleDict(OPERATORS)

    def forward(self, x):
        return tuple(op(x) for op in self.ops.values())


def _check_matches_torch(model, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the static-batch fallback warns (tested below)
        mod, params = aiq_tvm.from_torch(model, x)
    with torch.no_grad():
        refs = model(x)
    outs = _run(mod, params, x.numpy())
    refs, outs = (refs, outs) if isinstance(refs, tuple) else ((refs,), (outs,))
    for name, out, ref in zip(OPERATORS if len(refs) > 1 else ["out"], outs, refs,
                              strict=True):
        np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5, atol=1e-5, err_msg=name)


def test_operators_tvm_lacks_import_and_match_torch():
    _check_matches_torch(_AllOperators().eval(), torch.randn(3, 4, 8, 6))


def test_select_is_a_slice_not_a_gather():
    mod, _ = aiq_tvm.from_torch(Fn(lambda x: x[:, 1] + x[:, :, -1]).eval(), torch.randn(2, 3, 3))
    text = mod.script()
    assert "R.take" not in text and text.count("R.strided_slice") == 2


class _RepeatByBatch(nn.Module):
    """Repeats by the batch size, as torch's instance_norm does with its weight."""

    def forward(self, x):
        n, c = x.shape[:2]
        return x + torch.arange(c, dtype=x.dtype).repeat(n).reshape(n, c, 1, 1)


def _running_stats_instance_norm():
    norm = nn.InstanceNorm2d(4, affine=True, track_running_stats=True)
    with torch.no_grad():
        norm.running_mean.normal_(0, 0.5)
        norm.running_var.uniform_(0.5, 1.5)
    return norm


@pytest.mark.parametrize("model, norm_op", [
    (nn.InstanceNorm2d(4), "relax.nn.group_norm"),
    (nn.InstanceNorm2d(4, affine=True), "relax.nn.group_norm"),
    (_running_stats_instance_norm(), "relax.nn.batch_norm"),  # eval: the running statistics
    (_RepeatByBatch(), None),
], ids=["plain", "affine", "running_stats", "repeat"])
def test_instance_norm_and_batch_repeats_import_with_a_dynamic_batch(model, norm_op):
    # InstanceNorm with the input's statistics imports as a group norm of one channel per
    # group; torch's own decomposition viewed the input as (1, N * C, H, W) and repeated the
    # weight N times, which TVM's converters (view, repeat, the batch-statistics norm) took as
    # integers only, so such models fell back to a static batch. Repeats by the batch size
    # still import with a symbolic one.
    model = model.eval()
    if getattr(model, "weight", None) is not None:
        with torch.no_grad():
            model.weight.uniform_(0.5, 1.5)
            model.bias.normal_(0, 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no static-batch fallback
        mod, params = aiq_tvm.from_torch(model, torch.randn(2, 4, 8, 6))
    assert batch_var(mod) is not None
    ops = set()
    relax.analysis.post_order_visit(mod["main"].body, lambda e: ops.add(e.op.name) if (
        isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op)) else None)
    assert norm_op is None or norm_op in ops, ops
    assert "relax.nn.instance_norm" not in ops
    for n in (1, 3):
        x = torch.randn(n, 4, 8, 6)
        with torch.no_grad():
            ref = model(x).numpy()
        np.testing.assert_allclose(_run(mod, params, x.numpy()), ref, rtol=1e-5, atol=1e-5)


def test_instance_norm_1d_matches_torch():
    model = nn.Sequential(nn.Conv1d(3, 4, 1), nn.InstanceNorm1d(4, affine=True)).eval()
    x = torch.randn(3, 3, 10)
    mod, params = aiq_tvm.from_torch(model, x)
    with torch.no_grad():
        np.testing.assert_allclose(_run(mod, params, x.numpy()), model(x).numpy(), rtol=1e-5,
                                   atol=1e-5)


class _TokenLinear(nn.Module):
    """A Linear over a non-contiguous token view (modern attention code's qkv projection):
    torch exports it through identity views of its expanded operands."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 1)
        self.qkv = nn.Linear(16, 48)

    def forward(self, x):
        return self.qkv(self.conv(x).flatten(2).transpose(1, 2))


def test_identity_views_with_a_dynamic_batch_keep_token_linears_as_named_layers():
    # The view converter skips views onto the same (symbolic) shape, as TVM's does, so that
    # BatchedMatmulToDense still finds the weight behind them: "qkv", an int8 layer.
    torch.manual_seed(0)
    model = _TokenLinear().eval()
    x = torch.randn(2, 3, 6, 5)
    mod, params = aiq_tvm.from_torch(model, x)
    assert batch_var(mod) is not None
    res = aiq_tvm.build(mod, params=params, plan="int8", calib_data=x.numpy(), batch_size=2)
    assert res.report.precisions() == {"conv": "int8", "qkv": "int8"}


class _ScaledWeights(nn.Module):
    """Weights computed in forward(): standardized, scaled, and a matrix torch makes."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=4)

    def forward(self, x):
        w = self.conv.weight
        w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        y = torch.relu(nn.functional.conv2d(x, w, self.conv.bias, padding=1))
        y = nn.functional.conv2d(y, self.grouped.weight * 0.5, None, padding=1, groups=4)
        return y.mean((2, 3)) @ torch.eye(8)


def test_weights_computed_in_forward_build_and_are_named_by_their_parameter():
    # torch.eye is arange == arange: with TVM's arange converter nothing folded and the
    # matmul by it failed ("the weight is not a constant"); computed weights were conv2d_<k>.
    torch.manual_seed(0)
    model = _ScaledWeights().eval()
    x = torch.randn(2, 3, 8, 8)
    mod, params = aiq_tvm.from_torch(model, x)
    res = aiq_tvm.build(mod, params=params, plan="int8", calib_data=x.numpy(), batch_size=2)
    assert res.report.precisions() == {"conv": "int8", "grouped": "fp32", "dense_0": "int8"}
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(res.run(x.numpy()) - ref).max() / np.abs(ref).max() < 0.05


class _Bessel(nn.Module):
    def forward(self, x):
        return torch.special.i0(x)


def test_unsupported_operator_names_operator_and_module_path():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Sequential(nn.ReLU(), _Bessel())).eval()
    with pytest.raises(torch_ops.UnsupportedOperatorError) as err:
        aiq_tvm.from_torch(model, torch.randn(2, 3, 8, 8))
    msg = str(err.value)
    assert "aten.i0.default in '1.1' (_Bessel)" in msg
    assert "AssertionError" not in msg


def test_failing_conversion_names_module_and_falls_back_to_static_batch(monkeypatch):
    def fails_on_symbolic_batch(node, importer):
        x = importer.env[node.args[0]]
        if not isinstance(x.ty.shape[0], tvm.tirx.IntImm):
            raise TypeError("cannot handle a symbolic dimension")
        return importer.block_builder.emit(relax.op.nn.relu(x))

    monkeypatch.setitem(torch_ops.CONVERTERS, "relu.default", fails_on_symbolic_batch)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Sequential(nn.ReLU())).eval()
    x = torch.randn(2, 3, 5, 5)
    with pytest.warns(UserWarning, match=r"aten\.relu\.default in '1\.0' \(ReLU\).*symbolic "
                                         r"dimension.*static batch of 2"):
        mod, params = aiq_tvm.from_torch(model, x)
    assert batch_var(mod) is None
    with torch.no_grad():
        np.testing.assert_allclose(_run(mod, params, x.numpy()), model(x).numpy(), atol=1e-5)

    def always_fails(node, importer):
        raise TypeError("broken converter")

    monkeypatch.setitem(torch_ops.CONVERTERS, "relu.default", always_fails)
    with pytest.raises(torch_ops.ConversionError,
                       match=r"aten\.relu\.default in '1\.0' \(ReLU\): TypeError: broken"):
        aiq_tvm.from_torch(model, x)


def test_train_mode_model_is_imported_in_eval_mode_and_left_unchanged():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten())
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    model.train()
    model[2].eval()  # a mixed-mode model keeps each submodule's own mode
    x = torch.randn(2, 3, 6, 6)
    with pytest.warns(UserWarning, match="training mode.*imported in eval mode"):
        mod, params = aiq_tvm.from_torch(model, x)
    assert [m.training for m in model.modules()] == [True, True, True, False, True]
    with torch.no_grad():
        ref = model.eval()(x).numpy()
    np.testing.assert_allclose(_run(mod, params, x.numpy()), ref, rtol=1e-4, atol=1e-5)
