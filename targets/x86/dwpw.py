"""A float depthwise conv fused into the pointwise (1x1) conv that reads its output.

MobileNet-style blocks run depthwise 3x3 -> pointwise 1x1. As two kernels, the depthwise
output (56 x 56 x 144 float32 is 1.8 MB per image) is written by one kernel and read back by
the next; at batch 8 it is 14 MB and passes through memory twice. The fused kernel runs the
pointwise conv's own register-blocked schedule (its plan from the tile planner, with the
image and row-block loops as the parallel loop) and, right before each column of pointwise
register blocks, computes the depthwise outputs that column reads (its rows, every channel:
a few KB that stay in L1), with the depthwise bias and activation. The depthwise sums read
the input through a bounds check, as the depthwise kernel's inline-border mode does. The
sums and their order are the two kernels', so the output is theirs bit for bit.

FP32 only (both layers float32; the pointwise epilogue may still add a residual and
requantize for 8-bit consumers). :func:`fusion_reason` says why a pair does not fuse,
:func:`fusion_pays` whether it is worth it on a target.
"""

from __future__ import annotations

import dataclasses
from math import prod

import numpy as np
import tvm
from tvm import s_tir, te

from .common import (
    ConvSpec,
    Kernel,
    finalize,
    layer_output,
    residual_input,
    residual_value,
)
from .conv2d import _acc_block, _bordered_reader, _conv_choice, _conv_constants, crop_dead_taps
from .layer import const_placeholders, kernel_info, layer_args
from .schedules import TilePlan, acc_extents, apply_tiled

__all__ = ["depthwise_pointwise_kernel", "fusion_reason", "fusion_pays", "DW_PREFIX",
           "FUSED_LAYERS_ATTR"]

# PrimFunc attribute: how many layers a kernel computes (read by the profiler; absent: one).
FUSED_LAYERS_ATTR = "aiq.fused_layers"
# Constant names of the depthwise part in the fused kernel's parameters.
DW_PREFIX = "dw_"
# Parallel tasks per thread below which fusing does not pay (see fusion_pays).
MIN_TASKS_PER_THREAD = 4


def _choice(spec: ConvSpec, args):
    return _conv_choice(spec, args.scheme, args.qmax, args.cpu, requant=args.requant,
                        winograd=False, decode_once=None, database=None, tune_trials=0)


def _args(spec: ConvSpec, weight, bias, act, target, out_qparams=None):
    return layer_args("fp32", weight, spec.weight_shape, bias, act=act, act_qparams=None,
                      out_qparams=out_qparams, debug_acc=False, target=target,
                      numerics_target=None, depthwise=spec.is_depthwise)


