"""StackSmallBuffers and the "aiq_tvm" TIR pipeline: which allocations stay on the stack
(Before/Expected), that a lowered kernel then calls no workspace allocator (and does with TVM's
own pipeline), and a conv kernel whose register block is exactly 1 KiB of accumulators,
compiled both ways, against each other bit for bit and against numpy."""

import numpy as np
import pytest
import tvm
from tvm.script import tirx as T

from aiq_tvm.passes import StackSmallBuffers
from aiq_tvm.pipeline import TIR_PIPELINE
from aiq_tvm.quant import ref_conv2d
from aiq_tvm.targets import host_target
from aiq_tvm.targets.x86 import ConvSpec, conv2d_kernel
from aiq_tvm.testing import kernel_args
from isa import ISA_TARGETS

WORKSPACE = "TVMBackendAllocWorkspace"


@T.prim_func(s_tir=True)
def _before(a: T.Buffer((64,), "float32"), b: T.Buffer((64,), "float32")):
    T.func_attr({"global_symbol": "main", "tir.noalias": True})
    for t in T.parallel(2):
        acc = T.alloc_buffer((16,), "float32x16")  # 1024 bytes: a 16-vector register block
        page = T.alloc_buffer((1024,), "float32")  # 4096 bytes: the limit, kept
        big = T.alloc_buffer((1025,), "float32")  # 4100 bytes: a workspace
        loc = T.alloc_buffer((16,), "float32", scope="local")  # not "global": untouched
        for v in range(16):
            acc[v] = T.Broadcast(a[t], 16)
        b[T.Ramp(t * 16, 1, 16)] = acc[t]
        page[t] = a[t] * T.float32(2)
        big[t] = page[t]
        loc[t] = big[t]
        b[32 + t] = loc[t]


@T.prim_func(s_tir=True)
def _expected(a: T.Buffer((64,), "float32"), b: T.Buffer((64,), "float32")):
    T.func_attr({"global_symbol": "main", "tir.noalias": True})
    for t in T.parallel(2):
        acc = T.alloc_buffer((16,), "float32x16",
                             annotations={"disable_lower_builtin": T.bool(True)})
        page = T.alloc_buffer((1024,), "float32",
                              annotations={"disable_lower_builtin": T.bool(True)})
        big = T.alloc_buffer((1025,), "float32")
        loc = T.alloc_buffer((16,), "float32", scope="local")
        for v in range(16):
            acc[v] = T.Broadcast(a[t], 16)
        b[T.Ramp(t * 16, 1, 16)] = acc[t]
        page[t] = a[t] * T.float32(2)
        big[t] = page[t]
        loc[t] = big[t]
        b[32 + t] = loc[t]


def test_small_global_buffers_are_annotated_for_the_stack():
    stack = StackSmallBuffers()
    after = stack(tvm.IRModule({"main": _before}))
    tvm.ir.assert_structural_equal(after["main"], _expected)
    assert stack.annotated == 2


def test_max_bytes_sets_the_limit_and_is_checked():
    after = StackSmallBuffers(max_bytes=1024)(tvm.IRModule({"main": _before}))
    script = after["main"].script()
    assert script.count("disable_lower_builtin") == 1  # the 1 KiB block, not the page
    with pytest.raises(ValueError, match="max_bytes must be a positive int"):
        StackSmallBuffers(max_bytes=0)


def _host_tir(mod: tvm.IRModule, pipeline: str) -> str:
    """``mod`` through a named TIR pipeline and its host finalization (LowerTVMBuiltin)."""
    target = tvm.target.Target("llvm")
    mod = tvm.tirx.transform.BindTarget(target.with_host(target))(mod)
    lower, finalize_host, _ = tvm.tirx.get_tir_pipeline(pipeline)
    return finalize_host()(lower(mod)).script()


def _acc_line(script: str) -> str:
    return next(ln for ln in script.splitlines() if ln.strip().startswith("acc = "))


def test_pipeline_keeps_the_accumulators_off_the_workspace():
    mod = tvm.IRModule({"main": _before})
    ours, tvms = _host_tir(mod, TIR_PIPELINE), _host_tir(mod, "s_tir")
    assert WORKSPACE in _acc_line(tvms)  # TVM: 1024 bytes are not below its 1024-byte bound
    assert WORKSPACE not in _acc_line(ours) and "disable_lower_builtin" in _acc_line(ours)
    # The local-scope buffer keeps its workspace in both.
    assert ours.count(WORKSPACE) == tvms.count(WORKSPACE) - 1 >= 1


def _conv_1kib_block(target):
    """fp32 1x1 256 -> 1024 at 14 x 14, batch 8: on AVX-512 the planner's block is 4
    positions x 64 channels, 16 zmm accumulators, 1024 bytes."""
    spec = ConvSpec(8, 14, 14, 256, 1024, 1, 1)
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((1024, 256, 1, 1)) * 0.05).astype("float32")
    b = rng.standard_normal(1024).astype("float32")
    return spec, w, b, conv2d_kernel(spec, "fp32", w, b, act="relu", target=target,
                                     winograd=False)


def test_conv_block_accumulators_leave_no_workspace_or_memset(xeon_caches):
    # The L2 is pinned: with a 1 MiB L2 the plan walks its channel blocks in another order,
    # whose zero init TVM's pipeline no longer turns into a memset.
    target = tvm.target.Target(ISA_TARGETS["avx512bw"])  # compiled only, not run
    _, _, _, kern = _conv_1kib_block(target)
    assert "oc64_tile1x2x2" in kern.info["schedule"]  # 16 accumulators of 64 bytes
    mod = tvm.IRModule({"main": kern.prim_func})
    ours = tvm.compile(mod, target, tir_pipeline=TIR_PIPELINE).mod.inspect_source("asm")
    tvms = tvm.compile(mod, target, tir_pipeline="s_tir").mod.inspect_source("asm")
    assert WORKSPACE in tvms and "memset" in tvms
    assert WORKSPACE not in ours and "memset" not in ours


def test_conv_outputs_match_numpy_and_tvms_pipeline_bit_for_bit():
    target = tvm.target.Target(host_target())
    spec, w, b, kern = _conv_1kib_block(target)
    x = np.random.default_rng(1).standard_normal(spec.in_shape).astype("float32")
    mod = tvm.IRModule({"main": kern.prim_func})
    outs = []
    for pipeline in (TIR_PIPELINE, "s_tir"):
        args = kernel_args(kern, x)
        tvm.compile(mod, target, tir_pipeline=pipeline).mod["main"](*args)
        outs.append(args[-1].numpy())
    np.testing.assert_array_equal(outs[0], outs[1])
    ref = ref_conv2d(x, w, b, "fp32", act="relu").y
    np.testing.assert_allclose(outs[0], ref, rtol=1e-4, atol=1e-4)
