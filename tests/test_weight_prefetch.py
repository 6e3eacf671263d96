"""Software prefetch of the next output-channel block's weights (targets/x86/prefetch.py).

Kernels whose tasks are output-channel blocks with a few passes over the output positions
get the next block's lines prefetched during the later passes; every other structure is left
unchanged. The outputs are bit-identical either way (a prefetch only moves data into the
cache), and the paced lines cover the whole next block.
"""

import numpy as np
import pytest

from aiq_tvm.quant import ActQParams
from aiq_tvm.targets.x86 import ConvSpec, DenseSpec, conv2d_kernel, dense_kernel, prefetch
from aiq_tvm.targets.x86.prefetch import (
    ENV_SWITCH,
    ROWS_FIRST_LINES,
    _rows_first_inner,
    pacing,
    prefetch_enabled,
    prefetch_next_weight_block,
)
from aiq_tvm.testing import compile_prim_func, kernel_args, kernel_input
from isa import AARCH64_DOTPROD, BEST_X86, HASWELL, isa_params

WIDE_1X1 = ConvSpec(1, 7, 7, 1024, 512, 1, 1)  # 2 MB fp32 weights: output-channel tasks
WIDER_1X1 = ConvSpec(1, 7, 7, 2048, 1024, 1, 1)  # 2 MB int8 weights
ROWS_1X1 = ConvSpec(1, 14, 14, 256, 512, 1, 1)  # 512 KB fp32 weights: row tasks (Zen 4 L2)
QP = ActQParams.from_range(-3.0, 3.0)


def _layer(spec, seed=0):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((spec.O, spec.C, spec.KH, spec.KW)) * 0.05).astype("float32")
    b = rng.standard_normal(spec.O).astype("float32")
    x = (rng.standard_normal(spec.in_shape) + 0.2).astype("float32")
    return x, w, b


def _conv(spec, scheme, target, winograd=False):
    x, w, b = _layer(spec)
    qp = QP if scheme != "fp32" else None
    return conv2d_kernel(spec, scheme, w, b, act="relu", act_qparams=qp, target=target,
                         winograd=winograd), kernel_input(scheme, x, qp)


def _run(kernel, xin, target) -> np.ndarray:
    args = kernel_args(kernel, xin)
    compile_prim_func(kernel.prim_func, target).mod["main"](*args)
    return args[-1].numpy()


# (haswell int8 plans 1-position register blocks for WIDER_1X1: 49 passes, left alone)
CHANNEL_TASK_CASES = [
    pytest.param(scheme, p.values[0], marks=p.marks, id=f"{scheme}-{p.id}")
    for scheme, levels in (("fp32", ("avx512_vnni", "avx2")), ("int8", ("avx512_vnni",)))
    for p in isa_params(levels)
]


@pytest.mark.parametrize("scheme,target", CHANNEL_TASK_CASES)
@pytest.mark.usefixtures("zen4_caches")  # weights past Zen 4's L2 share: channel tasks
def test_channel_block_tasks_prefetch_and_keep_their_outputs(scheme, target, monkeypatch):
    spec = WIDE_1X1 if scheme == "fp32" else WIDER_1X1
    kernel, xin = _conv(spec, scheme, target)
    assert kernel.plan.order[0] == "o"
    assert kernel.info["weight_prefetch"] >= 1
    assert kernel.prim_func.script().count("llvm.prefetch") == kernel.info["weight_prefetch"]
    monkeypatch.setenv(ENV_SWITCH, "0")
    plain, _ = _conv(spec, scheme, target)
    assert plain.info["weight_prefetch"] == 0
    assert "llvm.prefetch" not in plain.prim_func.script()
    np.testing.assert_array_equal(_run(kernel, xin, target), _run(plain, xin, target))


