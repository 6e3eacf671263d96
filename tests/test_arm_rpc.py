"""Cross-compilation and the device-in-the-loop path: exports for aarch64, and builds run,
timed and profiled on an RPC server the tests start on 127.0.0.1 (an x86 'device' here; the
emulated aarch64 board is tests/test_arm_emulated.py, ``make test-arm``)."""

import gc
import os

import numpy as np
import pytest
import torch
import tvm
from tvm import relax
from tvm.script import relax as R
from tvm.support import cc

import aiq_tvm
from aiq_tvm.deploy import connect, export_compiler
from aiq_tvm.profiling import measured_report
from aiq_tvm.targets.arm import EmulationUnavailable, RPCServer, emulator_python
from conftest import TinyNet, randomize_bn

AARCH64 = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon", "+dotprod"]}


@pytest.fixture(autouse=True)
def _release_rpc_sessions():
    """A TVM RPC server serves one session at a time; a test's sessions that wait in
    reference cycles (exception tracebacks) would block the next test's: collect them."""
    yield
    gc.collect()


@pytest.fixture(scope="module")
def server():
    with RPCServer() as s:
        yield s


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 8, 8)
    mod, params = aiq_tvm.from_torch(randomize_bn(TinyNet()), x[:2])
    return mod, params, x.numpy()


@tvm.script.ir_module
class Matmul:
    @R.function
    def main(x: R.Tensor((4, 8), "float32"), w: R.Tensor((8, 16), "float32")):
        with R.dataflow():
            y = R.matmul(x, w)
            R.output(y)
        return y


def test_host_rpc_server_runs_an_uploaded_module(server, tmp_path):
    lib = tmp_path / "matmul.so"
    host_exe = tvm.compile(Matmul, tvm.target.Target({"kind": "llvm"}))
    host_exe.export_library(str(lib), fcompile=cc.create_shared)
    rng = np.random.default_rng(0)
    x, w = rng.random((4, 8), np.float32), rng.random((8, 16), np.float32)
    host, port = server.address.split(":")
    assert host == "127.0.0.1" and int(port) >= 9190
    sess = server.connect()
    sess.upload(str(lib))
    dev = sess.cpu()
    vm = relax.VirtualMachine(sess.load_module("matmul.so"), dev)
    out = vm["main"](tvm.runtime.tensor(x, dev), tvm.runtime.tensor(w, dev)).numpy()
    np.testing.assert_allclose(out, x @ w, rtol=1e-5)


def test_rpc_server_refuses_non_loopback_and_bad_ports():
    with pytest.raises(ValueError, match="loopback"):
        RPCServer(host="0.0.0.0")
    with pytest.raises(ValueError, match="port"):
        RPCServer(port=9300, port_end=9300)
    with pytest.raises(RuntimeError, match="not running"):
        RPCServer().address  # noqa: B018


def test_missing_emulator_names_the_setup_script(tmp_path):
    with pytest.raises(EmulationUnavailable, match="setup_emulation.sh"):
        emulator_python(tmp_path)


def test_export_compiler_per_architecture():
    assert export_compiler(tvm.target.Target({"kind": "llvm"})) is None
    assert export_compiler(tvm.target.Target(AARCH64)) == "aarch64-linux-gnu-g++"
    with pytest.raises(ValueError, match="no cross compiler known for riscv64"):
        export_compiler(tvm.target.Target({"kind": "llvm", "mtriple": "riscv64-linux-gnu"}))


def test_bad_remote_is_rejected_with_the_accepted_forms(tiny_model):
    mod, params, x = tiny_model
    for bad in ("localhost", "host:0", "a:b", 9190):
        with pytest.raises(ValueError, match="host:port"):
            connect(bad)
    with pytest.raises(ValueError, match="objective='measured'"):
        aiq_tvm.build(mod, params=params, plan="fp32", remote="127.0.0.1:9190")


