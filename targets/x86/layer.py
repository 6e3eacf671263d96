"""Arguments, host-side constants, parameters and scheduling shared by the conv2d and dense
kernel builders."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import te, tirx

from aiq_tvm.quant import ActQParams, int_comb_scale, int_zp_correction, parse_act
from aiq_tvm.schemes import PrecisionScheme, get_precision

from .common import WeightFormat, finalize, out_qparams_const
from .isa import CpuModel, cpu_model, numerics_qmax
from .prefetch import prefetch_next_weight_block
from .schedules import TilePlan
from .tune import schedule_kernel


@dataclass(frozen=True)
class LayerArgs:
    """Validated arguments of one layer kernel.

    Attributes
    ----------
    scheme : PrecisionScheme
        The layer's precision.
    weight : np.ndarray
        float32 weight in torch layout (OIHW or [O, K]).
    bias : np.ndarray
        float32 ``[O]``.
    act, act_qparams, out_qparams, debug_acc
        As given to the builder (validated).
    cpu : CpuModel
        The code target's kernel facts.
    int8_qmax : int
        Largest 8-bit weight code of this layer on the numerics target
        (``caps.layer_int8_weight_qmax``).
    qmax : int or None
        Largest weight code of this layer (``None`` for float weights).
    """

    scheme: PrecisionScheme
    weight: np.ndarray
    bias: np.ndarray
    act: object
    act_qparams: ActQParams | None
    out_qparams: ActQParams | None
    debug_acc: bool
    cpu: CpuModel
    int8_qmax: int
    qmax: int | None

    @property
    def requant(self) -> bool:
        return self.out_qparams is not None

    @property
    def out_dtype(self) -> str:
        return "int32" if self.debug_acc else ("uint8" if self.requant else "float32")


def layer_args(
    scheme, weight, weight_shape: tuple, bias, *, act, act_qparams, out_qparams, debug_acc,
    target, numerics_target, depthwise: bool = False,
) -> LayerArgs:  # fmt: skip
    """Validate a builder's arguments (``ValueError`` naming what is wrong); ``depthwise``
    layers keep full 8-bit weight codes on every numerics target (:func:`numerics_qmax`)."""
    prec = get_precision(scheme)
    parse_act(act)
    weight = np.asarray(weight, dtype=np.float32)
    if weight.shape != tuple(weight_shape):
        raise ValueError(f"weight shape {weight.shape} != expected {tuple(weight_shape)}")
    o = weight.shape[0]
    bias = np.zeros(o, np.float32) if bias is None else np.asarray(bias, np.float32)
    if bias.shape != (o,):
        raise ValueError(f"bias shape {bias.shape} != ({o},)")
    is_int = prec.quantizes_activations
    if is_int and act_qparams is None:
        raise ValueError(f"scheme {prec.name!r} needs act_qparams")
    if debug_acc and not is_int:
        raise ValueError("debug_acc is only defined for schemes with integer accumulators")
    if debug_acc and out_qparams is not None:
        raise ValueError("debug_acc and out_qparams are exclusive")
    cpu = cpu_model(target).for_scheme(prec)
    numerics = target if numerics_target is None else numerics_target
    int8_qmax = numerics_qmax(numerics, depthwise)
    return LayerArgs(prec, weight, bias, act, act_qparams, out_qparams, debug_acc, cpu,
                     int8_qmax, prec.weight_qmax(int8_qmax))  # fmt: skip


def layer_constants(
    args: LayerArgs, codes: np.ndarray, scale: np.ndarray | None, packed: np.ndarray,
    act_offset: int = 0,
) -> tuple[list[str], list[np.ndarray]]:
    """Kernel constants in parameter order (names from the scheme) from the weight codes
    (torch layout), their per-channel scale, the packed weight and the weight format's
    activation offset (folded into the zero-point correction)."""
    values = {"weight": packed, "bias": args.bias}
    if args.scheme.epilogue == "int":
        values["corr"] = int_zp_correction(args.act_qparams, codes, act_offset)
        values["comb"] = int_comb_scale(args.act_qparams, scale)
    elif args.scheme.epilogue == "scale":
        values["scale"] = scale.astype(np.float32)
    if args.requant:
        values["out_q"] = out_qparams_const(args.out_qparams)
    names = args.scheme.const_names(args.requant)
    return names, [np.ascontiguousarray(values[nm]) for nm in names]


def const_placeholders(names: list[str], consts: list[np.ndarray]) -> dict[str, te.Tensor]:
    """A TE placeholder per kernel constant, by name (shape and dtype of its value)."""
    pairs = zip(names, consts, strict=True)
    return {nm: te.placeholder(v.shape, str(v.dtype), name=nm) for nm, v in pairs}


def layer_prim_func(x: te.Tensor, consts: dict[str, te.Tensor], names: list[str],
                    residual: te.Tensor | None, y: te.Tensor) -> tirx.PrimFunc:  # fmt: skip
    """The unscheduled PrimFunc in kernel parameter order ``(x, *constants, [residual], y)``."""
    params = [x, *[consts[nm] for nm in names]] + ([residual] if residual is not None else [])
    return finalize(te.create_prim_func([*params, y]), scheduled=False)


def schedule_layer(func: tirx.PrimFunc, plan: TilePlan, kind: str, args: LayerArgs,
                   fmt: WeightFormat, *, schedule: bool, database,
                   tune_trials: int) -> tuple[tirx.PrimFunc, dict]:  # fmt: skip
    """``func`` scheduled (database, tuning or default plan, see ``tune.schedule_kernel``), the
    next weight block prefetched where that pays (``prefetch.py``), and its schedule info; with
    ``schedule=False`` unchanged, marked unscheduled."""
    if not schedule:
        return func, {"schedule": "unscheduled", "schedule_source": "unscheduled"}
    func, info = schedule_kernel(
        func, plan, kind, target=args.cpu.target,
        acc_budget=args.cpu.acc_budget(plan.mode, fmt.weight_regs), database=database,
        tune_trials=tune_trials,
    )  # fmt: skip
    func, lines = prefetch_next_weight_block(func, args.cpu.caps.l2_bytes, args.cpu.threads)
    return func, {**info, "weight_prefetch": lines}


def kernel_info(args: LayerArgs, fmt: WeightFormat, mode: str, sched: dict,
                names: list[str], consts: list[np.ndarray], residual: bool,
                padded: bool) -> dict:  # fmt: skip
    """``Kernel.info``: ISA, intrinsic, format, register budget (what tuning may use),
    schedule, parameters and constant bytes."""
    return {
        "isa": args.cpu.caps.isa,
        "int8_dot": args.cpu.dot.name,
        "intrin": fmt.intrin,
        "acc_budget": args.cpu.acc_budget(mode, fmt.weight_regs),
        **sched,
        "weight_format": fmt.name,
        "weight_qmax": args.qmax,
        "scheme": args.scheme.name,
        "padded_copy": padded,
        "params": ["x", *names] + (["residual"] if residual else []) + ["y"],
        "const_bytes": int(sum(v.nbytes for v in consts)),
    }