@pytest.mark.parametrize("target", isa_params(("avx512_vnni",)))
@pytest.mark.usefixtures("zen4_caches")
def test_large_groups_prefetch_in_a_loop(target, monkeypatch):
    """A group of more lines than MAX_UNROLLED_PREFETCHES is one prefetch in a loop over the
    lines (LLVM took minutes over 256 written-out prefetches), prefetching the same lines:
    the kernel's outputs stay those of the kernel without prefetch."""
    written_out, _ = _conv(WIDE_1X1, "fp32", target)
    lines = written_out.info["weight_prefetch"]
    assert lines >= 2 and written_out.prim_func.script().count("llvm.prefetch") == lines
    monkeypatch.setattr(prefetch, "MAX_UNROLLED_PREFETCHES", lines - 1)
    kernel, xin = _conv(WIDE_1X1, "fp32", target)
    script = kernel.prim_func.script()
    assert kernel.info["weight_prefetch"] == lines
    assert script.count("llvm.prefetch") == 1 and f"_line in range({lines})" in script
    monkeypatch.setenv(ENV_SWITCH, "0")
    plain, _ = _conv(WIDE_1X1, "fp32", target)
    np.testing.assert_array_equal(_run(kernel, xin, target), _run(plain, xin, target))


@pytest.mark.parametrize("target", isa_params(("avx512_vnni",)))
def test_winograd_panels_prefetch_the_next_panel(target, monkeypatch):
    """An F(2, 3) task walks (tile element, channel block) panels of the transformed weights,
    each read by 7 rows of tiles: the next panel comes in during the later rows. (AVX2 plans
    this layer as tasks of one tile row: no later pass, no prefetch.)"""
    spec = ConvSpec(1, 14, 14, 256, 256, 3, 3, padding=1)
    kernel, xin = _conv(spec, "fp32", target, winograd=2)
    assert kernel.info["schedule"].startswith("nhwc_winograd_f2") and "_rows7_" in \
        kernel.info["schedule"]
    assert kernel.info["weight_prefetch"] >= 1
    monkeypatch.setenv(ENV_SWITCH, "0")
    plain, _ = _conv(spec, "fp32", target, winograd=2)
    assert plain.info["weight_prefetch"] == 0
    np.testing.assert_array_equal(_run(kernel, xin, target), _run(plain, xin, target))


@pytest.mark.parametrize("target", isa_params(("avx512_vnni",)))
def test_image_tasks_walk_and_prefetch_the_panels(target, monkeypatch):
    """Tasks of one image each: the parallel loop does not move through the weights, the
    task's serial panel loops do (each panel read by 4 rows of tiles)."""
    spec = ConvSpec(2, 7, 7, 256, 256, 3, 3, padding=1)  # U: 4 MB, past the L2
    kernel, xin = _conv(spec, "fp32", target, winograd=2)
    assert "T.parallel(2)" in kernel.prim_func.script()  # one task per image
    assert kernel.info["weight_prefetch"] >= 1
    monkeypatch.setenv(ENV_SWITCH, "0")
    plain, _ = _conv(spec, "fp32", target, winograd=2)
    np.testing.assert_array_equal(_run(kernel, xin, target), _run(plain, xin, target))


@pytest.mark.usefixtures("zen4_caches")
@pytest.mark.parametrize("target,instruction", [(HASWELL, "prefetcht1"),
                                                (AARCH64_DOTPROD, "prfm\tpldl2keep")])
def test_prefetch_compiles_to_an_l2_prefetch_instruction(target, instruction):
    kernel, _ = _conv(WIDE_1X1, "fp32", target)
    assert kernel.info["weight_prefetch"] >= 1
    asm = compile_prim_func(kernel.prim_func, target).mod.inspect_source("asm")
    assert instruction in asm  # locality 2: into L2, not L1 (cross-built, not run)


@pytest.mark.usefixtures("zen4_caches")
def test_many_passes_row_tasks_and_dense_rows_are_left_alone():
    # batch 8: 56 passes over each block already hide the first one's wait
    batch8 = ConvSpec(8, 7, 7, 1024, 512, 1, 1)
    assert _conv(batch8, "fp32", BEST_X86)[0].info["weight_prefetch"] == 0
    # 147 KB of weights: row tasks (every task reads all weights from its L2)
    small = ConvSpec(1, 56, 56, 64, 64, 3, 3, padding=1)
    kernel, _ = _conv(small, "fp32", BEST_X86)
    assert kernel.plan.order[0] != "o" and kernel.info["weight_prefetch"] == 0
    # a dense layer at batch 1 reads every weight once: no later pass to hide it behind
    spec = DenseSpec(1, 2048, 1000)
    w = np.ones((1000, 2048), "float32")
    assert dense_kernel(spec, "fp32", w, None, target=BEST_X86).info["weight_prefetch"] == 0


