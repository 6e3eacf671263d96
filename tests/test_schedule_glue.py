"""ScheduleGlue: structure of the scheduled glue (Before/Expected: elementwise, a channels-last
pooling reduction, a transpose with a ragged innermost axis), lanes from the target, and
functions it cannot schedule are warned about, counted and left as TVM made them."""

import numpy as np
import pytest
import tvm
from tvm import s_tir
from tvm.script import ir as I
from tvm.script import tirx as T

from aiq_tvm.passes import ScheduleGlue
from aiq_tvm.passes import schedule_glue as glue_mod
from aiq_tvm.passes.schedule_glue import UnscheduledGlueWarning
from aiq_tvm.targets import capabilities

AVX2 = {"kind": "llvm", "mcpu": "haswell", "num-cores": 2}  # 8 fp32 lanes
AVX512 = {"kind": "llvm", "mcpu": "znver4", "num-cores": 2}  # 16 fp32 lanes (compiled only)


@I.ir_module
class Before:
    @T.prim_func(s_tir=True)
    def add_relu(A: T.Buffer((1, 16, 16, 16), "float32"), B: T.Buffer((1, 16, 16, 16), "float32"),
                 C: T.Buffer((1, 16, 16, 16), "float32")):
        T.func_attr({"tirx.noalias": True})
        S = T.sblock_alloc_buffer((1, 16, 16, 16))
        for i0, i1, i2, i3 in T.grid(1, 16, 16, 16):
            with T.sblock("add"):
                v0, v1, v2, v3 = T.axis.remap("SSSS", [i0, i1, i2, i3])
                S[v0, v1, v2, v3] = A[v0, v1, v2, v3] + B[v0, v1, v2, v3]
        for i0, i1, i2, i3 in T.grid(1, 16, 16, 16):
            with T.sblock("relu"):
                v0, v1, v2, v3 = T.axis.remap("SSSS", [i0, i1, i2, i3])
                C[v0, v1, v2, v3] = T.max(S[v0, v1, v2, v3], T.float32(0.0))


