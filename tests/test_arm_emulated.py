"""aarch64 builds run on an emulated board (qemu-user TVM RPC server): ``make test-arm``.

Correctness only (nothing is timed under emulation). Skipped in ``make test``: the emulated
server and the cross builds take minutes on 2 cores. What runs here: the NEON int8/int4
kernels of every Arm ISA level exact against the numpy reference (random data and the
extremes of each instruction), and ResNet-20 int8 / mixed int8+int4 builds for each level
giving the host's outputs bit for bit.
"""

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
from aiq_tvm import datasets, models, quant
from aiq_tvm.plan import Plan
from aiq_tvm.quant import ActQParams
from aiq_tvm.targets.arm import RPCServer
from aiq_tvm.targets.x86 import ConvSpec, DenseSpec, conv2d_kernel, dense_kernel
from aiq_tvm.testing import kernel_args, kernel_input, layer_data, reference
from isa import AARCH64_DOTPROD, ARM_TARGETS, disassembled, kernel_bodies

pytestmark = pytest.mark.skipif(
    os.environ.get("AIQ_TEST_ARM") != "1",
    reason="emulated aarch64 tests run with `make test-arm` (AIQ_TEST_ARM=1)")

CROSS_CC = "aarch64-linux-gnu-g++"


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
    tvm.compile(Conv, tvm.target.Target(AARCH64_DOTPROD)).export_library(
        str(lib), fcompile=cc.cross_compiler(CROSS_CC))
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


# ---------------------------------------------------------------------------------------------
# Layer kernels: exact int32 accumulators (debug_acc) on the board
# ---------------------------------------------------------------------------------------------


def random_cases(target):
    """(name, kernel, uint8 input, exact acc - corr) on random off-centre data: convs (regular,
    stride 2, grouped, depthwise) and dense layers. With
    ``+i8mm`` the convs and the 4-row dense's int4 run ``usmmla`` (2 x 2 blocks: the stride-2
    conv through its phase-split padded copy, the 7-wide conv pairs its last column with a
    padding column, 20 channels pad to 24 / 32, 70 to 72 / 80), the dense layers' int8 the
    16-channel ``usdot`` blocks (indexed: ``sudot``); the 7 x 7 RGB stem folds its kernel
    columns into the channel reduction."""
    out = []
    for i, spec in enumerate((ConvSpec(2, 8, 8, 20, 12, 3, 3, padding=1, stride=2),
                              ConvSpec(1, 6, 6, 64, 32, 1, 1), DenseSpec(3, 70, 10),
                              ConvSpec(1, 7, 7, 20, 12, 3, 3, padding=1),
                              DenseSpec(4, 70, 10),
                              ConvSpec(1, 6, 6, 32, 16, 3, 3, padding=1, groups=4),
                              ConvSpec(1, 7, 7, 24, 24, 3, 3, padding=1, groups=24),
                              # RGB stem: kernel columns folded into the reduction
                              ConvSpec(1, 13, 11, 3, 12, 7, 7, stride=2, padding=(3, 3, 2, 3)))):
        x, w, b, _, qp = layer_data(spec, np.random.default_rng(i), offset=0.7)
        make = dense_kernel if isinstance(spec, DenseSpec) else conv2d_kernel
        for scheme in ("int8", "int4"):
            k = make(spec, scheme, w, b, act_qparams=qp, target=target, debug_acc=True)
            xin = kernel_input(scheme, x, qp)
            ref = reference(spec, scheme, xin, w, b, act_qparams=qp, target=target)
            out.append((f"rand{i}_{scheme}", k, xin, ref.acc))
    return out


def extreme_cases(target):
    """Activations 0 and 255 against weight codes +-127 / +-7 with zero points 255 and 0: the
    largest products of every instruction (smull's int16 pair sums of +-32512 after the
    flip to ``a - 128``)."""
    spec = ConvSpec(1, 4, 4, 64, 16, 3, 3, padding=1)
    w = np.full(spec.weight_shape, -1.0, np.float32)
    w[:, ::2] = 1.0
    w[::3] *= -1.0
    xq = np.zeros(spec.in_shape, np.uint8)
    xq[..., ::3] = 255
    out = []
    for zp_range in ((-1.0, 0.0), (0.0, 1.0)):  # zp = 255, zp = 0
        qp = ActQParams.from_range(*zp_range)
        for scheme in ("int8", "int4"):
            k = conv2d_kernel(spec, scheme, w, None, act_qparams=qp, target=target,
                              debug_acc=True)
            ref = quant.ref_conv2d(xq, w, None, scheme, padding=spec.padding, act_qparams=qp)
            out.append((f"extreme_zp{qp.zp}_{scheme}", k, xq, ref.acc))
    return out


