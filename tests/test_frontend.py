"""Import from PyTorch: names, batch-norm folding, dynamic batch."""

import numpy as np
import pytest
import torch
import tvm
from torch import nn
from tvm import relax

import aiq_tvm
from aiq_tvm.frontend import batch_var, specialize_batch
from aiq_tvm.models import resnet20
from aiq_tvm.passes import layer_table
from aiq_tvm.pipeline import bind_params
from conftest import randomize_bn


def _run_default(mod, params, x, target):
    mod = specialize_batch(mod, len(x))
    mod = tvm.transform.Sequential(bind_params(params))(mod)
    ex = tvm.compile(mod, target)
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return randomize_bn(resnet20())


def test_weights_are_named_by_state_dict_and_bn_is_folded(resnet):
    mod, params = aiq_tvm.from_torch(resnet, torch.randn(1, 3, 32, 32))
    assert "layer1.0.conv1.weight" in params and "layer1.0.conv1.bias" in params
    assert "layer2.0.downsample.0.bias" in params and "fc.weight" in params
    assert not any(".bn" in k for k in params), "batch-norm parameters should be folded away"
    assert "batch_norm" not in mod.script()
    assert [p.name for p in mod["main"].params[1:]] == list(params)


def test_layer_names_are_pytorch_module_names(resnet):
    mod, _ = aiq_tvm.from_torch(resnet, torch.randn(2, 3, 32, 32))
    names = [e.name for e in layer_table(aiq_tvm.passes.AnnotatePrecision("fp32")(mod))]
    expected = [n for n, m in resnet.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert sorted(names) == sorted(expected)
    assert names[0] == "conv1" and names[-1] == "fc"


def test_folded_model_matches_torch_at_any_batch(resnet, target):
    mod, params = aiq_tvm.from_torch(resnet, torch.randn(2, 3, 32, 32))
    assert batch_var(mod) is not None
    for n in (1, 3):
        x = torch.randn(n, 3, 32, 32)
        with torch.no_grad():
            ref = resnet(x).numpy()
        out = _run_default(mod, params, x.numpy(), target)
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_static_batch_and_bad_inputs():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()).eval()
    mod, _ = aiq_tvm.from_torch(model, torch.randn(2, 3, 8, 8), dynamic_batch=False)
    assert batch_var(mod) is None
    assert specialize_batch(mod, 2) is mod
    with pytest.raises(ValueError, match="static batch of 2"):
        specialize_batch(mod, 4)
    with pytest.raises(ValueError, match="positive integer"):
        specialize_batch(mod, 0)
    with pytest.raises(ValueError, match="torch.nn.Module"):
        aiq_tvm.from_torch(lambda x: x, torch.randn(1, 3, 8, 8))
