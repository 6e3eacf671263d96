"""Dense (fully connected) kernels ``x [N, K] -> y [N, O]`` for every precision scheme."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import te

from aiq_tvm.quant import ActQParams
from aiq_tvm.schemes import get_precision

from .common import (
    DenseSpec,
    Kernel,
    WeightFormat,
    epilogue_value,
    output_value,
    pack_weight,
    residual_input,
    residual_value,
    round_up,
    weight_value,
)
from .isa import CpuModel, cpu_model, numerics_qmax
from .layer import (
    const_placeholders,
    kernel_info,
    layer_args,
    layer_constants,
    layer_prim_func,
    schedule_layer,
)
from .schedules import (
    HEAP_ACC_CYCLES,
    STACK_ACC_BYTES,
    TASKS_PER_THREAD,
    TilePlan,
    balance,
    par_prefix_tasks,
    step_cycles,
)
from .winograd import bounded_cycles


def dense_candidates(spec: DenseSpec, fmt: WeightFormat, cpu: CpuModel):
    """All (cost, plan, padded rows) candidates of a dense layer (lower cost is better)."""
    threads, lanes, tp = cpu.threads, cpu.lanes, cpu.throughput
    n, k, o = spec.N, spec.K, spec.O
    kp = round_up(k, fmt.group)
    mode = "dot" if fmt.tensorized else "bcast"
    max_acc = cpu.max_acc(mode, 1, fmt.weight_regs)
    intrin = fmt.intrin
    inner = "ci" if fmt.group > 1 else None
    out = []
    for tn in range(1, min(n, max_acc) + 1):
        if fmt.pairs and (tn % 2 or n % tn):
            continue  # 2 x 2 blocks pair rows; no padded rows (their index is clamped)
        npad = round_up(n, tn)
        for ocv in (1, 2, 3, 4):
            if tn * ocv > cpu.max_acc(mode, ocv, fmt.weight_regs):
                continue
            ocb = lanes * ocv
            op = round_up(o, ocb)
            blocks = (npad // tn) * (op // ocb)
            step = step_cycles(tn, ocv, fmt, mode, tp)
            work = blocks * (kp // fmt.group) * step
            work += n * (op // lanes) * tp.epi_cycles
            if tn * ocb * 4 >= STACK_ACC_BYTES:
                work += blocks * tn * ocv * HEAP_ACC_CYCLES
            # Weight slab outermost when weights dominate the traffic (typical for FC).
            order = ("o", "s0") if op * kp > n * k else ("s0", "o")
            ext = {"o": op // ocb, "s0": npad // tn}
            min_tasks = TASKS_PER_THREAD * threads
            tasks = par_prefix_tasks([ext[k] for k in order if ext[k] > 1], min_tasks)
            cost = work / threads / balance(tasks, threads)
            tile = TilePlan((tn,), ocb, lanes, mode, order, order, intrin, ("cg", "ci"), inner,
                            min_tasks, pairs=fmt.pairs)  # fmt: skip
            out.append((cost, tile, npad))
    return out


def _plan_dense(
    spec: DenseSpec, fmts: list[WeightFormat], cpu: CpuModel
) -> tuple[WeightFormat, TilePlan, int, float]:
    """Cheapest (format, plan, padded rows, modelled cycles); ties go to the smaller register
    block."""
    cands = [
        (cost, i, fmt, tile, npad)
        for i, fmt in enumerate(fmts)
        for cost, tile, npad in dense_candidates(spec, fmt, cpu)
    ]
    cost, _, fmt, tile, npad = min(
        cands, key=lambda t: (round(t[0], 1), t[1], t[3].ocb * t[3].tiles[0])
    )
    return fmt, tile, npad, cost


def _dense_formats(spec: DenseSpec, scheme, qmax: int | None, cpu: CpuModel):
    return cpu.weight_formats(scheme, qmax, spec.K, depthwise=False)


def dense_cycles(spec: DenseSpec, scheme, target, numerics_target=None, *,
                 read=None) -> float:  # fmt: skip
    """Modelled cycles (wall, all threads of ``target``) of the kernel :func:`dense_kernel`
    builds for this layer, without building TIR (``Kernel.info["modelled_cycles"]``): its
    plan's cost, or reading its weights from memory where that takes longer; with ``read``
    (``nbytes -> cycles``), the speed floor's model: the plan's cost plus the read."""
    prec = get_precision(scheme)
    qmax = prec.weight_qmax(numerics_qmax(target if numerics_target is None
                                          else numerics_target))  # fmt: skip
    cpu = cpu_model(target).for_scheme(prec)
    _, _, _, cost = _plan_dense(spec, _dense_formats(spec, prec, qmax, cpu), cpu)
    nbytes = spec.K * spec.O * prec.weight_bytes
    return bounded_cycles(cost, nbytes) if read is None else cost + read(nbytes)


def dense_kernel(
    spec: DenseSpec,
    scheme,
    weight_ok: np.ndarray,
    bias: np.ndarray | None,
    *,
    act="none",
    act_qparams: ActQParams | None = None,
    out_qparams: ActQParams | None = None,
    residual: bool = False,
    residual_qparams: ActQParams | None = None,
    target,
    numerics_target=None,
    schedule: bool = True,
    debug_acc: bool = False,
    database=None,
    tune_trials: int = 0,
) -> Kernel:
    """Build a fused dense kernel.

    Parameters
    ----------
    spec : DenseSpec
        Layer shape.
    scheme : str or PrecisionScheme
        A registered precision (``"fp32"``, ``"int8"``, ``"int4"``, ``"w8"``, ``"w4"``).
    weight_ok : np.ndarray
        Float weight ``[O, K]`` (torch Linear layout).
    bias : np.ndarray or None
        ``[O]`` bias; ``None`` means zeros.
    act, act_qparams, out_qparams, residual, residual_qparams, target, numerics_target, \
