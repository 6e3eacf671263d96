"""End to end: torch -> aiq_tvm.build -> TVM VM, search, plans, the registered pipeline, errors."""

import numpy as np
import pytest
import torch
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

import aiq_tvm
from aiq_tvm import Plan
from aiq_tvm.frontend import specialize_batch
from aiq_tvm.pipeline import bind_params
from aiq_tvm.profiling import measured_report


@pytest.fixture(scope="module")
def tiny_setup(tiny):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((48, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        logits = tiny(torch.from_numpy(x)).numpy()
    # Labels: the FP32 model's answer, flipped on a third of the samples so accuracy < 100 %.
    y = logits.argmax(1)
    y[::3] = (y[::3] + 1) % 10
    mod, params = aiq_tvm.from_torch(tiny, torch.from_numpy(x[:2]))
    return mod, params, x, y, logits


def test_fp32_build_matches_torch(tiny_setup):
    mod, params, x, _, logits = tiny_setup
    res = aiq_tvm.build(mod, params=params, plan="fp32", batch_size=8)
    out = res.run(x[:16])
    np.testing.assert_allclose(out, logits[:16], rtol=1e-4, atol=1e-4 * np.abs(logits).max())


@pytest.mark.parametrize("precision, tol", [("w8", 0.03), ("int8", 0.05), ("w4", 0.3),
                                            ("int4", 0.3)])
def test_quantized_builds_stay_close_to_torch(tiny_setup, precision, tol):
    mod, params, x, _, logits = tiny_setup
    res = aiq_tvm.build(mod, params=params, plan=precision, calib_data=x[:16], batch_size=16)
    out = res.run(x[:16])
    err = np.abs(out - logits[:16]).max() / np.abs(logits[:16]).max()
    assert err < tol
    assert res.report.precisions()["grouped"] == "fp32"  # no kernel: stays fp32, reported
    assert "grouped conv" in next(r.note for r in res.report.rows if r.name == "grouped")
    assert res.report.ai > res.report.ai_fp32


def test_search_accuracy_equals_final_build_and_is_deterministic(tiny_setup):
    mod, params, x, y, _ = tiny_setup
    kw = dict(params=params, calib_data=x[:16], val_data=(x[16:], y[16:]), lam=0.9,
              search="coordinate_descent", eval_batch_size=16)
    a = aiq_tvm.build(mod, **kw)
    s = a.search
    assert s.evaluations >= 1 + 3 * 4  # baseline + every alternative of the 3 AIQ layers
    assert a.plan.layers == {**s.assignment, "grouped": "fp32"}  # unsupported: explicit fp32
    # What the search measured for its plan is what the compiled build gives.
    assert a.evaluate(x[16:], y[16:], 16) == s.best.accuracy
    assert a.report.accuracy == s.best.accuracy
    b = aiq_tvm.build(mod, **kw)
    assert b.plan == a.plan


def test_plan_round_trip_gives_identical_outputs(tiny_setup, tmp_path):
    mod, params, x, _, _ = tiny_setup
    plan = Plan({"stem": "int8", "dw": "w4", "head": "int4"})
    a = aiq_tvm.build(mod, params=params, plan=plan, calib_data=x[:16], batch_size=4)
    path = tmp_path / "plan.json"
    a.plan.save(path)
    cal_path = tmp_path / "cal.json"
    a.calibration.save(cal_path)
    b = aiq_tvm.build(mod, params=params, plan=Plan.load(path),
                      calibration=aiq_tvm.Calibration.load(cal_path), batch_size=4)
    np.testing.assert_array_equal(a.run(x[:8]), b.run(x[:8]))
    assert b.report.precisions()["dw"] == "w4"


def test_registered_pipeline_equals_build(tiny_setup, target):
    mod, params, x, _, _ = tiny_setup
    plan = Plan({"stem": "int8"}, default="w8")
    res = aiq_tvm.build(mod, params=params, plan=plan, calib_data=x[:16], batch_size=4)
    pipe = relax.get_pipeline("aiq", plan=plan, calibration=res.calibration, params=params)
    ex = tvm.compile(specialize_batch(mod, 4), target, relax_pipeline=pipe)
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x[:4])).numpy()
    np.testing.assert_array_equal(out, res.run(x[:4]))