def _channel_vector(c: int, lanes: int) -> int:
    """Widest of a full, half or quarter vector that divides ``c`` (0: none of 4 or more)."""
    return next((v for v in (lanes, lanes // 2, lanes // 4) if v >= 4 and c % v == 0), 0)


def fusion_reason(dw: ConvSpec, pw: ConvSpec, target) -> str | None:
    """Why the depthwise conv ``dw`` cannot be fused into the pointwise conv ``pw`` reading
    its output on ``target`` (None: it can)."""
    if not dw.is_depthwise or dw.dilation != (1, 1):
        return "the first layer is not an undilated depthwise conv"
    if crop_dead_taps(dw)[0] != dw:
        return "the depthwise window reads only padding in some rows or columns"
    if not pw.is_pointwise or pw.stride != (1, 1) or pw.dilation != (1, 1):
        return "the second layer is not a 1x1 stride-1 conv"
    if (pw.N, pw.H, pw.W, pw.C) != dw.out_shape:
        return "the pointwise conv does not read the depthwise output"
    args = _args(pw, np.zeros(pw.weight_shape, np.float32), None, "none", target)
    if not _channel_vector(dw.C, args.cpu.lanes):
        return f"{dw.C} channels are not a multiple of 4"
    plan = _choice(pw, args).plan
    if plan.flat or plan.fold or plan.need_pad or plan.cp != pw.C or plan.tile.kchunk:
        return "the pointwise plan does not read its input directly"
    if plan.tile.order[:3] != ("s0", "s1", "s2"):
        return "the pointwise plan's outer loops are not the images, rows and columns"
    return None


def fused_tile(tile: TilePlan) -> TilePlan:
    """The pointwise plan the fused kernel runs: its own, without the output-channel blocks
    in the parallel loop (each task computes the depthwise values of its positions once,
    for all of their output channels)."""
    return dataclasses.replace(tile, par=tuple(p for p in tile.par if p != "o"))


def fusion_pays(dw: ConvSpec, pw: ConvSpec, target) -> bool:
    """Whether the fused kernel is expected to beat the two kernels on ``target``: a window of
    at most 3 x 3 taps, at least ``MIN_TASKS_PER_THREAD`` parallel tasks per thread, and a
    strided depthwise conv or more depthwise input and output bytes per thread than half a
    core's L2. From MobileNetV2 and MnasNet pairs alone on two threads (session 49,
    docs/runs/s49/dwpw_pairs.txt; the whole models in docs/performance_224.md):

    - strided: the fused depthwise part mostly beats our strided depthwise kernel (batch 1
      0.87-1.36x, batch 8 1.09-1.38x);
    - stride 1: where the depthwise input and output stay in L2 between the two kernels,
      there is little to save (28 x 28 x 192 at batch 1, 0.6 MB each side per thread:
      0.80x; 14 x 14: 0.97-0.99x); beyond it 1.09-1.13x at batch 1, 1.01-1.52x at batch 8;
    - with few tasks the threads wait on each other;
    - 5 x 5 windows read 25 bounds-checked taps per position: 0.67-0.83x.
    """
    if dw.KH * dw.KW > 9:
        return False
    args = _args(pw, np.zeros(pw.weight_shape, np.float32), None, "none", target)
    threads = max(args.cpu.threads, 1)
    tile = fused_tile(_choice(pw, args).plan.tile)
    extents = (pw.N, pw.OH, pw.OW, pw.O)
    npar = tile.num_parallel(extents)
    tasks = prod(e // t for e, t in zip(extents[:npar], tile.tiles[:npar], strict=True))
    moved = 4 * (prod(dw.in_shape) + prod(dw.out_shape)) / threads
    beyond_l2 = moved > args.cpu.caps.l2_bytes / 2
    return tasks >= MIN_TASKS_PER_THREAD * threads and (max(dw.stride) > 1 or beyond_l2)


def depthwise_pointwise_kernel(
    dw: ConvSpec, pw: ConvSpec, dw_weight: np.ndarray, dw_bias: np.ndarray | None,
    pw_weight: np.ndarray, pw_bias: np.ndarray | None, *, dw_act="none", pw_act="none",
    residual: bool = False, out_qparams=None, residual_qparams=None, target,
) -> Kernel:  # fmt: skip
    """Build the fused kernel: params ``(x, dw_weight, dw_bias, weight, bias, [out_q],
    [residual], y)``, ``x`` the depthwise conv's NHWC input, ``y`` the pointwise conv's
    output. ``residual``, ``out_qparams`` and ``residual_qparams`` (a uint8 shortcut) are the
    pointwise conv's epilogue, as in :func:`~aiq_tvm.targets.x86.conv2d_kernel`.

    Raises
    ------
    ValueError
        The pair cannot be fused (:func:`fusion_reason`).
    """
    reason = fusion_reason(dw, pw, target)
    if reason is not None:
        raise ValueError(f"cannot fuse {dw} into {pw}: {reason}")
    dargs = _args(dw, dw_weight, dw_bias, dw_act, target)
    pargs = _args(pw, pw_weight, pw_bias, pw_act, target, out_qparams)
    dchoice, pchoice = _choice(dw, dargs), _choice(pw, pargs)
    dnames, dconsts = _conv_constants(dw, dargs, dchoice.fmt, dchoice.plan)
    pnames, pconsts = _conv_constants(pw, pargs, pchoice.fmt, pchoice.plan)
    dtens = {nm: te.placeholder(v.shape, str(v.dtype), name=DW_PREFIX + nm)
             for nm, v in zip(dnames, dconsts, strict=True)}  # fmt: skip
    ptens = const_placeholders(pnames, pconsts)
    x = te.placeholder(dw.in_shape, "float32", name="x")
    dw_out = _depthwise_stages(x, dw, dtens, dargs)
    acc = _acc_block(pw, pchoice.plan, pchoice.fmt, dw_out, ptens["weight"])
    res = residual_input(pw.out_shape, residual, residual_qparams)
    y = te.compute(
        pw.out_shape,
        lambda b, i, j, oc: layer_output(
            acc[b, i, j, oc], oc, ptens, residual_value(res, (b, i, j, oc), residual_qparams),
            pargs),
        name="out",
    )  # fmt: skip
    params = [x, *[dtens[nm] for nm in dnames], *[ptens[nm] for nm in pnames]]
    params += [res] if res is not None else []
    func = finalize(te.create_prim_func([*params, y]), scheduled=False)
    tile = fused_tile(pchoice.plan.tile)
    func = _schedule(func, tile, _channel_vector(dw.C, dargs.cpu.lanes))
    func = func.with_attr(FUSED_LAYERS_ATTR, 2)
    names = [DW_PREFIX + nm for nm in dnames] + pnames
    consts = [*dconsts, *pconsts]
    sched = {"schedule": f"nhwc_dwpw_{tile.describe('pw')}", "schedule_source": "default"}
    info = kernel_info(pargs, pchoice.fmt, tile.mode, sched, names, consts, residual, False)
    info["fused_depthwise"] = True
    return Kernel(func, consts, "float32", pw.out_shape, pargs.out_dtype, info, tile)


def _depthwise_stages(x: te.Tensor, dw: ConvSpec, tens: dict, args) -> te.Tensor:
    """``dw_acc`` (the window sums) and ``dw_out`` (bias and activation) of the depthwise
    conv. The sums read the input through a bounds check (the zero padding outside), not a
    padded copy: the copy of a parallel task's rows cost more than the fusion saved
    (0.54-0.92x of the two kernels at batch 1, against 1.07-1.48x without it; session 49)."""
    read = _bordered_reader(x, dw, tvm.tirx.const(0.0, "float32"))
    sh, sw = dw.stride
    kh = te.reduce_axis((0, dw.KH), "kh")
    kw = te.reduce_axis((0, dw.KW), "kw")
    w = tens["weight"]  # [KH, KW, Cp]: channels padded to the plan's, the first C read
    acc = te.compute(
        dw.out_shape,
        lambda b, i, j, c: te.sum(read(b, i * sh + kh, j * sw + kw, c) * w[kh, kw, c],
                                  axis=[kh, kw]),
        name="dw_acc",
    )  # fmt: skip
    return te.compute(acc.shape, lambda b, i, j, c: layer_output(acc[b, i, j, c], c, tens,
                                                                 None, args), name="dw_out")


def _schedule(func: tvm.tirx.PrimFunc, tile, vec: int) -> tvm.tirx.PrimFunc:
    """The pointwise template (:func:`apply_tiled`), then the depthwise stages computed right
    before each column of pointwise register blocks reads them: the column's rows of every
    channel, one channel vector at a time, taps unrolled. The depthwise values a column
    needs (rows x channels, 4 KB at 7 rows of 144) stay in L1; computing a whole parallel
    task's rows first, through L2, ran 0.95x of the two kernels on MobileNetV2 at batch 8
    against 1.07x (session 49)."""
    sch = s_tir.Schedule(func)
    npar = tile.num_parallel(acc_extents(sch, len(tile.tiles)))
    apply_tiled(sch, tile, npar=npar)
    # The column-block loop: the parallel loop itself where it fuses the images, rows and
    # columns (npar 3), else the loop in the columns' place among the outer tile loops.
    column = sch.get_loops(sch.get_sblock("out"))[3 - max(npar, 1)]
    out, acc = sch.get_sblock("dw_out"), sch.get_sblock("dw_acc")
    sch.compute_at(out, column, preserve_unit_loops=True)
    *_, i, j, c = sch.get_loops(out)
    co, ci = sch.split(c, [None, vec])
    sch.reorder(co, i, j, ci)
    sch.compute_at(acc, co, preserve_unit_loops=True)
    *_, a_i, a_j, a_c, a_kh, a_kw = sch.get_loops(acc)
    sch.reorder(a_kh, a_kw, a_i, a_j, a_c)
    sch.vectorize(a_c)
    for lp in (a_j, a_i, a_kw, a_kh):
        sch.unroll(lp)
    init = sch.decompose_reduction(acc, a_kh)
    *_, i_i, i_j, i_c = sch.get_loops(init)
    sch.vectorize(i_c)
    for lp in (i_j, i_i, j, i):
        sch.unroll(lp)
    sch.vectorize(ci)
    return finalize(sch.mod["main"])