@I.ir_module
class ExpectedAVX2:
    @T.prim_func(s_tir=True)
    def add_relu(A: T.Buffer((1, 16, 16, 16), "float32"), B: T.Buffer((1, 16, 16, 16), "float32"),
                 C: T.Buffer((1, 16, 16, 16), "float32")):
        T.func_attr({"tirx.is_scheduled": True, "tirx.noalias": True})
        # The add is inlined into the relu; 4096 points = 512 parallel chunks x 8 vector lanes.
        for fused_0 in T.parallel(512):
            for fused_1 in T.vectorized(8):
                with T.sblock("relu"):
                    v0 = T.axis.spatial(1, 0)
                    v1 = T.axis.spatial(16, (fused_0 * 8 + fused_1) // 256)
                    v2 = T.axis.spatial(16, (fused_0 * 8 + fused_1) % 256 // 16)
                    v3 = T.axis.spatial(16, (fused_0 * 8 + fused_1) % 16)
                    T.reads(A[v0, v1, v2, v3], B[v0, v1, v2, v3])
                    T.writes(C[v0, v1, v2, v3])
                    C[v0, v1, v2, v3] = T.max(A[v0, v1, v2, v3] + B[v0, v1, v2, v3],
                                              T.float32(0.0))


def test_inlines_fuses_and_vectorizes_with_the_targets_lanes():
    after = ScheduleGlue(AVX2)(Before)
    tvm.ir.assert_structural_equal(after, ExpectedAVX2)


def _inner_extent(mod) -> int:
    """Extent of the vectorized innermost loop of the scheduled relu block."""
    sch = s_tir.Schedule(mod)
    inner = sch.get(sch.get_loops(sch.get_sblock("relu", func_name="add_relu"))[-1])
    assert inner.kind == tvm.tirx.ForKind.VECTORIZED
    return int(inner.extent)


@pytest.mark.parametrize("target", [AVX2, AVX512])
def test_lane_count_comes_from_the_target(target):
    lanes = capabilities(target).lanes32
    assert _inner_extent(ScheduleGlue(target)(Before)) == lanes
    with tvm.target.Target(target):  # the target in scope when none is given
        assert _inner_extent(ScheduleGlue()(Before)) == lanes
    assert _inner_extent(ScheduleGlue(target, lanes=4)(Before)) == 4


def test_already_scheduled_functions_are_left_alone():
    once = ScheduleGlue(AVX2)(Before)
    tvm.ir.assert_structural_equal(ScheduleGlue(AVX512)(once), once)


def test_a_function_it_cannot_schedule_is_warned_about_and_counted(monkeypatch):
    def fail(func, lanes):
        raise RuntimeError("no spatial loops\nsecond line")

    monkeypatch.setattr(glue_mod, "schedule_glue_func", fail)
    seen: list = []
    with pytest.warns(UnscheduledGlueWarning,
                      match="left 'add_relu' unscheduled .*RuntimeError: no spatial loops"):
        after = ScheduleGlue(AVX2, unscheduled=seen)(Before)
    tvm.ir.assert_structural_equal(after, Before)  # TVM's code, unchanged
    assert seen == [("add_relu", "RuntimeError: no spatial loops")]


@I.ir_module
class ScaleBefore:
    """A squeeze-and-excitation scale: a per-channel gate (here exp) times a 16 x 16 x 16 map."""

    @T.prim_func(s_tir=True)
    def gate_mul(G: T.Buffer((1, 1, 1, 16), "float32"), X: T.Buffer((1, 16, 16, 16), "float32"),
                 Y: T.Buffer((1, 16, 16, 16), "float32")):
        T.func_attr({"tirx.noalias": True})
        S = T.sblock_alloc_buffer((1, 1, 1, 16))
        for i0, i1, i2, i3 in T.grid(1, 1, 1, 16):
            with T.sblock("gate"):
                v0, v1, v2, v3 = T.axis.remap("SSSS", [i0, i1, i2, i3])
                S[v0, v1, v2, v3] = T.exp(G[v0, v1, v2, v3])
        for i0, i1, i2, i3 in T.grid(1, 16, 16, 16):
            with T.sblock("mul"):
                v0, v1, v2, v3 = T.axis.remap("SSSS", [i0, i1, i2, i3])
                Y[v0, v1, v2, v3] = X[v0, v1, v2, v3] * S[v0, 0, 0, v3]


def test_a_broadcast_producer_is_computed_once_not_per_output_point():
    after = ScheduleGlue(AVX2)(ScaleBefore)["gate_mul"]
    sch = s_tir.Schedule(after)
    gate, mul = sch.get_sblock("gate"), sch.get_sblock("mul")  # both blocks kept
    assert sch.get(sch.get_loops(mul)[-1]).kind == tvm.tirx.ForKind.VECTORIZED
    assert str(sch.get(gate).writes[0]).startswith("S[")  # 16 exps, not one per point
    assert any(str(r).startswith("S[") for r in sch.get(mul).reads)
    ex = tvm.compile(tvm.IRModule({"main": after}), tvm.target.Target(AVX2))
    rng = np.random.default_rng(0)
    g = rng.standard_normal((1, 1, 1, 16)).astype(np.float32)
    x = rng.standard_normal((1, 16, 16, 16)).astype(np.float32)
    y = tvm.runtime.tensor(np.zeros_like(x))
    ex["main"](tvm.runtime.tensor(g), tvm.runtime.tensor(x), y)
    np.testing.assert_allclose(y.numpy(), x * np.exp(g), rtol=1e-6)


@I.ir_module
class PoolBefore:
    @T.prim_func(s_tir=True)
    def max_pool(x: T.Buffer((1, 32, 32, 16), "float32"), y: T.Buffer((1, 16, 16, 16), "float32")):
        T.func_attr({"tirx.noalias": True})
        for n, h, w, c, rh, rw in T.grid(1, 16, 16, 16, 2, 2):
            with T.sblock("pool"):
                vn, vh, vw, vc, vrh, vrw = T.axis.remap("SSSSRR", [n, h, w, c, rh, rw])
                with T.init():
                    y[vn, vh, vw, vc] = T.float32(-3.4e38)
                y[vn, vh, vw, vc] = T.max(y[vn, vh, vw, vc], x[vn, vh * 2 + vrh, vw * 2 + vrw, vc])


@I.ir_module
class PoolExpected:
    @T.prim_func(s_tir=True)
    def max_pool(x: T.Buffer((1, 32, 32, 16), "float32"), y: T.Buffer((1, 16, 16, 16), "float32")):
        T.func_attr({"tirx.is_scheduled": True, "tirx.noalias": True})
        # Rows x channel blocks in parallel; the channel lanes inside the window loops.
        for n_h_w_c_0_fused in T.parallel(512):
            for c_1_init in T.vectorized(8):
                with T.sblock("pool_init"):
                    vn = T.axis.spatial(1, 0)
                    vh = T.axis.spatial(16, n_h_w_c_0_fused // 32)
                    vw = T.axis.spatial(16, n_h_w_c_0_fused % 32 // 2)
                    vc = T.axis.spatial(16, n_h_w_c_0_fused % 2 * 8 + c_1_init)
                    T.reads()
                    T.writes(y[vn, vh, vw, vc])
                    y[vn, vh, vw, vc] = T.float32(-3.4e38)
            for rh, rw in T.grid(2, 2):
                for c_1 in T.vectorized(8):
                    with T.sblock("pool_update"):
                        vn = T.axis.spatial(1, 0)
                        vh = T.axis.spatial(16, n_h_w_c_0_fused // 32)
                        vw = T.axis.spatial(16, n_h_w_c_0_fused % 32 // 2)
                        vc = T.axis.spatial(16, n_h_w_c_0_fused % 2 * 8 + c_1)
                        vrh, vrw = T.axis.remap("RR", [rh, rw])
                        T.reads(y[vn, vh, vw, vc], x[vn, vh * 2 + vrh, vw * 2 + vrw, vc])
                        T.writes(y[vn, vh, vw, vc])
                        y[vn, vh, vw, vc] = T.max(y[vn, vh, vw, vc],
                                                  x[vn, vh * 2 + vrh, vw * 2 + vrw, vc])


def _to_nhwc(width: int) -> tvm.IRModule:
    @I.ir_module
    class Transpose:
        @T.prim_func(s_tir=True)
        def to_nhwc(x: T.Buffer((1, 3, 32, width), "float32"),
                    y: T.Buffer((1, 32, width, 3), "float32")):
            T.func_attr({"tirx.noalias": True})
            for n, h, w, c in T.grid(1, 32, width, 3):
                with T.sblock("t"):
                    vn, vh, vw, vc = T.axis.remap("SSSS", [n, h, w, c])
                    y[vn, vh, vw, vc] = x[vn, vc, vh, vw]

    return Transpose


@I.ir_module
class TransposeExpected:
    @T.prim_func(s_tir=True)
    def to_nhwc(x: T.Buffer((1, 3, 32, 32), "float32"), y: T.Buffer((1, 32, 32, 3), "float32")):
        T.func_attr({"tirx.is_scheduled": True, "tirx.noalias": True})
        # 3 channels from 3 planes: lanes along a row's pixels (contiguous loads from one
        # plane), the channels unrolled around them, rows x pixel blocks in parallel.
        for n_h_w_0_fused in T.parallel(128):
            for c in T.unroll(3):
                for w_1 in T.vectorized(8):
                    with T.sblock("t"):
                        vn = T.axis.spatial(1, 0)
                        vh = T.axis.spatial(32, n_h_w_0_fused // 4)
                        vw = T.axis.spatial(32, n_h_w_0_fused % 4 * 8 + w_1)
                        vc = T.axis.spatial(3, c)
                        T.reads(x[vn, vc, vh, vw])
                        T.writes(y[vn, vh, vw, vc])
                        y[vn, vh, vw, vc] = x[vn, vc, vh, vw]


@I.ir_module
class ToNCHWBefore:
    @T.prim_func(s_tir=True)
    def to_nchw(x: T.Buffer((2, 7, 7, 64), "float32"), y: T.Buffer((2, 64, 7, 7), "float32")):
        T.func_attr({"tirx.noalias": True})
        for n, c, h, w in T.grid(2, 64, 7, 7):
            with T.sblock("t"):
                vn, vc, vh, vw = T.axis.remap("SSSS", [n, c, h, w])
                y[vn, vc, vh, vw] = x[vn, vh, vw, vc]


@I.ir_module
class ToNCHWExpected:
    @T.prim_func(s_tir=True)
    def to_nchw(x: T.Buffer((2, 7, 7, 64), "float32"), y: T.Buffer((2, 64, 7, 7), "float32")):
        T.func_attr({"tirx.is_scheduled": True, "tirx.noalias": True})
        # Rows of 7 pixels (ShuffleNet's NHWC -> NCHW before a channel shuffle): lanes along
        # the channels the input is contiguous in, the 7 pixels unrolled around them.
        for n_c_0_h_fused in T.parallel(112):
            for w in T.unroll(7):
                for c_1 in T.vectorized(8):
                    with T.sblock("t"):
                        vn = T.axis.spatial(2, n_c_0_h_fused // 56)
                        vc = T.axis.spatial(64, n_c_0_h_fused % 56 // 7 * 8 + c_1)
                        vh = T.axis.spatial(7, n_c_0_h_fused % 7)
                        vw = T.axis.spatial(7, w)
                        T.reads(x[vn, vh, vw, vc])
                        T.writes(y[vn, vc, vh, vw])
                        y[vn, vc, vh, vw] = x[vn, vh, vw, vc]


@I.ir_module
class RaggedTransposeExpected:
    @T.prim_func(s_tir=True)
    def to_nhwc(x: T.Buffer((1, 3, 32, 30), "float32"), y: T.Buffer((1, 32, 30, 3), "float32")):
        T.func_attr({"tirx.is_scheduled": True, "tirx.noalias": True})
        # Rows of 30 pixels do not split into 4 or 8 lanes: no vector lanes across pixels (indices
        # by division), pixels in parallel, the 3 channels serial.
        for n_h_w_fused in T.parallel(960):
            for c in range(3):
                with T.sblock("t"):
                    vn = T.axis.spatial(1, 0)
                    vh = T.axis.spatial(32, n_h_w_fused // 30)
                    vw = T.axis.spatial(30, n_h_w_fused % 30)
                    vc = T.axis.spatial(3, c)
                    T.reads(x[vn, vc, vh, vw])
                    T.writes(y[vn, vh, vw, vc])
                    y[vn, vh, vw, vc] = x[vn, vc, vh, vw]


@pytest.mark.parametrize(("before", "expected", "name", "shapes"), [
    (PoolBefore, PoolExpected, "max_pool", ((1, 32, 32, 16), (1, 16, 16, 16))),
    (_to_nhwc(32), TransposeExpected, "to_nhwc", ((1, 3, 32, 32), (1, 32, 32, 3))),
    (_to_nhwc(30), RaggedTransposeExpected, "to_nhwc", ((1, 3, 32, 30), (1, 32, 30, 3))),
    (ToNCHWBefore, ToNCHWExpected, "to_nchw", ((2, 7, 7, 64), (2, 64, 7, 7))),
])
def test_reductions_and_ragged_transposes(before, expected, name, shapes):
    after = ScheduleGlue(AVX2)(before)
    tvm.ir.assert_structural_equal(after, expected)
    x = np.random.default_rng(0).standard_normal(shapes[0]).astype(np.float32)
    outs = []
    for mod in (before, after):
        y = tvm.runtime.tensor(np.zeros(shapes[1], np.float32))
        tvm.tirx.build(mod, target=AVX2)[name](tvm.runtime.tensor(x), y)
        outs.append(y.numpy())
    np.testing.assert_array_equal(outs[0], outs[1])
    ref = {"to_nhwc": lambda: x.transpose(0, 2, 3, 1), "to_nchw": lambda: x.transpose(0, 3, 1, 2),
           "max_pool": lambda: x.reshape(1, 16, 2, 16, 2, 16).max(axis=(2, 4))}[name]()
    np.testing.assert_array_equal(outs[1], ref)


def _pool(channels: int, dtype: str = "uint8") -> tvm.IRModule:
    low = T.uint8(0) if dtype == "uint8" else T.float32(-3.4e38)

    @I.ir_module
    class Pool:
        @T.prim_func(s_tir=True)
        def max_pool(x: T.Buffer((1, 8, 8, channels), dtype),
                     y: T.Buffer((1, 4, 4, channels), dtype)):
            T.func_attr({"tirx.noalias": True})
            for n, h, w, c, rh, rw in T.grid(1, 4, 4, channels, 2, 2):
                with T.sblock("pool"):
                    vn, vh, vw, vc, vrh, vrw = T.axis.remap("SSSSRR", [n, h, w, c, rh, rw])
                    with T.init():
                        y[vn, vh, vw, vc] = low
                    y[vn, vh, vw, vc] = T.max(y[vn, vh, vw, vc],
                                              x[vn, vh * 2 + vrh, vw * 2 + vrw, vc])

    return Pool


@pytest.mark.parametrize(("channels", "dtype", "lanes"), [
    (64, "uint8", 32), (48, "uint8", 16), (8, "uint8", 8),
    # Channels not a multiple of the 8 fp32 lanes (ShuffleNet's 24 on AVX-512): 4 lanes.
    (12, "float32", 4), (12, "uint8", 4),
])
def test_pooling_fills_a_vector_its_channels_divide(channels, dtype, lanes):
    """AVX2 has 8 fp32 lanes, i.e. 32 uint8 lanes: a uint8 pool uses as many as divide its
    channels (never fewer than the 32-bit lanes that divide them), a pool whose channels
    are no multiple of 8 a half or a quarter of them; all stay exact."""
    before = _pool(channels, dtype)
    after = ScheduleGlue(AVX2)(before)
    sch = s_tir.Schedule(after)
    inner = sch.get(sch.get_loops(sch.get_sblock("pool_update", func_name="max_pool"))[-1])
    assert inner.kind == tvm.tirx.ForKind.VECTORIZED and int(inner.extent) == lanes
    x = np.random.default_rng(0).integers(0, 256, (1, 8, 8, channels)).astype(dtype)
    y = tvm.runtime.tensor(np.zeros((1, 4, 4, channels), dtype))
    tvm.tirx.build(after, target=AVX2)["max_pool"](tvm.runtime.tensor(x), y)
    ref = x.reshape(1, 4, 2, 4, 2, channels).max(axis=(2, 4))
    np.testing.assert_array_equal(y.numpy(), ref)


def _padded_max_pool(dtype: str) -> tvm.tirx.PrimFunc:
    """ResNet's 3 x 3 / 2 max-pool with padding 1, as TVM legalizes it: a padded copy of the
    input (larger than the pooled output) then the window reduction."""
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 16, 16, 64), dtype))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.max_pool2d(x, (3, 3), (2, 2), (1, 1, 1, 1), layout="NHWC"))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    mod = relax.transform.LegalizeOps()(bb.get())
    return next(f for _, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc))


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_a_pooling_pad_is_inlined_not_materialized(dtype):
    """The padded input has more points than the pooled output (but fewer than output x
    window): it must be inlined like any larger producer, not kept as a broadcast."""
    func = _padded_max_pool(dtype)
    before = s_tir.Schedule(func)
    assert len(glue_mod._root_blocks(before)) == 2  # pad_temp, pool_max
    after = glue_mod.schedule_glue_func(func, capabilities(tvm.target.Target(AVX2)).lanes32)
    sch = s_tir.Schedule(after)
    assert [sch.get(b).name_hint for b in glue_mod._root_blocks(sch)] == ["pool_max_init",
                                                                         "pool_max_update"]
    x = np.random.default_rng(0).integers(0, 256, (1, 16, 16, 64)).astype(dtype)
    y = tvm.runtime.tensor(np.zeros((1, 8, 8, 64), dtype))
    lib = tvm.tirx.build(tvm.IRModule({"main": after.with_attr("global_symbol", "main")}),
                         target=AVX2)
    lib["main"](tvm.runtime.tensor(x), y)
    padded = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)),
                    constant_values=-np.inf)
    ref = np.max([padded[:, i:i + 16:2, j:j + 16:2] for i in range(3) for j in range(3)], axis=0)
    np.testing.assert_array_equal(y.numpy().astype(np.float64), ref)
