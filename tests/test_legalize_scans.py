"""LegalizeScans: cumsum / cumprod, which TVM 0.27 cannot legalize, run as TOPI scans: numeric
checks against numpy (axis, dtype, exclusive, flattened) and a torch model end to end."""

import numpy as np
import pytest
import torch
import tvm
from torch import nn
from tvm import relax

import aiq_tvm
from aiq_tvm.passes import LegalizeScans

X = np.random.default_rng(0).uniform(0.5, 1.5, (2, 3, 4)).astype("float32")


def _scan_module(op, **attrs) -> tvm.IRModule:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(X.shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            gv = bb.emit_output(op(x, **attrs))
        bb.emit_func_output(gv)
    return bb.get()


def _exclusive(values: np.ndarray, axis: int, ufunc) -> np.ndarray:
    identity = np.zeros_like if ufunc is np.add else np.ones_like
    shifted = np.concatenate([identity(np.take(values, [0], axis)),
                              np.delete(values, -1, axis)], axis)
    return ufunc.accumulate(shifted, axis)


@pytest.mark.parametrize("op,ufunc", [(relax.op.cumsum, np.add), (relax.op.cumprod,
                                                                  np.multiply)])
@pytest.mark.parametrize("axis,exclusive,dtype", [(1, False, None), (-1, True, None),
                                                  (None, False, None), (2, False, "float64")])
def test_scans_match_numpy(op, ufunc, axis, exclusive, dtype):
    mod = LegalizeScans()(_scan_module(op, axis=axis, dtype=dtype, exclusive=exclusive))
    names = [gv.name_hint for gv in mod.get_global_vars()]
    assert any(n.startswith(op.__name__) for n in names)  # a TIR kernel now
    out = relax.VirtualMachine(tvm.compile(mod, "llvm"), tvm.cpu())["main"](
        tvm.runtime.tensor(X)).numpy()
    values = X.reshape(-1) if axis is None else X
    ref = (_exclusive(values, axis % X.ndim, ufunc) if exclusive
           else ufunc.accumulate(values, 0 if axis is None else axis))
    assert out.dtype == (dtype or "float32")
    np.testing.assert_allclose(out, ref.astype(out.dtype), rtol=1e-6)


class _Scans(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        mask = torch.ones(1, 6, 6).cumsum(1)  # EdgeNeXt's positional-encoding form
        return y.cumsum(3) + (0.1 * y).cumprod(2) + mask[:, None]


def test_torch_scans_build_and_match_torch():
    torch.manual_seed(0)
    model = _Scans().eval()
    x = torch.randn(2, 3, 6, 6)
    mod, params = aiq_tvm.from_torch(model, x)
    res = aiq_tvm.build(mod, "llvm", params=params, plan="fp32", batch_size=2)
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(res.run(x.numpy(), 2), ref, rtol=1e-5, atol=1e-5)


class _PositionalEncoding(nn.Module):
    """EdgeNeXt's form: a layer (1x1 conv) over a positional encoding computed from a
    constant mask with a cumsum, added to the features."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.proj = nn.Conv2d(4, 8, 1)

    def forward(self, x):
        y = self.stem(x)
        rows = torch.ones(1, 6, 6).cumsum(1)[:, None] / 6.0
        cols = torch.ones(1, 6, 6).cumsum(2)[:, None] / 6.0
        pe = torch.cat([rows.sin(), rows.cos(), cols.sin(), cols.cos()], 1)
        return y + self.proj(pe)


def test_a_layer_over_a_constant_builds_at_int8_and_runs_at_run_time():
    """After the scans are legalized the projection's input is a constant; TVM's
    FoldConstant compiled its int8 kernel for a generic "llvm" target, and LLVM aborted the
    process ("Do not know how to split the result of this operator"). The pipeline leaves
    TVM's FoldConstant out after the layers are lowered."""
    from aiq_tvm.pipeline import legalize_passes

    assert "FoldConstant" not in [p.info.name for p in legalize_passes("llvm")]
    torch.manual_seed(0)
    model = _PositionalEncoding().eval()
    x = torch.randn(8, 3, 6, 6)
    mod, params = aiq_tvm.from_torch(model, x[:2])
    res = aiq_tvm.build(mod, "llvm", params=params, plan="int8", calib_data=x.numpy(),
                        batch_size=8)
    with torch.no_grad():
        ref = model(x).numpy().reshape(8, -1)
    out = res.run(x.numpy(), 8).reshape(8, -1)
    cos = (out * ref).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.99