def test_registered_pipeline_names_the_fix_for_a_dynamic_batch(tiny_setup, target):
    mod, params, _, _, _ = tiny_setup  # imported with a symbolic batch
    pipe = relax.get_pipeline("aiq", plan="fp32", params=params)
    with pytest.raises(ValueError, match=r"is not static.*aiq_tvm\.specialize_batch"):
        tvm.compile(mod, target, relax_pipeline=pipe)


def test_user_pipeline_with_our_passes(tiny_setup, target):
    mod, params, x, _, logits = tiny_setup
    seq = tvm.transform.Sequential([
        aiq_tvm.passes.AnnotatePrecision("w8"), *bind_params(params),
        relax.transform.FoldConstant(), aiq_tvm.passes.QuantizeAnnotated(),
        relax.get_pipeline("default"),
    ])
    ex = tvm.compile(specialize_batch(mod, 2), target, relax_pipeline=seq)
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x[:2])).numpy()
    assert np.abs(out - logits[:2]).max() / np.abs(logits[:2]).max() < 0.03


@I.ir_module
class UserModule:
    @R.function
    def main(x: R.Tensor((2, 3, 8, 8), "float32")) -> R.Tensor((2, 4, 8, 8), "float32"):
        with R.dataflow():
            w = R.const(np.linspace(-1, 1, 4 * 3 * 9, dtype="float32").reshape(4, 3, 3, 3))
            conv = R.nn.conv2d(x, w, padding=[1, 1, 1, 1])
            gv = R.nn.relu(conv)
            R.output(gv)
        return gv


def test_user_built_relax_module_with_constant_weights():
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    fp = aiq_tvm.build(UserModule, plan="fp32", batch_size=2)
    q = aiq_tvm.build(UserModule, plan={"conv": "int8"}, calib_data=x, batch_size=2)
    assert [r.name for r in q.report.rows] == ["conv"]  # user-chosen binding name
    ref = fp.run(x)
    assert np.abs(q.run(x) - ref).max() / np.abs(ref).max() < 0.05


@pytest.mark.parametrize("kwargs, msg", [
    (dict(plan="int3"), "unknown precision 'int3'; valid precisions: fp32, int8, int4, w8, w4"),
    (dict(plan={"nope": "int8"}), "names layers the model does not have"),
    (dict(lam=1.5, val_data="v"), "lam must be a number in \\[0, 1\\]"),
    (dict(search="random"), "unknown search 'random'; valid: greedy, coordinate_descent"),
    (dict(objective="speed"), "unknown objective 'speed'; valid: ai, roofline, measured"),
    (dict(precisions=["int8", "fp16"]), "unknown precision 'fp16'"),
    (dict(calibration="kl"), "unknown calibration 'kl'; valid: minmax, percentile"),
    (dict(target="llvm -mcpu=not-a-cpu-9"), "LLVM does not know mcpu 'not-a-cpu-9'"),
    (dict(target="llvm -mcpu"), "not of the form -key=value"),
    (dict(target={"kind": "llvm", "mcpu": "not-a-cpu-9"}), "TVM rejected target|valid targets"),
    (dict(target="cuda"), "unknown target 'cuda'"),
    (dict(val_data=None), "search needs val_data"),
    (dict(val_data=(np.zeros((0, 3, 8, 8)), np.zeros(0, int))), "val_data is empty"),
    (dict(val_data=(np.zeros((4, 3, 9, 9)), np.zeros(4, int))), "shape \\(3, 9, 9\\)"),
    (dict(val_data=(np.zeros((4, 3, 8, 8)), np.zeros(3, int))),
     r"val_data labels must be integer class indices, one per sample: shape \(4,\)"),
    (dict(plan="int8"), "need calib_data"),
    (dict(plan="int8", calib_data=np.zeros((0, 3, 8, 8))), "calib_data is empty"),
    (dict(batch_size=0, plan="fp32"), "batch_size must be a positive integer"),
    (dict(plan="fp32", params={"bogus.weight": np.zeros(1)}), "params has names"),
])
def test_bad_input_is_a_clear_value_error(tiny_setup, kwargs, msg):
    mod, params, _, _, _ = tiny_setup
    kw = dict(params=params)
    kw.update(kwargs)
    with pytest.raises(ValueError, match=msg):
        aiq_tvm.build(mod, **kw)