def test_aarch64_int8_plan_calibrates_on_the_host(tiny_model):
    """A cross build calibrates on a host build; exports and dot-product kernels of aarch64
    builds are checked on ResNet-20 (test_arm_kernels.py)."""
    mod, params, x = tiny_model
    res = aiq_tvm.build(mod, AARCH64, params=params, plan="int8", calib_data=x,
                        eval_batch_size=4, batch_size=2)
    assert res.cross and capabilities_arch(res.run_target) == "x86_64"
    assert capabilities_arch(res.target) == "aarch64"
    assert res.report.run_target == str(res.run_target)
    assert res.calibration.num_samples == len(x) and set(res.calibration.ranges) <= set(
        res.cost.names)


def capabilities_arch(target) -> str:
    from aiq_tvm.targets import capabilities

    return capabilities(target).arch


def test_measured_build_runs_benchmarks_and_profiles_on_the_remote(server, tiny_model):
    mod, params, x = tiny_model
    before = server.log().count("/aiq_kernels_")  # sessions of earlier tests are closed
    # A TVM RPC server serves one session at a time: share one (a "host:port" string opens
    # a session per call, closed when the call's module is released).
    sess = server.connect()
    res = aiq_tvm.build(mod, params=params, calib_data=x, val_data=(x, np.arange(8) % 10),
                        precisions=["fp32", "int8"], objective="measured", remote=sess,
                        batch_size=2, eval_batch_size=4)
    # one uniform build per precision had its kernels uploaded to and timed on the server
    assert server.log().count("/aiq_kernels_") - before >= 2
    assert res.plan.metadata["objective"] == "measured"
    assert "layer_timing_s" in res.timings
    np.testing.assert_array_equal(res.on_remote(sess, 2).run(x[:4], 2), res.run(x[:4], 2))
    bench = res.benchmark(2, repeat=5, min_repeat_ms=1, remote=sess)
    assert bench["batch_size"] == 2 and 0 < bench["p10_ms"] <= bench["median_ms"]
    rep = measured_report(res, repeat=3, remote=sess)
    timed = {r.name: r.measured_us for r in rep.rows if r.measured_us is not None}
    assert set(timed) == set(res.cost.searchable) and min(timed.values()) > 0
    assert any("on the RPC device" in n for n in rep.notes)
    calls = res.executable(2).aiq_kernel_calls
    plan = res.plan.resolve(res.cost.names)
    kernels = [c.symbol for c in calls if c.symbol.endswith(("_int8", "_fp32"))]
    # An FP32 first layer whose padded copy reads the NCHW input is "<layer>_untransposed_fp32"
    # (FuseTransposeIntoPad); the measured search picks the stem's precision by timing.
    kernels = [k.replace("_untransposed_fp32", "_fp32") for k in kernels]
    assert kernels == [f"{n.replace('.', '_')}_{plan[n]}" for n in res.cost.searchable]


def test_measured_speed_floor_times_the_layers_on_the_remote(server, tiny_model):
    mod, params, x = tiny_model
    before = server.log().count("/aiq_kernels_")
    sess = server.connect()
    res = aiq_tvm.build(mod, params=params, plan="int8", calib_data=x, speed_floor="fp32",
                        speed_floor_timing="measured", remote=sess, batch_size=2,
                        eval_batch_size=4)
    # the plan's build and the all-FP32 build had their kernels timed on the server
    assert server.log().count("/aiq_kernels_") - before >= 2
    assert "floor_timing_s" in res.timings
    assert any("layer kernels timed on the RPC device" in n for n in res.report.notes)
    assert all(m["measured"] for m in res.report.floor)


def test_cli_rejects_a_bad_rpc_address(capsys):
    from aiq_tvm.cli import main

    with pytest.raises(SystemExit):
        main(["run", "--rpc", "nohost"])
    assert "host:port" in capsys.readouterr().err


def test_server_stop_ends_its_process_group(server):
    """Last test of the module: stopping the module's server ends its whole process group."""
    pid = server._proc.pid
    server.stop()
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    with pytest.raises(RuntimeError, match="not running"):
        server.address  # noqa: B018
