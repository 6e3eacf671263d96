"""Weights beside the library (issue 9): export writes model.so (code) and model.params (the
final packed weights); aiq_tvm.load runs them in a fresh process exactly as the build runs in
process; a missing or foreign params file is refused by name; single_file=True still embeds."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import tvm
from tvm import relax

import aiq_tvm
from aiq_tvm.weights import Weights, WeightsError, save, weights_path

BATCH = 4


@pytest.fixture(scope="module")
def setup(tiny):
    x = np.random.default_rng(0).standard_normal((12, 3, 8, 8)).astype(np.float32)
    mod, params = aiq_tvm.from_torch(tiny, torch.from_numpy(x[:2]))
    res = aiq_tvm.build(mod, params=params, plan="int8", calib_data=x, batch_size=BATCH)
    return mod, params, res, x


@pytest.fixture(scope="module")
def exported(setup, tmp_path_factory):
    _, _, res, _ = setup
    d = tmp_path_factory.mktemp("export")
    written = res.export_library(str(d / "model.so"))
    return d, written


def _fresh_process_run(lib, x_path, out_path):
    code = textwrap.dedent(f"""
        import numpy as np, tvm, aiq_tvm
        from aiq_tvm.runtime import run_batches
        vm = aiq_tvm.load({str(lib)!r})
        x = np.load({str(x_path)!r})
        np.save({str(out_path)!r}, run_batches(vm["main"], x, {BATCH}, tvm.cpu()))
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return np.load(out_path)


def test_export_writes_code_and_weights_and_a_fresh_process_matches_run(setup, exported,
                                                                        tmp_path):
    _, _, res, x = setup
    d, written = exported
    assert written == [str(d / "model.so"), str(d / "model.params")]
    w = res.executable().aiq_weights
    assert len(w.names) >= 8  # every layer's packed weights, biases and scales
    assert any(str(t.dtype) == "int8" for t in w.tensors)  # the final int8 weights
    np.save(tmp_path / "x.npy", x)
    got = _fresh_process_run(d / "model.so", tmp_path / "x.npy", tmp_path / "out.npy")
    np.testing.assert_array_equal(got, res.run(x))
    # The params file is a plain TVM parameter dict: the manifest, then main's weights.
    loaded = tvm.runtime.load_param_dict_from_file(str(d / "model.params"))
    assert list(loaded) == ["aiq_manifest", *w.names]
    for name, t in zip(w.names, w.tensors, strict=True):
        np.testing.assert_array_equal(loaded[name].numpy(), t.numpy())


def test_single_file_still_embeds_and_loads_with_tvm_alone(setup, tmp_path):
    _, _, res, x = setup
    written = res.export_library(str(tmp_path / "one.so"), single_file=True)
    assert written == [str(tmp_path / "one.so")] and not (tmp_path / "one.params").exists()
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(tmp_path / "one.so")), tvm.cpu())
    want = res.run(x[:BATCH])
    np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(x[:BATCH])).numpy(), want)
    loaded = aiq_tvm.load(tmp_path / "one.so")  # aiq_tvm.load takes either layout
    assert loaded.weights == []
    np.testing.assert_array_equal(loaded["main"](tvm.runtime.tensor(x[:BATCH])).numpy(), want)