def test_not_a_module():
    with pytest.raises(ValueError, match="tvm.IRModule"):
        aiq_tvm.build("model.onnx", plan="fp32")


def test_resnet20_residual_adds_fuse_into_conv_epilogues():
    from aiq_tvm.models import resnet20
    from aiq_tvm.passes._layers import parse_layer
    from conftest import randomize_bn

    torch.manual_seed(0)
    model = randomize_bn(resnet20())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x).numpy()
    mod, params = aiq_tvm.from_torch(model, x)
    res = aiq_tvm.build(mod, params=params, plan="fp32", batch_size=2)
    np.testing.assert_allclose(res.run(x.numpy()), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    comps = {str(f.attrs["aiq.layer"]): f for _, f in res.annotated.functions_items()
             if isinstance(f, relax.Function) and f.attrs is not None and "aiq.layer" in f.attrs}
    fused = sorted(n for n, f in comps.items() if parse_layer(f).residual is not None)
    # Every BasicBlock's second conv takes the shortcut add (and the ReLU after it).
    assert fused == sorted(f"layer{s}.{b}.conv2" for s in (1, 2, 3) for b in range(3))
    assert res.cost["layer1.0.conv2"].residual_elems == 2 * 16 * 32 * 32


def test_measured_report_times_every_layer_kernel(tiny_setup):
    mod, params, x, _, _ = tiny_setup
    res = aiq_tvm.build(mod, params=params, plan={"stem": "int8", "dw": "w8", "head": "int4"},
                        calib_data=x[:16], batch_size=2)
    rep = measured_report(res, repeat=3)
    measured = {r.name: r.measured_us for r in rep.rows}
    assert all(measured[n] is not None and measured[n] > 0 for n in ("stem", "dw", "head"))
    assert measured["grouped"] is None  # TVM's own conv: counted with the other kernels
    assert any("other kernels" in n for n in rep.notes)
    assert "measured us" in rep.table()


@pytest.mark.slow
def test_tuned_build_reuses_its_database_and_is_kept_only_if_faster(tmp_path):
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    db = tmp_path / "db"
    a = aiq_tvm.build(UserModule, plan="int8", calib_data=x, batch_size=2, tune=True,
                      database=str(db), tune_trials=4)
    t = a.tuning
    assert t["kept"] in ("tuned", "default") and t["trials_per_kernel"] == 4
    assert (t["kept"] == "tuned") == (t["tuned_ms"] <= t["default_ms"])
    assert any(db.glob("*.json")), "tuning records were not written"
    b = aiq_tvm.build(UserModule, plan="int8", calibration=a.calibration, batch_size=2,
                      database=str(db))
    # Schedules never change the accumulation order: tuned, reused and default agree exactly.
    np.testing.assert_array_equal(a.run(x), b.run(x))
    with pytest.raises(ValueError, match="tune=True needs database"):
        aiq_tvm.build(UserModule, plan="fp32", tune=True)


@pytest.mark.parametrize("objective", ["roofline", "measured"])
def test_speed_objectives_drive_the_search(tiny_setup, objective):
    mod, params, x, y, _ = tiny_setup
    res = aiq_tvm.build(mod, params=params, calib_data=x[:16], val_data=(x[16:], y[16:]),
                        lam=1.0, search="greedy", objective=objective, eval_batch_size=16,
                        precisions=["fp32", "int8", "w8"])
    # lambda = 1 ignores accuracy: every layer takes the choice the objective ranks fastest,
    # so the plan cannot be slower than FP32 by that objective's own measure.
    assert res.search.best.ai_norm >= 1.0
    assert res.plan.metadata["objective"] == objective
    if objective == "measured":
        assert res.timings["layer_timing_s"] > 0


def test_precisions_without_fp32_keep_every_layer_quantized(tiny_setup):
    mod, params, x, y, _ = tiny_setup
    res = aiq_tvm.build(mod, params=params, calib_data=x[:16], val_data=(x[16:], y[16:]),
                        lam=0.0, search="greedy", eval_batch_size=16,
                        precisions=["int8", "int4"])
    # lam = 0 weighs only accuracy, which would keep FP32 were it allowed: the search starts
    # from uniform int8 and every searchable layer ends int8 or int4.
    plan = res.plan.resolve(res.cost.names)
    chosen = {n: plan[n] for n in res.cost.searchable}
    assert set(chosen.values()) <= {"int8", "int4"}, chosen
    assert res.search.baseline.plan == dict.fromkeys(res.cost.searchable, "fp32")


def _cross_x86_target():
    from isa import ZNVER4, runnable

    return None if runnable(ZNVER4) else ZNVER4


@pytest.mark.skipif(_cross_x86_target() is None,
                    reason="this host runs AVX-512 code: no x86 target it cannot execute")
def test_cross_target_build_runs_on_the_host_target_and_refuses_to_time(tmp_path):
    res = aiq_tvm.build(UserModule, _cross_x86_target(), plan="fp32", batch_size=2)
    res.export_library(str(tmp_path / "model.so"), cc="g++")  # linker options reach TVM
    assert (tmp_path / "model.so").stat().st_size > 0
    assert res.cross and res.run_target is not res.target
    assert res.report.run_target == str(res.run_target) != res.report.target
    assert "accuracy runs on the host target" in str(res.report)
    with pytest.raises(RuntimeError, match=r"cannot benchmark the build: .*lacks .*avx512.*"
                       r"export_library\(path, cc=...\)"):
        res.benchmark(2)
    with pytest.raises(RuntimeError, match="cannot profile the build's kernels"):
        measured_report(res)


def test_glue_the_schedule_pass_cannot_handle_is_counted_in_the_report(monkeypatch):
    from aiq_tvm.passes import schedule_glue

    def fail(func, lanes):
        raise RuntimeError("unsupported loop nest")

    monkeypatch.setattr(schedule_glue, "schedule_glue_func", fail)
    with pytest.warns(schedule_glue.UnscheduledGlueWarning):
        res = aiq_tvm.build(UserModule, plan="fp32", batch_size=2)
    assert res.report.unscheduled and all("unsupported loop nest" in u
                                          for u in res.report.unscheduled)
    assert f"{len(res.report.unscheduled)} glue function(s) left unscheduled" in str(res.report)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    monkeypatch.undo()
    ref = aiq_tvm.build(UserModule, plan="fp32", batch_size=2)
    assert ref.report.unscheduled == []
    np.testing.assert_allclose(res.run(x), ref.run(x), rtol=1e-6)  # TVM's code, same values


def test_mse_calibration_is_at_least_as_close_to_torch_as_percentile():
    # Heavy-tailed inputs (Student t, 3 degrees of freedom): the percentile range cuts a fixed
    # share of the values whatever that costs; the MSE range cuts a tail only where the finer
    # step gains more than the clipping loses.
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(16 * 64, 10),
    ).eval()
    x = np.random.default_rng(0).standard_t(3, (64, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x[32:])).numpy().astype(np.float64)
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(x[:2]))

    def min_cosine(calibration):
        res = aiq_tvm.build(mod, params=params, plan="int8", calib_data=x[:32], batch_size=32,
                            calibration=calibration)
        y = res.run(x[32:]).astype(np.float64)
        return ((y * ref).sum(1) / np.linalg.norm(y, axis=1) / np.linalg.norm(ref, axis=1)).min()

    assert min_cosine("mse") >= min_cosine("percentile")
