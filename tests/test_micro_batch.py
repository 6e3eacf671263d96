"""Micro-batching: the MicroBatch pass, builds that run a batch in smaller calls, the
``micro_batch`` setting and the ``"auto"`` rule."""

import numpy as np
import pytest
import torch
import tvm
from tvm.script import ir as I
from tvm.script import relax as R

import aiq_tvm
from aiq_tvm import BuildConfig
from aiq_tvm._ir import batch_split_problem
from aiq_tvm.microbatch import (
    Traffic,
    choose_micro_batch,
    measure_candidates,
    measured_choice,
)
from aiq_tvm.passes import MicroBatch
from aiq_tvm.profiling import attribute_kernel_times

MiB = 2**20


@I.ir_module
class Before:
    @R.function
    def main(x: R.Tensor((2, 3), "float32"), w: R.Tensor((3, 4), "float32")
             ) -> R.Tuple(R.Tensor((2, 4), "float32"), R.Tensor((2, 3), "float32")):
        R.func_attr({"num_input": 1})
        with R.dataflow():
            y = R.matmul(x, w)
            z = R.nn.relu(x)
            out = (y, z)
            R.output(out)
        return out


@I.ir_module
class Expected:
    @R.function(private=True)
    def main_micro_batch(x: R.Tensor((2, 3), "float32"), w: R.Tensor((3, 4), "float32")
                         ) -> R.Tuple(R.Tensor((2, 4), "float32"), R.Tensor((2, 3), "float32")):
        R.func_attr({"num_input": 1})
        with R.dataflow():
            y = R.matmul(x, w)
            z = R.nn.relu(x)
            out = (y, z)
            R.output(out)
        return out

    @R.function
    def main(x: R.Tensor((4, 3), "float32"), w: R.Tensor((3, 4), "float32")
             ) -> R.Tuple(R.Tensor((4, 4), "float32"), R.Tensor((4, 3), "float32")):
        R.func_attr({"num_input": 1})
        cls = Expected
        parts = R.split(x, indices_or_sections=2, axis=0)
        x0 = parts[0]
        out0 = cls.main_micro_batch(x0, w)  # the weight is passed to every call as it is
        x1 = parts[1]
        out1 = cls.main_micro_batch(x1, w)
        y0 = out0[0]
        y1 = out1[0]
        y = R.concat((y0, y1), axis=0)  # a tuple output is joined field by field
        z0 = out0[1]
        z1 = out1[1]
        z = R.concat((z0, z1), axis=0)
        out = (y, z)
        return out


def test_main_splits_the_batch_calls_the_micro_batch_function_and_concatenates():
    tvm.ir.assert_structural_equal(MicroBatch(4, 2)(Before), Expected)


def test_micro_batch_equal_to_the_batch_leaves_the_module_alone():
    assert MicroBatch(2, 2)(Before).same_as(Before)


def test_micro_batch_must_divide_the_batch():
    with pytest.raises(ValueError, match="micro-batch 3 does not divide batch 4"):
        MicroBatch(4, 3)


@I.ir_module
class NoBatchOutput:
    @R.function
    def main(x: R.Tensor((2, 3), "float32")) -> R.Tensor((3,), "float32"):
        with R.dataflow():
            s = R.sum(x, axis=[0])
            R.output(s)
        return s


def test_an_output_without_the_micro_batch_axis_is_refused():
    with pytest.raises(ValueError, match="does not have the micro-batch 2 as its first"):
        MicroBatch(4, 2)(NoBatchOutput)


# ----------------------------------------------------------------------------- builds
@pytest.fixture(scope="module")
def tiny_model(tiny):
    x = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)
    mod, params = aiq_tvm.from_torch(tiny, torch.from_numpy(x))
    return mod, params, x


@pytest.mark.parametrize("prec", ["fp32", "int8"])
def test_batch_4_in_calls_of_2_gives_the_unsplit_outputs(tiny_model, prec):
    mod, params, x = tiny_model
    whole = aiq_tvm.build(mod, params=params, plan=prec, calib_data=x, batch_size=4)
    split = aiq_tvm.build(mod, params=params, plan=prec, calib_data=x, batch_size=4,
                          calibration=whole.calibration or "mse", micro_batch=2)
    assert split.micro_batch_choice().micro == 2
    assert "micro-batch 2 at batch 4 (2 call(s) of 2)" in split.report.header()
    ref, out = whole.run(x), split.run(x)
    if prec == "fp32":
        np.testing.assert_allclose(out, ref, rtol=1e-6, atol=0)
    else:
        np.testing.assert_array_equal(out, ref)
    # The weights are lifted once, not once per call; main takes the whole batch.
    assert split.executable().aiq_weights.names == whole.executable().aiq_weights.names
    vm = split.vm()
    assert vm["main"](tvm.runtime.tensor(x)).numpy().shape == ref.shape