def test_the_weights_leave_the_library(tmp_path):
    """An MLP with 0.5 MB of int8 weights: the split library is smaller than the single-file
    one by at least the weights (page rounding hides that on the tiny CNN)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(768, 640), torch.nn.ReLU(),
                              torch.nn.Linear(640, 10)).eval()
    x = np.random.default_rng(1).standard_normal((8, 3, 16, 16)).astype(np.float32)
    mod, params = aiq_tvm.from_torch(net, torch.from_numpy(x[:2]))
    res = aiq_tvm.build(mod, params=params, plan="int8", calib_data=x, batch_size=2)
    res.export_library(str(tmp_path / "split.so"))
    res.export_library(str(tmp_path / "one.so"), single_file=True)
    nbytes = res.executable().aiq_weights.nbytes
    assert nbytes >= 768 * 640  # the int8 weights of the first layer, at least
    saved = (tmp_path / "one.so").stat().st_size - (tmp_path / "split.so").stat().st_size
    assert saved >= nbytes, (saved, nbytes)
    assert (tmp_path / "split.params").stat().st_size >= nbytes


def test_a_missing_weights_file_is_named(exported, tmp_path):
    d, _ = exported
    lib = tmp_path / "alone.so"
    lib.write_bytes((d / "model.so").read_bytes())
    with pytest.raises(FileNotFoundError, match=r"alone.so holds code only; its weights file "
                       r".*alone.params is missing.*single_file=True"):
        aiq_tvm.load(lib)
    with pytest.raises(FileNotFoundError, match="no library at"):
        aiq_tvm.load(tmp_path / "none.so")
    # weights= points at a params file elsewhere
    assert len(aiq_tvm.load(lib, weights=d / "model.params").weights) > 0


def _export_pair(res, tmp_path, name):
    res.export_library(str(tmp_path / f"{name}.so"))
    return tmp_path / f"{name}.so", tmp_path / f"{name}.params"


def test_weights_of_another_build_are_refused_naming_the_difference(setup, exported,
                                                                    tmp_path):
    mod, params, res, x = setup
    d, _ = exported
    lib = d / "model.so"
    # Another plan: other weights (fp32 kernels take other tensors).
    fp32 = aiq_tvm.build(mod, params=params, plan="fp32", batch_size=BATCH)
    _, fp32_params = _export_pair(fp32, tmp_path, "fp32")
    with pytest.raises(WeightsError, match=r"fp32.params does not match the library: weight "
                       r"0 is .* in the file, .* in the library \(another build's weights\)"):
        aiq_tvm.load(lib, weights=fp32_params)
    # The same model and plan with other weight values: same names and shapes.
    other = {k: v * 1.5 for k, v in params.items()}
    res2 = aiq_tvm.build(mod, params=other, plan="int8", calibration=res.calibration,
                         batch_size=BATCH)
    _, other_params = _export_pair(res2, tmp_path, "other")
    with pytest.raises(WeightsError, match="same weight names and shapes but other values"):
        aiq_tvm.load(lib, weights=other_params)


def test_corrupt_or_foreign_params_files_are_refused(setup, exported, tmp_path):
    _, _, res, _ = setup
    d, _ = exported
    lib, good = d / "model.so", (d / "model.params").read_bytes()
    # The right manifest over a tensor of another shape: altered after export.
    w = res.executable().aiq_weights
    wrong = tvm.runtime.tensor(np.zeros(3, w.tensors[0].dtype))
    save(Weights(w.names, [wrong, *w.tensors[1:]], w.manifest), tmp_path / "altered.params")
    with pytest.raises(WeightsError, match=rf"weight 0 is stored as {w.names[0]} \[3\] .* "
                       "but its manifest lists .*: corrupt or altered file"):
        aiq_tvm.load(lib, weights=tmp_path / "altered.params")
    bad = tmp_path / "bad.params"
    bad.write_bytes(good[:-10])
    with pytest.raises(WeightsError, match="bad.params is truncated"):
        aiq_tvm.load(lib, weights=bad)
    tvm.runtime.save_param_dict_to_file({"w": tvm.runtime.tensor(np.ones(3, "float32"))},
                                        str(bad))
    with pytest.raises(WeightsError, match="has no aiq_manifest entry first"):
        aiq_tvm.load(lib, weights=bad)
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(WeightsError, match="not a TVM parameter file"):
        aiq_tvm.load(lib, weights=bad)
    flipped = bytearray(good)
    flipped[-1] ^= 0xFF  # a weight byte: only verify=True rehashes the bytes
    bad.write_bytes(bytes(flipped))
    assert aiq_tvm.load(lib, weights=bad).weights
    with pytest.raises(WeightsError, match="do not match their digest"):
        aiq_tvm.load(lib, weights=bad, verify=True)


def test_weights_path_and_in_process_vm_bind_the_weights(setup, tmp_path):
    _, _, res, x = setup
    assert str(weights_path("a/model.so")) == "a/model.params"
    assert str(weights_path("a/model")) == "a/model.params"
    with pytest.raises(ValueError, match="cannot be named like its weights file"):
        res.export_library(str(tmp_path / "m.params"))
    vm = res.vm(BATCH)
    n = len(res.executable(BATCH).aiq_weights.tensors)
    assert len(vm.weights) == n
    xt = tvm.runtime.tensor(x[:BATCH])
    np.testing.assert_array_equal(vm["main"](xt).numpy(), res.run(x[:BATCH]))
    # TVM's VM underneath: main takes the input, then the weights.
    np.testing.assert_array_equal(vm.vm["main"](xt, *vm.weights).numpy(), res.run(x[:BATCH]))
    with pytest.raises(Exception, match=f"expects {n + 1} arguments"):
        vm.vm["main"](xt)
