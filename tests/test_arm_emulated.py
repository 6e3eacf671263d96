"""aarch64 builds run on an emulated board (qemu-user TVM RPC server): ``make test-arm``.

Correctness only (nothing is timed under emulation). Skipped in ``make test``: starting the
emulated server alone takes about a minute on 2 cores.
"""

import gc
import os

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import relax as R
from tvm.support import cc

from aiq_tvm.targets.arm import RPCServer

pytestmark = pytest.mark.skipif(
    os.environ.get("AIQ_TEST_ARM") != "1",
    reason="emulated aarch64 tests run with `make test-arm` (AIQ_TEST_ARM=1)")

AARCH64 = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon", "+dotprod"]}


@pytest.fixture(autouse=True)
def _release_rpc_sessions():
    """A TVM RPC server serves one session at a time; a test's sessions that wait in
    reference cycles (exception tracebacks) would block the next test's: collect them."""
    yield
    gc.collect()


@pytest.fixture(scope="module")
def board():
    with RPCServer.emulated_aarch64() as server:
        yield server


@tvm.script.ir_module
class Conv:
    @R.function
    def main(x: R.Tensor((1, 3, 8, 8), "float32"), w: R.Tensor((4, 3, 3, 3), "float32")):
        with R.dataflow():
            y = R.nn.relu(R.nn.conv2d(x, w, padding=1))
            R.output(y)
        return y


def test_emulated_board_is_aarch64_and_runs_a_cross_build(board, tmp_path):
    lib = tmp_path / "conv.so"
    tvm.compile(Conv, tvm.target.Target(AARCH64)).export_library(
        str(lib), fcompile=cc.cross_compiler("aarch64-linux-gnu-g++"))
    with open(lib, "rb") as f:
        assert f.read(20)[18] == 183  # ELF e_machine EM_AARCH64
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    host = relax.VirtualMachine(tvm.compile(Conv, tvm.target.Target({"kind": "llvm"})), tvm.cpu())
    want = host["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(w)).numpy()
    sess = board.connect()
    sess.upload(str(lib))
    dev = sess.cpu()
    vm = relax.VirtualMachine(sess.load_module("conv.so"), dev)
    got = vm["main"](tvm.runtime.tensor(x, dev), tvm.runtime.tensor(w, dev)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # the emulated board fails cleanly on an x86 library instead of crashing the server
    bad = tmp_path / "x86.so"
    host_exe = tvm.compile(Conv, tvm.target.Target({"kind": "llvm"}))
    host_exe.export_library(str(bad), fcompile=cc.create_shared)
    sess.upload(str(bad))
    with pytest.raises(tvm.error.RPCError, match="Failed to load dynamic shared library"):
        sess.load_module("x86.so")


@pytest.mark.parametrize("mattr, intrin", [
    (["+neon"], "aiq_dot_4x4_neon_smull_u8i8i32"),
    (["+neon", "+dotprod"], "aiq_dot_4x4_neon_sdot_u8i8i32"),
    (["+neon", "+dotprod", "+i8mm"], "aiq_dot_4x4_neon_usdot_u8i8i32"),
])
def test_neon_intrinsics_are_exact_on_the_board(board, tmp_path, mattr, intrin):
    from aiq_tvm.targets.arm import neon

    n, k, o = 5, 64, 12
    target = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": mattr})
    assert neon.intrinsic_for(target) == intrin
    lib = tvm.compile(tvm.IRModule({"main": neon.dot_kernel(n, k, o, intrin)}), target=target)
    path = tmp_path / f"{intrin}.so"
    lib.export_library(str(path), fcompile=cc.cross_compiler("aarch64-linux-gnu-g++"))
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (n, k), dtype=np.uint8)
    w = rng.integers(-127, 128, (o, k), dtype=np.int8)
    a[0], w[0] = 255, -127  # the extremes: 255 * -127 * k, and int16 pair sums of smull
    a[1], w[1] = 0, 127
    want = a.astype(np.int64) @ w.astype(np.int64).T
    sess = board.connect()
    sess.upload(str(path))
    dev = sess.cpu()
    args = [tvm.runtime.tensor(a, dev), tvm.runtime.tensor(neon.pack_dot_weight(w), dev),
            tvm.runtime.tensor(np.zeros((n, o), np.int32), dev)]
    sess.load_module(path.name)["main"](*args)
    np.testing.assert_array_equal(args[2].numpy(), want)