def test_single_file_export_of_a_micro_batched_build(tiny_model, tmp_path):
    mod, params, x = tiny_model
    res = aiq_tvm.build(mod, params=params, plan="fp32", batch_size=4, micro_batch=2)
    path = tmp_path / "m.so"
    res.export_library(str(path), single_file=True)
    vm = tvm.relax.VirtualMachine(tvm.runtime.load_module(str(path)), tvm.cpu())
    np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(x)).numpy(), res.run(x))


def test_static_batch_module_runs_whole_and_says_why(tiny):
    x = np.zeros((4, 3, 8, 8), np.float32)
    mod, params = aiq_tvm.from_torch(tiny, torch.from_numpy(x), dynamic_batch=False)
    assert "static batch" in batch_split_problem(mod)
    res = aiq_tvm.build(mod, params=params, plan="fp32", micro_batch=2)
    choice = res.micro_batch_choice()
    assert (choice.batch, choice.micro) == (4, 4)
    assert "not split, the module has a static batch" in res.report.header()


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize("kwargs, msg", [
    (dict(micro_batch=0),
     "micro_batch must be 'auto', 'measure', None or 'off', or a positive integer"),
    (dict(micro_batch="half"), "micro_batch must be 'auto', 'measure', None or 'off'"),
    (dict(micro_batch=True), "micro_batch must be 'auto'"),
    (dict(micro_batch=3, batch_size=8),
     r"micro_batch=3 does not divide the batch size 8; valid micro-batches for batch 8: "
     r"\[1, 2, 4, 8\]"),
])
def test_bad_micro_batch_names_the_valid_choices(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        BuildConfig(**kwargs)


def test_micro_batch_is_checked_against_the_default_batch(tiny_model):
    mod, params, _ = tiny_model
    with pytest.raises(ValueError, match=r"valid micro-batches for batch 1: \[1\]"):
        aiq_tvm.build(mod, params=params, plan="fp32", micro_batch=2)


# ----------------------------------------------------------------------------- auto
def _traffic(acts_mb, weights_mb, compute_bound=()):
    return Traffic(tuple((f"l{i}", a * 1e6, i not in compute_bound)
                         for i, a in enumerate(acts_mb)), weights_mb * 1e6)


@pytest.mark.parametrize("acts_mb, weights_mb, compute_bound, expected", [
    # MobileNetV2 FP32 (figures of tv/mobilenet_v2 at 224): 6.02 MB per sample at the widest
    # memory-bound layer, 13.9 MB of weights, 32 MiB LLC: 4 samples (24.1 MB) fit 3/4 of the
    # LLC, 8 do not; the weights stay cached, so calls of 4.
    ([6.02, 5.62, 3.61], 13.9, {1}, 4),
    # The same at int8 (a quarter of the bytes): the whole batch fits.
    ([1.51, 1.4, 0.9], 3.5, {1}, 8),
    # 7 MB per sample, but at compute-bound layers (ResNet-50's bottlenecks): not counted, and
    # 102 MB of weights from memory per call: one call.
    ([7.23, 7.23, 4.82], 102.0, {0, 1, 2}, 8),
    # Three memory-bound 13 MB layers, 40 MB of weights from memory: calls of 1 would keep
    # the activations cached (2 x 13 MB > 3/4 LLC) and model less traffic (8 x 40 = 320 MB
    # of weights against 40 + 8 x 39 = 352 MB), but weights that exceed the LLC keep the
    # batch whole (MobileNetV3-Large lost 11 % in the split its traffic chose).
    ([13.0, 13.0, 13.0], 40.0, (), 8),
    # The same with 20 MB of weights, which stay cached: calls of 1.
    ([13.0, 13.0, 13.0], 20.0, (), 1),
    # One memory-bound 4 MB layer: calls of 4 would save 32 MB of activations but read the
    # 40 MB of weights once more.
    ([4.0], 40.0, (), 8),
])
def test_auto_picks_the_least_modelled_memory_traffic(acts_mb, weights_mb, compute_bound,
                                                      expected):
    traffic = _traffic(acts_mb, weights_mb, compute_bound)
    choice = choose_micro_batch("auto", 8, traffic, 32 * MiB)
    assert choice.micro == expected, choice.reason
    assert choice.reason.startswith(f"auto: m={expected}, largest memory-bound layer")


def test_auto_without_an_llc_size_runs_whole_and_says_why():
    choice = choose_micro_batch("auto", 8, _traffic([6.0], 1.0), 0)
    assert choice.micro == 8 and "no LLC size" in choice.reason


def test_an_int_that_does_not_divide_another_batch_runs_it_whole():
    choice = choose_micro_batch(2, 3, None, 0)
    assert choice.micro == 3 and "2 does not divide batch 3" in choice.reason


def test_kernel_times_of_micro_batches_are_summed_per_layer():
    calls = [("a_int8", 1.0), ("b_fp32", 2.0), ("a_int8", 1.5), ("b_fp32", 2.5)]
    t = attribute_kernel_times(calls, ["a", "b"], repeats=2)
    assert t.per_layer == {"a": 2.5, "b": 4.5} and t.unmatched_kernels == []


def test_off_is_the_default_and_means_never():
    assert BuildConfig().micro_batch is None
    assert BuildConfig(micro_batch="off").micro_batch is None
    assert choose_micro_batch(None, 8, None, 0).micro == 8


def test_report_names_the_micro_batch_only_when_it_is_set(tiny_model):
    mod, params, _ = tiny_model
    off = aiq_tvm.build(mod, params=params, plan="fp32", batch_size=4)
    assert "micro-batch" not in off.report.header() and off.micro_batch_choice().micro == 4
    auto = aiq_tvm.build(mod, params=params, plan="fp32", batch_size=4, micro_batch="auto")
    # "auto" decides from the target preset's LLC size, which not every host's preset has; the
    # report names the choice and its reason either way (the rule itself: tests above).
    header = auto.report.header()
    assert "micro-batch 4 at batch 4 (one call): auto: " in header
    assert ("auto: m=4" in header) != ("preset has no LLC size" in header)



# ----------------------------------------------------------------------------- measure
def test_measure_candidates_make_at_most_eight_calls():
    assert measure_candidates(8) == [8, 4, 2, 1]
    assert measure_candidates(16) == [16, 8, 4, 2]
    assert measure_candidates(6) == [6, 3, 2, 1]
    assert measure_candidates(1) == [1]


@pytest.mark.parametrize("times, expected", [
    ({8: 20.0, 4: 18.5, 2: 18.7, 1: 20.1}, 4),  # 2 is not 2 % faster than 4
    ({8: 20.0, 4: 18.0, 2: 17.5, 1: 17.0}, 1),  # each smaller one wins by more than 2 %
    ({8: 20.0, 4: 19.8, 2: 19.7, 1: 21.0}, 8),  # within the noise: never split for nothing
    ({8: 20.0, 4: 21.0, 2: 18.0, 1: 19.0}, 2),
])
def test_measured_choice_splits_only_for_a_clear_win(times, expected):
    choice = measured_choice(8, times, "test")
    assert choice.micro == expected
    assert choice.reason.startswith(f"measure: m={expected} fastest (m=8 20 ms, ")


def test_measure_keeps_the_fastest_candidates_module(tiny_model, monkeypatch):
    """The build compiles every candidate, times them here and keeps the winner's module
    (the timings are replaced by fixed ones so the choice is known); the outputs are the
    unsplit build's."""
    from aiq_tvm import result as result_mod

    fixed = {4: 3.0, 2: 2.0, 1: 2.5}  # ms per batch of each candidate micro-batch
    real_compile, real_bind = result_mod.compile_plan, result_mod.bind
    compiled, micro_of, seen = [], {}, []

    def tracking_compile(*args, **kwargs):
        compiled.append(kwargs.get("micro_batch"))
        return real_compile(*args, **kwargs)

    def tracking_bind(exe):  # the candidates are bound in the order they were compiled
        vm = real_bind(exe)
        micro_of[id(vm)] = compiled[len(micro_of)]
        return vm

    def fake_time(vm, x, repeat, min_repeat_ms):
        seen.append(len(x))
        return {"median_ms": fixed[micro_of[id(vm)]]}

    monkeypatch.setattr(result_mod, "time_main", fake_time)
    monkeypatch.setattr(result_mod, "bind", tracking_bind)
    monkeypatch.setattr(result_mod, "compile_plan", tracking_compile)
    mod, params, x = tiny_model
    res = aiq_tvm.build(mod, params=params, plan="fp32", batch_size=4, micro_batch="measure")
    choice = res.micro_batch_choice()
    assert choice.micro == 2 and "m=4 3 ms, m=2 2 ms, m=1 2.5 ms" in choice.reason
    assert "micro-batch 2 at batch 4 (2 call(s) of 2): measure: m=2" in res.report.header()
    assert set(seen) == {4} and len(seen) == 3 * result_mod.MEASURE_ROUNDS
    monkeypatch.undo()
    whole = aiq_tvm.build(mod, params=params, plan="fp32", batch_size=4)
    np.testing.assert_allclose(res.run(x), whole.run(x), rtol=1e-6, atol=0)


def test_measure_falls_back_to_auto_for_a_target_that_does_not_run_here(tiny_model):
    mod, params, _ = tiny_model
    arm = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}
    res = aiq_tvm.build(mod, arm, params=params, plan="fp32", batch_size=4,
                        micro_batch="measure")
    reason = res.micro_batch_choice().reason
    assert reason.startswith("measure: the deploy target does not run on this machine, so "
                             "auto's model instead; auto")
