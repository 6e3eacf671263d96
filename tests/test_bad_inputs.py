"""Issue 11: wrong inputs are rejected with a message naming the problem (or warned about and
noted in the report where they may be legitimate), never turned into a plausible wrong answer.

Most cases fail in ``phases.resolve`` before anything is compiled; the ``run``/``evaluate``
cases share one fp32 build of TinyNet."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import aiq_tvm
from aiq_tvm import BuildConfig, phases


@pytest.fixture(scope="module")
def setup(tiny):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    mod, params = aiq_tvm.from_torch(tiny, torch.from_numpy(x[:2]))
    return mod, params, x, y


def _resolve(setup, calib=None, val=None, params=None, **config):
    mod, default_params, _, _ = setup
    return phases.resolve(mod, default_params if params is None else params, calib, val,
                          BuildConfig(**{"plan": "int8", **config}))


def _nan(x):
    bad = x.copy()
    bad[3, 0, 0, :2] = np.nan
    bad[5, 1, 2, 2] = np.inf
    return bad


@pytest.mark.parametrize("calib, message", [
    (lambda x: np.zeros_like(x), r"every calib_data value is 0: the activation ranges would "
                                 r"be empty"),
    (lambda x: x.astype(np.complex64), r"calib_data is complex \(complex64\); pass "
                                       r"real-valued inputs"),
    (lambda x: x.astype(str), "calib_data has dtype <U"),
    (_nan, r"calib_data has 2 NaN and 1 infinite values \(of 3072\), in 2 of 16 samples "
           r"\(first: sample 3\)"),
    (lambda x: x[:, :, :4], r"calib_data has samples of shape \(3, 4, 8\); the model takes "
                            r"\(3, 8, 8\)"),
    (lambda x: x[:0], "calib_data is empty"),
])
def test_bad_calibration_data_is_rejected_by_name(setup, calib, message):
    with pytest.raises(ValueError, match=message):
        _resolve(setup, calib=calib(setup[2]))


@pytest.mark.parametrize("val, message", [
    (lambda x, y: (_nan(x), y), r"val_data has 2 NaN and 1 infinite values"),
    (lambda x, y: (x, y + 10), r"val_data labels must be class indices in \[0, 10\) \(the "
                               r"model has 10 outputs\); 16 of 16 are outside \(min 10"),
    (lambda x, y: (x, y - 5), r"val_data labels must be class indices in \[0, 10\).*min -5"),
    (lambda x, y: (x, y.astype(np.float32)), r"val_data labels must be integer class "
                                             r"indices.*got float32"),
    (lambda x, y: (x, y[:3]), r"shape \(16,\), got int64 of shape \(3,\)"),
])
def test_bad_validation_data_is_rejected_by_name(setup, val, message):
    with pytest.raises(ValueError, match=message):
        _resolve(setup, calib=setup[2], val=val(setup[2], setup[3]), plan=None)


def test_raw_pixels_are_warned_about_and_noted_in_the_report(setup):
    x, y = setup[2], setup[3]
    pixels = np.clip(x * 60 + 128, 0, 255).astype(np.uint8)
    with pytest.warns(UserWarning, match=r"calib_data holds uint8 values in \[0, 255\]: it "
                                         r"looks like raw pixels"):
        ctx = _resolve(setup, calib=pixels)
    assert any("raw pixels" in n for n in ctx.notes)  # make_report adds ctx.notes
    with pytest.warns(UserWarning) as record:
        ctx = _resolve(setup, calib=pixels, val=(x, y), plan=None)
    text = [str(w.message) for w in record]
    assert any("calib_data (mean 1" in t and "look differently prepared" in t for t in text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # normalized data: no note at all
        assert _resolve(setup, calib=x, val=(x, y), plan=None).notes == []


def test_bad_params_name_the_weight_and_what_main_expects(setup):
    params = setup[1]
    first = next(iter(params))
    cases = [
        (None, r"params is missing: main takes 8 weights \(stem\.weight float32 \(8, 3, 3, 3\)"),
        ({k: v for k, v in params.items() if k != first},
         r"params has no 'stem\.weight' \(main expects float32 \(8, 3, 3, 3\)\)"),
        ({**params, first: params[first][:1]},
         r"params\['stem\.weight'\] is float32 \(1, 3, 3, 3\); main expects float32 "
         r"\(8, 3, 3, 3\)"),
        ({**params, first: params[first].astype(np.float64)},
         r"params\['stem\.weight'\] is float64 \(8, 3, 3, 3\).*astype\(np\.float32\)"),
        ({**params, first: np.full_like(params[first], np.nan)},
         r"params\['stem\.weight'\] has 216 NaN or infinite values"),
    ]
    mod = setup[0]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            phases.resolve(mod, bad, None, None, BuildConfig(plan="fp32"))


@pytest.fixture(scope="module")
def built(setup):
    mod, params, _, _ = setup
    return aiq_tvm.build(mod, params=params, plan="fp32", batch_size=4)


@pytest.mark.parametrize("call, message", [
    (lambda r, x, y: r.run(x[:, :, :4]), r"x has samples of shape \(3, 4, 8\); the model "
                                         r"takes \(3, 8, 8\)"),
    (lambda r, x, y: r.run(x[:0]), r"x is empty; pass at least one sample of shape"),
    (lambda r, x, y: r.run(x, batch_size=0), "batch_size must be a positive integer, got 0"),
    (lambda r, x, y: r.evaluate(x, y[:3]), r"y must be integer class indices, one per "
                                           r"sample: shape \(16,\), got int64 of shape \(3,\)"),
    (lambda r, x, y: r.evaluate(x, y + 10), r"y must be class indices in \[0, 10\)"),
    (lambda r, x, y: r.run(_nan(x), check_finite=True),
     r"x has 2 NaN and 1 infinite values .* \(first: sample 3\)"),
])
def test_run_and_evaluate_reject_bad_input_by_name(setup, built, call, message):
    with pytest.raises(ValueError, match=message):
        call(built, setup[2], setup[3])


def test_nan_input_vanishes_without_check_finite(setup, built):
    # Documented behaviour: TinyNet's ReLU turns NaN into 0, so run() returns finite logits
    # where torch gives NaN; check_finite=True is how to catch it.
    x = setup[2].copy()
    x[0, 0, 0, 0] = np.nan
    out = built.run(x)
    assert np.isfinite(out).all()
    assert built.run(setup[2], check_finite=True).shape == (16, 10)


class _TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 5)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        return self.fc(y.flatten(1)), y.mean((2, 3))


def test_multi_output_model_returns_a_tuple_and_is_scored_on_the_output_named():
    torch.manual_seed(0)
    model = _TwoHeads().eval()
    x = torch.randn(6, 3, 8, 8)
    with torch.no_grad():
        ref = model(x)
    mod, params = aiq_tvm.from_torch(model, x[:2])
    y = ref[0].numpy().argmax(1)
    with pytest.raises(ValueError, match=r"the model returns 2 outputs \(\?x5, \?x4\); pass "
                                         r"output=<index> \(0 to 1\)"):
        aiq_tvm.build(mod, params=params, plan="fp32", val_data=(x.numpy(), y))
    with pytest.raises(ValueError, match=r"output=2, but the model returns 2 outputs"):
        aiq_tvm.build(mod, params=params, plan="fp32", output=2)
    res = aiq_tvm.build(mod, params=params, plan="fp32", batch_size=4)  # no accuracy: fine
    out = res.run(x.numpy())
    assert isinstance(out, tuple) and [o.shape for o in out] == [(6, 5), (6, 4)]
    for o, r in zip(out, ref, strict=True):
        np.testing.assert_allclose(o, r.numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"build it with output=<index>"):
        res.evaluate(x.numpy(), y)
    res = aiq_tvm.build(mod, params=params, plan="fp32", batch_size=4, output=0,
                        val_data=(x.numpy(), y))
    assert res.evaluate(x.numpy(), y) == 1.0 == res.report.accuracy
    with pytest.raises(ValueError, match=r"y must be class indices in \[0, 5\)"):
        res.evaluate(x.numpy(), y + 5)
