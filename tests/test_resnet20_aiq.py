"""AIQ on the shipped ResNet-20 with real Fashion-MNIST data (small subsets, so it stays fast)."""

import numpy as np
import pytest
import torch
import tvm
from tvm import relax

import aiq_tvm
from aiq_tvm import datasets, models
from aiq_tvm.frontend import specialize_batch
from aiq_tvm.passes.fuse_transpose_quantize import quantize_qparams
from aiq_tvm.pipeline import quantize_passes


@pytest.fixture(scope="module")
def searched():
    model = models.resnet20(pretrained=True)
    xc, _ = datasets.calibration_set(128)
    xv, yv = datasets.validation_set(300)
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(xv[:2]))
    res = aiq_tvm.build(mod, params=params, calib_data=xc, val_data=(xv, yv), lam=0.9,
                        search="greedy", eval_batch_size=100)
    return res, mod, params, xv, yv


def test_search_accuracy_equals_final_build_on_real_data(searched):
    res, _, _, xv, yv = searched
    # The search measured its plan on the runtime-switch module (float32 between layers);
    # the final build requantizes inside producer epilogues (bit-exact) and hands block
    # outputs to the residual epilogues as uint8 (rounded): the report gives the final
    # build's accuracy, within a point of the search's estimate.
    final = res.evaluate(xv, yv, 100)
    assert res.report.accuracy == final and res.report.search_accuracy == res.search.best.accuracy
    assert abs(final - res.search.best.accuracy) <= 0.01
    assert res.report.ai > res.report.ai_fp32
    # 22 layers, every one of them searchable; the plan names them all.
    assert len(res.plan.layers) == 22 and res.search.evaluations > 22


def test_final_build_requantizes_between_int_layers(searched, target):
    res, mod, params, _, _ = searched
    lowered = tvm.transform.Sequential(
        quantize_passes(target, res.plan, res.calibration, params))(specialize_batch(mod, 4))
    u8_outputs = [
        c for c in _call_tirs(lowered["main"])
        # Standalone quantize kernels (the input's, transposing or not) carry their qparams.
        if str(c.ty.dtype) == "uint8" and quantize_qparams(lowered, c.args[0]) is None
    ]
    fused = [n for n in res.cost.names
             if res.cost.out_act_bytes(n, res.plan.resolve(res.cost.names)) == 1.0]
    assert len(u8_outputs) == len(fused) > 0


def _call_tirs(func):
    calls = []
    relax.analysis.post_order_visit(func.body, lambda e: calls.append(e) if isinstance(
        e, relax.Call) and isinstance(e.op, tvm.ir.Op) and e.op.name == "relax.call_tir" else None)
    return calls


def test_uniform_int8_keeps_accuracy_close(searched):
    res, mod, params, xv, yv = searched
    q = aiq_tvm.build(mod, params=params, plan="int8", calibration=res.calibration)
    fp = res.search.baseline.accuracy
    assert abs(q.evaluate(xv, yv, 100) - fp) <= 0.02
    assert np.isfinite(q.report.ai) and q.report.ai > res.report.ai_fp32
