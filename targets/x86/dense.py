"""Dense (fully connected) kernels ``x [N, K] -> y [N, O]`` for every precision scheme."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import te

from aiq_tvm.quant import (
    ActQParams,
    int_comb_scale,
    int_zp_correction,
    parse_act,
    quantize_weight_int4,
    quantize_weight_int8,
)

from .common import (
    VEC,
    CpuModel,
    DenseSpec,
    Kernel,
    WeightFormat,
    as_target,
    check_scheme,
    const_names,
    cpu_model,
    epilogue_value,
    finalize,
    has_vnni,
    out_qparams_const,
    output_value,
    pack_weight,
    round_up,
    weight_formats,
    weight_value,
)
from .schedules import (
    EPI_CYCLES,
    HEAP_ACC_CYCLES,
    STACK_ACC_BYTES,
    TASKS_PER_THREAD,
    TilePlan,
    balance,
    par_prefix_tasks,
    step_cycles,
)
from .tune import schedule_kernel


def dense_candidates(spec: DenseSpec, fmt: WeightFormat, cpu: CpuModel):
    """All (cost, plan, padded rows) candidates of a dense layer (lower cost is better)."""
    threads = cpu.threads
    n, k, o = spec.N, spec.K, spec.O
    kp = round_up(k, fmt.group)
    mode = "vnni" if fmt.vnni else "bcast"
    intrin = fmt.intrin
    inner = "ci" if fmt.group > 1 else None
    out = []
    for tn in range(1, min(n, cpu.max_acc) + 1):
        npad = round_up(n, tn)
        for ocv in (1, 2, 3, 4):
            if tn * ocv > cpu.max_acc:
                continue
            ocb = VEC * ocv
            op = round_up(o, ocb)
            blocks = (npad // tn) * (op // ocb)
            step = step_cycles(tn, ocv, fmt.unpack_ops, fmt.group, mode)
            work = blocks * (kp // fmt.group) * step
            work += n * (op // VEC) * EPI_CYCLES
            if tn * ocb * 4 >= STACK_ACC_BYTES:
                work += blocks * tn * ocv * HEAP_ACC_CYCLES
            # Weight slab outermost when weights dominate the traffic (typical for FC).
            order = ("o", "s0") if op * kp > n * k else ("s0", "o")
            ext = {"o": op // ocb, "s0": npad // tn}
            min_tasks = TASKS_PER_THREAD * threads
            tasks = par_prefix_tasks([ext[k] for k in order if ext[k] > 1], min_tasks)
            cost = work / threads / balance(tasks, threads)
            tile = TilePlan((tn,), ocb, mode, order, order, intrin, ("cg", "ci"), inner, min_tasks)
            out.append((cost, tile, npad))
    return out


def _plan_dense(
    spec: DenseSpec, fmts: list[WeightFormat], cpu: CpuModel
) -> tuple[WeightFormat, TilePlan, int]:
    """Cheapest (format, plan, padded rows); ties go to the smaller register block."""
    cands = [
        (cost, i, fmt, tile, npad)
        for i, fmt in enumerate(fmts)
        for cost, tile, npad in dense_candidates(spec, fmt, cpu)
    ]
    _, _, fmt, tile, npad = min(
        cands, key=lambda t: (round(t[0], 1), t[1], t[3].ocb * t[3].tiles[0])
    )
    return fmt, tile, npad


def dense_kernel(
    spec: DenseSpec,
    scheme: str,
    weight_ok: np.ndarray,
    bias: np.ndarray | None,
    *,
    act="none",
    act_qparams: ActQParams | None = None,
    out_qparams: ActQParams | None = None,
    residual: bool = False,
    target,
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
    scheme : str
        ``"fp32"``, ``"int8"``, ``"int4"``, ``"w8"`` or ``"w4"``.
    weight_ok : np.ndarray
        Float weight ``[O, K]`` (torch Linear layout).
    bias : np.ndarray or None
        ``[O]`` bias; ``None`` means zeros.
    act, act_qparams, out_qparams, residual, target, schedule, debug_acc, database, tune_trials
        As in :func:`aiq_tvm.targets.x86.conv2d_kernel`.

    Returns
    -------
    Kernel
        PrimFunc params are ``(x, weight, [corr, comb | scale], bias, [out_q], [residual], y)``.
    """
    check_scheme(scheme)
    parse_act(act)
    n, k, o = spec.N, spec.K, spec.O
    weight_ok = np.asarray(weight_ok, dtype=np.float32)
    if weight_ok.shape != (o, k):
        raise ValueError(f"weight shape {weight_ok.shape} != expected {(o, k)}")
    bias = np.zeros(o, np.float32) if bias is None else np.asarray(bias, np.float32)
    if bias.shape != (o,):
        raise ValueError(f"bias shape {bias.shape} != ({o},)")
    is_int = scheme in ("int8", "int4")
    if is_int and act_qparams is None:
        raise ValueError(f"scheme {scheme!r} needs act_qparams")
    if debug_acc and not is_int:
        raise ValueError("debug_acc is only defined for int8/int4")
    requant = out_qparams is not None
    if debug_acc and requant:
        raise ValueError("debug_acc and out_qparams are exclusive")
    tgt = as_target(target)
    cpu = cpu_model(tgt)
    fmt, plan, npad = _plan_dense(spec, weight_formats(scheme, has_vnni(tgt), k), cpu)
    ocb = plan.ocb
    g = fmt.group
    kp = round_up(k, g)

    if scheme == "fp32":
        q, s_w = weight_ok, None
    elif scheme in ("int8", "w8"):
        q, s_w = quantize_weight_int8(weight_ok)
    else:
        q, s_w = quantize_weight_int4(weight_ok)
    values = {"weight": pack_weight(q.reshape(o, k, 1, 1), fmt, ocb), "bias": bias}
    if is_int:
        values["corr"] = int_zp_correction(act_qparams, q)
        values["comb"] = int_comb_scale(act_qparams, s_w)
    elif s_w is not None:
        values["scale"] = s_w.astype(np.float32)
    if requant:
        values["out_q"] = out_qparams_const(out_qparams)
    names = const_names(scheme, requant)
    consts = [np.ascontiguousarray(values[nm]) for nm in names]

    x = te.placeholder((n, k), fmt.in_dtype, name="x")
    pairs = zip(names, consts, strict=True)
    tens = {nm: te.placeholder(v.shape, str(v.dtype), name=nm) for nm, v in pairs}
    res = te.placeholder((n, o), "float32", name="residual") if residual else None

    def row(i):
        # Rows of the last partial tile re-read row N-1 (results discarded) instead of branching.
        return tvm.te.min(i, n - 1) if npad > n else i

    if kp != k:
        pad_value = tvm.tirx.const(act_qparams.zp if is_int else 0, fmt.in_dtype)
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
    accd = fmt.acc_dtype
    acc = te.compute(
        (npad, round_up(o, ocb)),
        lambda i, oc: te.sum(
            xval(i, cg * g + ci).astype(accd)
            * weight_value(fmt, tens["weight"], oc // ocb, 0, 0, cg, oc % ocb, ci),
            axis=[cg, ci],
        ),
        name="acc",
    )
    out_dtype = "int32" if debug_acc else ("uint8" if requant else "float32")
    y = te.compute(
        (n, o),
        lambda i, oc: output_value(
            epilogue_value(
                scheme,
                acc[i, oc],
                oc,
                tens,
                None if res is None else res[i, oc],
                act,
                debug_acc,
                fmt.acc_shift,
            ),
            tens,
            requant,
            out_dtype,
        ),
        name="out",
    )
    params = [x, *[tens[nm] for nm in names]] + ([res] if res is not None else []) + [y]
    func = finalize(te.create_prim_func(params), scheduled=False)
    if schedule:
        func, sched = schedule_kernel(
            func,
            plan,
            "dense",
            target=tgt,
            max_acc=cpu.max_acc,
            database=database,
            tune_trials=tune_trials,
        )
    else:
        sched = {"schedule": "unscheduled", "schedule_source": "unscheduled"}
    info = {
        "vnni": fmt.vnni,
        **sched,
        "weight_format": fmt.name,
        "scheme": scheme,
        "padded_copy": kp != k,
        "params": ["x", *names] + (["residual"] if residual else []) + ["y"],
        "const_bytes": int(sum(v.nbytes for v in consts)),
    }
    return Kernel(func, consts, fmt.in_dtype, (n, o), out_dtype, info, plan)