schedule, debug_acc, database, tune_trials
        As in :func:`aiq_tvm.targets.x86.conv2d_kernel`.

    Returns
    -------
    Kernel
        PrimFunc params are ``(x, weight, [corr, comb | scale], bias, [out_q], [residual], y)``.
    """
    n, k, o = spec.N, spec.K, spec.O
    args = layer_args(
        scheme, weight_ok, (o, k), bias, act=act, act_qparams=act_qparams,
        out_qparams=out_qparams, debug_acc=debug_acc, target=target,
        numerics_target=numerics_target,
    )  # fmt: skip
    cpu, prec = args.cpu, args.scheme
    fmt, plan, npad, cost = _plan_dense(spec, _dense_formats(spec, prec, args.qmax, cpu), cpu)
    q, s_w = prec.quantize_weight(args.weight, args.int8_qmax)
    packed = pack_weight(q.reshape(o, k, 1, 1), fmt, plan.ocb)
    names, consts = layer_constants(args, q, s_w, packed, fmt.act_offset)

    x = te.placeholder((n, k), fmt.in_dtype, name="x")
    tens = const_placeholders(names, consts)
    res = residual_input((n, o), residual, residual_qparams)
    zp = act_qparams.zp if prec.quantizes_activations else 0
    acc = _acc_block(spec, fmt, plan, npad, x, tens["weight"], zp)
    y = te.compute(
        (n, o),
        lambda i, oc: output_value(
            epilogue_value(prec, acc[i, oc], oc, tens,
                           residual_value(res, (i, oc), residual_qparams), act, debug_acc,
                           fmt.acc_shift),
            tens, args.requant, args.out_dtype, args.cpu.caps.rounding_convert,
            args.cpu.caps.truncating_narrow),
        name="out",
    )  # fmt: skip
    func = layer_prim_func(x, tens, names, res, y)
    func, sched = schedule_layer(func, plan, "dense", args, fmt, schedule=schedule,
                                 database=database, tune_trials=tune_trials)  # fmt: skip
    info = kernel_info(args, fmt, plan.mode, sched, names, consts, residual,
                       round_up(k, fmt.group) != k)  # fmt: skip
    info["modelled_cycles"] = bounded_cycles(cost, k * o * prec.weight_bytes)
    return Kernel(func, consts, fmt.in_dtype, (n, o), args.out_dtype, info, plan)


def _acc_block(spec: DenseSpec, fmt: WeightFormat, plan: TilePlan, npad: int, x, wt, zp):
    """The reduction into the accumulator over padded rows and output channels."""
    n, k, o = spec.N, spec.K, spec.O
    g = fmt.group
    kp = round_up(k, g)

    def row(i):
        # Rows of the last partial tile re-read row N-1 (results discarded) instead of branching.
        return tvm.te.min(i, n - 1) if npad > n else i

    if kp != k:
        pad_value = tvm.tirx.const(zp, fmt.in_dtype)
        xp = te.compute(
            (npad, kp),
            lambda i, j: tvm.tirx.if_then_else(j < k, x[row(i), j], pad_value),
            name="pad",
        )

        def xval(i, j):
            return xp[i, j]
    else:

        def xval(i, j):
            return x[row(i), j]

    cg = te.reduce_axis((0, kp // g), "cg")
    ci = te.reduce_axis((0, g), "ci")
    ocb = plan.ocb
    return te.compute(
        (npad, round_up(o, ocb)),
        lambda i, oc: te.sum(
            fmt.activation(xval(i, cg * g + ci))
            * weight_value(fmt, wt, oc // ocb, 0, 0, cg, oc % ocb, ci),
            axis=[cg, ci],
        ),
        name="acc",
    )
