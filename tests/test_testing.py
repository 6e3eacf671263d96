"""aiq_tvm.testing: the reference helpers the kernel tests and bench_kernels.py share."""

import numpy as np
import pytest

from aiq_tvm import testing
from aiq_tvm.targets.x86 import ConvSpec, DenseSpec, conv2d_kernel, dense_kernel
from isa import HASWELL, requires_host


def test_layer_data_shapes_and_scaling():
    spec = ConvSpec(2, 5, 5, 4, 6, 3, 3, stride=2, padding=1)
    x, w, b, res, qp = testing.layer_data(spec, np.random.default_rng(0), residual=True,
                                          offset=0.3)
    assert x.shape == spec.in_shape and w.shape == spec.weight_shape and b.shape == (6,)
    assert res.shape == spec.out_shape and all(a.dtype == np.float32 for a in (x, w, b, res))
    assert abs(x.mean() - 0.3) < 0.3 and (qp.scale, qp.zp) != (0, 0)
    x2, *_ = testing.layer_data(DenseSpec(3, 7, 2), np.random.default_rng(0))
    assert x2.shape == (3, 7)


@requires_host(HASWELL)
@pytest.mark.parametrize("precision", ["fp32", "int8", "w4"])
def test_kernels_run_through_the_helpers_match_the_reference(precision):
    rng = np.random.default_rng(1)
    for spec, build in ((ConvSpec(1, 6, 6, 8, 16, 3, 3, padding=1), conv2d_kernel),
                        (DenseSpec(2, 24, 8), dense_kernel)):
        x, w, b, _, qp = testing.layer_data(spec, rng, offset=0.2)
        k = build(spec, precision, w, b, act="relu", act_qparams=qp, target=HASWELL)
        xin = testing.kernel_input(precision, x, qp)
        assert xin.dtype == (np.uint8 if precision == "int8" else np.float32)
        y = testing.run_kernel(k, xin, HASWELL)
        ref = testing.reference(spec, precision, xin, w, b, act="relu", act_qparams=qp,
                                target=HASWELL).y
        assert testing.relative_error(y, ref) < 1e-5
