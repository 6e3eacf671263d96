"""ExposeLayerInputs: main also returns every layer's input (for calibration)."""

import numpy as np
from tvm import relax

from aiq_tvm.passes import AnnotatePrecision, ExposeLayerInputs
from relax_cases import ConvBiasRelu, bind, compile_run


def test_expose_layer_inputs_returns_each_layer_input(target):
    mod = ExposeLayerInputs()(AnnotatePrecision("fp32")(ConvBiasRelu))
    assert [[str(n) for n in g] for g in mod.attrs["aiq.exposed_layers"]] == [["conv1"]]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal((1, 8, 1, 1)).astype(np.float32)
    bound = relax.transform.FoldConstant()(bind(mod, {"conv1_weight": w, "conv1_bias": b}))
    out = compile_run(bound, target, x)
    np.testing.assert_array_equal(out[1].numpy(), x)
    assert out[0].numpy().shape == (1, 8, 8, 8)
