"""RPC servers started by the tests (the device-in-the-loop path, on an x86 'device' in CI)."""

import os

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import relax as R
from tvm.support import cc

from aiq_tvm.targets.arm import EmulationUnavailable, RPCServer, emulator_python


@tvm.script.ir_module
class Matmul:
    @R.function
    def main(x: R.Tensor((4, 8), "float32"), w: R.Tensor((8, 16), "float32")):
        with R.dataflow():
            y = R.matmul(x, w)
            R.output(y)
        return y


def test_host_rpc_server_runs_an_uploaded_module(tmp_path):
    lib = tmp_path / "matmul.so"
    host_exe = tvm.compile(Matmul, tvm.target.Target({"kind": "llvm"}))
    host_exe.export_library(str(lib), fcompile=cc.create_shared)
    rng = np.random.default_rng(0)
    x, w = rng.random((4, 8), np.float32), rng.random((8, 16), np.float32)
    with RPCServer() as server:
        pid = server._proc.pid
        host, port = server.address.split(":")
        assert host == "127.0.0.1" and int(port) >= 9190
        sess = server.connect()
        sess.upload(str(lib))
        dev = sess.cpu()
        vm = relax.VirtualMachine(sess.load_module("matmul.so"), dev)
        out = vm["main"](tvm.runtime.tensor(x, dev), tvm.runtime.tensor(w, dev)).numpy()
    np.testing.assert_allclose(out, x @ w, rtol=1e-5)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the server's whole process group is gone


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
