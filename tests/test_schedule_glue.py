"""ScheduleGlue: structure of the scheduled glue (Before/Expected), lanes from the target,
and functions it cannot schedule are warned about, counted and left as TVM made them."""

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