@pytest.mark.usefixtures("zen4_caches")
def test_weights_that_stay_in_the_l2_are_left_alone(monkeypatch):
    """2 MB of weights: prefetched under a 1 MiB L2, left alone under 4 MiB (they fit 3/4 of
    it and stay cached), prefetched where the L2 is unknown."""
    monkeypatch.setenv(ENV_SWITCH, "0")
    func = _conv(WIDE_1X1, "fp32", BEST_X86)[0].prim_func
    monkeypatch.setenv(ENV_SWITCH, "1")
    assert prefetch_next_weight_block(func, 1 << 20)[1] >= 1
    assert prefetch_next_weight_block(func, 4 << 20) == (func, 0)
    assert prefetch_next_weight_block(func, 0)[1] >= 1


@pytest.mark.parametrize("target", isa_params(("avx512_vnni", "avx2")))
@pytest.mark.usefixtures("zen4_caches")
def test_row_tasks_prefetch_the_next_block_in_their_first_pass(target, monkeypatch):
    """Row tasks walk every output-channel block in each pass: the thread's first pass
    prefetches the next block during the current one, the other passes run the loop as it
    was (both versions are in the kernel), and the outputs do not change."""
    kernel, xin = _conv(ROWS_1X1, "fp32", target)
    assert kernel.plan.order[-1] == "o" and kernel.plan.order[0] != "o"
    assert kernel.info["weight_prefetch"] >= 1
    script = kernel.prim_func.script()
    assert script.count("llvm.prefetch") == kernel.info["weight_prefetch"]
    assert script.count('T.sblock("acc_update")') == 2  # with and without the prefetch
    monkeypatch.setenv(ENV_SWITCH, "0")
    plain, _ = _conv(ROWS_1X1, "fp32", target)
    assert plain.info["weight_prefetch"] == 0
    assert plain.prim_func.script().count('T.sblock("acc_update")') == 1
    np.testing.assert_array_equal(_run(kernel, xin, target), _run(plain, xin, target))


@pytest.mark.parametrize("extent,steps,lines,inner", [
    (256, 1, 512, 1),  # 2 lines a step: every step prefetches
    (256, 1, 128, 4),  # half a line a step: 2 lines every fourth step
    (512, 1, 2048, 1),  # 4 lines a step: as few steps as there are
    (64, 9, 288, 4),  # 3 x 3 taps outside: 9 x 16 groups of 2 lines
])
def test_row_task_groups_take_at_most_two_lines(extent, steps, lines, inner):
    assert _rows_first_inner(extent, steps, lines) == inner
    groups = steps * extent // inner
    assert -(-lines // groups) <= ROWS_FIRST_LINES or inner == 1


@pytest.mark.parametrize("block_lines", [1, 7, 64, 1536, 4096, 9216])
@pytest.mark.parametrize("groups", [1, 3, 96, 864, 3072, 12288])
def test_paced_lines_cover_the_next_block_and_stop_near_its_end(block_lines, groups):
    scale, per_group = pacing(block_lines, groups)
    lines = set()
    for g in range(groups):
        first = (g * scale) >> 16
        lines.update(range(first, first + per_group))
    assert set(range(block_lines)) <= lines
    assert max(lines) < block_lines + per_group


def test_switch_accepts_0_and_1_and_names_a_bad_value(monkeypatch):
    monkeypatch.setenv(ENV_SWITCH, "0")
    assert not prefetch_enabled()
    monkeypatch.setenv(ENV_SWITCH, "1")
    assert prefetch_enabled()
    monkeypatch.setenv(ENV_SWITCH, "yes")
    with pytest.raises(ValueError, match=f"{ENV_SWITCH} must be 0 or 1, got 'yes'"):
        prefetch_enabled()