@pytest.mark.parametrize("level", list(ARM_TARGETS))
def test_kernels_exact_on_the_board(board, tmp_path, level):
    target = ARM_TARGETS[level]
    cases = random_cases(target) + extreme_cases(target)
    lib = tvm.compile(tvm.IRModule({name: k.prim_func.with_attr("global_symbol", name)
                                    for name, k, *_ in cases}), tvm.target.Target(target))
    path = tmp_path / f"kernels_{level}.so"
    lib.export_library(str(path), fcompile=cc.cross_compiler(CROSS_CC))
    sess = board.connect()
    sess.upload(str(path))
    rlib, dev = sess.load_module(path.name), sess.cpu()
    pairs = {name for name, k, *_ in cases if k.info["weight_format"].startswith("usmmla")}
    if level == "neon_i8mm":
        # not paired: the 3-row dense, the 4-row dense's int8 (16-channel usdot blocks model
        # cheaper at 10 outputs), the grouped conv's int4 (its 8-channel groups are narrower
        # than usmmla4's 16), the depthwise conv (no reduction over channels) and the folded
        # stem (usdot)
        unpaired = {"rand2_int8", "rand2_int4", "rand4_int8", "rand5_int4", "rand6_int8",
                    "rand6_int4", "rand7_int8", "rand7_int4"}
        assert pairs == {name for name, *_ in cases} - unpaired, sorted(pairs)
    else:
        assert not pairs
    for name, k, xin, want in cases:
        depthwise = name.startswith("rand6")  # plain NEON vectors, no dot instruction
        assert k.info["isa"] == level and (depthwise or k.info["intrin"]), name
        args = [tvm.runtime.tensor(a.numpy(), dev) for a in kernel_args(k, xin)]
        rlib[name](*args)
        np.testing.assert_array_equal(args[-1].numpy(), want, err_msg=name)


# ---------------------------------------------------------------------------------------------
# ResNet-20: the board's outputs are the host's
# ---------------------------------------------------------------------------------------------

MIXED = Plan({r"re:layer[23]\..*conv2": "int4"}, default="int8")
BUILDS = [("neon_dotprod", "int8"), ("neon_dotprod", "mixed"), ("neon_i8mm", "int8"),
          ("neon_i8mm", "mixed"), ("neon", "mixed")]
BATCH = 8


@pytest.fixture(scope="module")
def resnet20():
    """ResNet-20 calibrated on 64 Fashion-MNIST images (once, on the host), 64 validation
    images."""
    xc, _ = datasets.calibration_set(64)
    xv, yv = datasets.validation_set(64)
    mod, params = aiq_tvm.from_torch(models.resnet20(pretrained=True), torch.from_numpy(xv[:2]))
    cal = aiq_tvm.build(mod, AARCH64_DOTPROD, params=params, plan="int8", calib_data=xc,
                        batch_size=BATCH).calibration
    return mod, params, cal, xv, yv


@pytest.mark.parametrize("level, plan", BUILDS, ids=[f"{lv}-{p}" for lv, p in BUILDS])
def test_resnet20_on_the_board_gives_the_host_outputs(board, resnet20, level, plan, tmp_path):
    """The aarch64 build on the board and the host build with the deploy target's numerics
    (what calibration, search and ``BuildResult.run`` use) agree bit for bit. With ``+i8mm``
    every integer kernel runs ``usmmla``, the classifier (8 rows) included."""
    mod, params, cal, xv, yv = resnet20
    res = aiq_tvm.build(mod, ARM_TARGETS[level], params=params,
                        plan=MIXED if plan == "mixed" else plan, calibration=cal,
                        batch_size=BATCH)
    if level == "neon_i8mm":
        res.export_library(str(tmp_path / "r20.so"))
        bodies = kernel_bodies(tmp_path / "r20.so")
        paired = {name for name, body in bodies.items() if disassembled(body, "usmmla")}
        assert paired == set(bodies) and "fc_int8_compute_" in paired
        assert plan == "int8" or any("int4" in name for name in paired)
    host = res.run(xv, BATCH)
    sess = board.connect()
    got = res.on_remote(sess, BATCH).run(xv, BATCH)
    np.testing.assert_array_equal(got, host)
    assert (got.argmax(1) == yv).mean() >= 0.85  # a working classifier, not a constant
