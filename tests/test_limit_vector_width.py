"""LimitVectorWidth: over-wide vectorized loops are split (Before/Expected), narrow and odd
ones are kept, the split function computes the same values, and a function without blocks
is left alone with a warning."""

import numpy as np
import pytest
import tvm
from tvm.script import ir as I
from tvm.script import tirx as T

from aiq_tvm.passes import LimitVectorWidth
from aiq_tvm.passes.limit_vector_width import UninspectedFunctionWarning


@I.ir_module
class Before:
    @T.prim_func(s_tir=True)
    def pad(x: T.Buffer((1, 2, 2, 512), "float32"), y: T.Buffer((1, 4, 4, 512), "float32")):
        T.func_attr({"tirx.is_scheduled": True, "tirx.noalias": True})
        for i, j in T.grid(4, 4):
            for c in T.vectorized(512):  # 512 x 32 bits: a <512 x float> per iteration
                with T.sblock("pad"):
                    vi, vj, vc = T.axis.remap("SSS", [i, j, c])
                    y[0, vi, vj, vc] = T.if_then_else(
                        1 <= vi and vi < 3 and 1 <= vj and vj < 3,
                        x[0, vi - 1, vj - 1, vc], T.float32(0.0))


@I.ir_module
class Expected:
    @T.prim_func(s_tir=True)
    def pad(x: T.Buffer((1, 2, 2, 512), "float32"), y: T.Buffer((1, 4, 4, 512), "float32")):
        T.func_attr({"tirx.is_scheduled": True, "tirx.noalias": True})
        for i, j, c_0 in T.grid(4, 4, 32):
            for c_1 in T.vectorized(16):  # 16 x 32 bits = 512 bits
                with T.sblock("pad"):
                    vi, vj = T.axis.remap("SS", [i, j])
                    vc = T.axis.spatial(512, c_0 * 16 + c_1)
                    T.reads(x[0, vi - 1, vj - 1, vc])
                    T.writes(y[0, vi, vj, vc])
                    y[0, vi, vj, vc] = T.if_then_else(
                        1 <= vi and vi < 3 and 1 <= vj and vj < 3,
                        x[0, vi - 1, vj - 1, vc], T.float32(0.0))


def _copy(n: int, dtype: str):
    @T.prim_func(s_tir=True)
    def copy(a: T.Buffer((n,), dtype), b: T.Buffer((n,), dtype)):
        for k in T.vectorized(n):
            with T.sblock("copy"):
                vk = T.axis.remap("S", [k])
                b[vk] = a[vk]

    return copy


def _vector_extents(mod) -> list[int]:
    out = []

    def visit(node):
        if isinstance(node, tvm.tirx.For) and node.kind == tvm.tirx.ForKind.VECTORIZED:
            out.append(int(node.extent))

    for _, func in mod.functions_items():
        _walk(func.body, visit)
    return out


def _walk(stmt, visit):
    """Post-order walk over the statement types these tests build."""
    if isinstance(stmt, tvm.tirx.For):
        _walk(stmt.body, visit)
    elif isinstance(stmt, tvm.tirx.SeqStmt):
        for s in stmt.seq:
            _walk(s, visit)
    elif hasattr(stmt, "block"):  # SBlockRealize
        _walk(stmt.block, visit)
    elif hasattr(stmt, "body"):  # SBlock
        _walk(stmt.body, visit)
    visit(stmt)


def test_splits_a_channel_wide_vector_into_512_bit_vectors():
    tvm.ir.assert_structural_equal(LimitVectorWidth()(Before), Expected)


@pytest.mark.parametrize(("n", "dtype", "max_bits", "extents"), [
    (512, "uint8", 512, [64]),          # 8-bit elements: 64 lanes fit 512 bits
    (16, "float32", 512, [16]),          # already one register: unchanged
    (24, "float32", 512, [8]),           # largest power of two dividing 24
    (21, "float32", 512, [21]),          # no power-of-two divisor >= 4 lanes: unchanged
    (512, "float32", 256, [8]),          # an AVX2-sized limit
])
def test_lane_count(n, dtype, max_bits, extents):
    mod = tvm.IRModule({"copy": _copy(n, dtype)})
    assert _vector_extents(LimitVectorWidth(max_bits=max_bits)(mod)) == extents


def test_split_function_computes_the_same_values():
    x = np.random.default_rng(0).standard_normal((1, 2, 2, 512)).astype(np.float32)
    outs = []
    for mod in (Before, LimitVectorWidth()(Before)):
        lib = tvm.tirx.build(mod, target={"kind": "llvm"})
        y = tvm.runtime.tensor(np.full((1, 4, 4, 512), np.nan, np.float32))
        lib["pad"](tvm.runtime.tensor(x), y)
        outs.append(y.numpy())
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[1][0, 1:3, 1:3], x[0])


def test_function_without_blocks_is_left_alone_with_a_warning():
    @T.prim_func
    def lowered(a: T.Buffer((64,), "float32")):
        for k in T.vectorized(64):
            a[k] = T.float32(1.0)

    mod = tvm.IRModule({"lowered": lowered})
    with pytest.warns(UninspectedFunctionWarning, match="lowered"):
        after = LimitVectorWidth()(mod)
    tvm.ir.assert_structural_equal(after, mod)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="max_bits must be a positive int"):
        LimitVectorWidth(max_bits=0)
