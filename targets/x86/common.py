"""Shared types and helpers of the x86 kernel library (specs, kernel record, targets, epilogue)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tvm
from tvm import te

from aiq_tvm.quant import SCHEMES, parse_act

# Attributes every kernel PrimFunc carries: already scheduled (so DLight / meta-schedule leave it
# alone) and opaque to FuseOps (op_pattern 8 == kOpaque). TVM 0.27 reads the "tirx." spellings;
# the legacy "tir." ones are kept for tools that still look for them.
KERNEL_ATTRS = {
    "tirx.noalias": True,
    "tirx.is_scheduled": True,
    "tir.noalias": True,
    "tir.is_scheduled": True,
    "op_pattern": 8,
}
VEC = 16  # fp32 / int32 lanes of one zmm register


class UnsupportedLayer(ValueError):
    """Raised for a layer the x86 kernel library cannot implement (caller keeps it in FP32)."""


def _pair(v, name: str) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    t = tuple(int(a) for a in v)
    if len(t) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v!r}")
    return t


def _quad(v) -> tuple[int, int, int, int]:
    """Normalize padding to (top, left, bottom, right)."""
    if isinstance(v, int):
        return (v, v, v, v)
    t = tuple(int(a) for a in v)
    if len(t) == 2:
        return (t[0], t[1], t[0], t[1])
    if len(t) != 4:
        raise ValueError(f"padding must be an int, a pair or (top, left, bottom, right), got {v!r}")
    return t


@dataclass(frozen=True)
class ConvSpec:
    """Static shape of an NHWC conv2d.

    Attributes
    ----------
    N, H, W, C : int
        Input batch, height, width, channels.
    O : int
        Output channels.
    KH, KW : int
        Kernel size.
    stride : tuple of int
        (sh, sw); an int is accepted and expanded.
    padding : tuple of int
        (top, left, bottom, right); an int or (ph, pw) pair is accepted and expanded.
    groups : int
        1 (regular conv) or C == O (depthwise). Other values are representable but rejected by
        :func:`conv2d_kernel` with :class:`UnsupportedLayer`.
    dilation : tuple of int
        (dh, dw); representable so a caller can describe any conv, but only 1 is supported.
    """

    N: int
    H: int
    W: int
    C: int
    O: int  # noqa: E741 - layer shape names are part of the public API
    KH: int
    KW: int
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    groups: int = 1
    dilation: tuple[int, int] = (1, 1)

    def __post_init__(self):
        object.__setattr__(self, "stride", _pair(self.stride, "stride"))
        object.__setattr__(self, "dilation", _pair(self.dilation, "dilation"))
        object.__setattr__(self, "padding", _quad(self.padding))
        for name in ("N", "H", "W", "C", "O", "KH", "KW", "groups"):
            v = getattr(self, name)
            if not isinstance(v, int | np.integer) or v < 1:
                raise ValueError(f"ConvSpec.{name} must be a positive int, got {v!r}")
            object.__setattr__(self, name, int(v))
        if min(self.stride) < 1 or min(self.dilation) < 1:
            raise ValueError(f"stride/dilation must be positive, got {self.stride}/{self.dilation}")
        if min(self.padding) < 0:
            raise ValueError(f"padding must be non-negative, got {self.padding}")
        if self.C % self.groups or self.O % self.groups:
            raise ValueError(f"groups={self.groups} must divide C={self.C} and O={self.O}")
        if self.OH < 1 or self.OW < 1:
            raise ValueError(f"empty output for {self}")

    @property
    def OH(self) -> int:  # noqa: N802 - shape names follow the NHWC convention
        ekh = (self.KH - 1) * self.dilation[0] + 1
        return (self.H + self.padding[0] + self.padding[2] - ekh) // self.stride[0] + 1

    @property
    def OW(self) -> int:  # noqa: N802
        ekw = (self.KW - 1) * self.dilation[1] + 1
        return (self.W + self.padding[1] + self.padding[3] - ekw) // self.stride[1] + 1

    @property
    def is_depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.C == self.O

    @property
    def is_pointwise(self) -> bool:
        return self.KH == self.KW == 1 and self.groups == 1 and not any(self.padding)

    @property
    def in_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.H, self.W, self.C)

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.OH, self.OW, self.O)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        """Expected OIHW weight shape."""
        return (self.O, self.C // self.groups, self.KH, self.KW)

    def macs(self) -> int:
        """Multiply-accumulates of the layer."""
        return self.N * self.OH * self.OW * self.O * (self.C // self.groups) * self.KH * self.KW


@dataclass(frozen=True)
class DenseSpec:
    """Static shape of a dense layer ``x [N, K] -> y [N, O]``."""

    N: int
    K: int
    O: int  # noqa: E741 - layer shape names are part of the public API

    def __post_init__(self):
        for name in ("N", "K", "O"):
            v = getattr(self, name)
            if not isinstance(v, int | np.integer) or v < 1:
                raise ValueError(f"DenseSpec.{name} must be a positive int, got {v!r}")
            object.__setattr__(self, name, int(v))

    def macs(self) -> int:
        """Multiply-accumulates of the layer."""
        return self.N * self.K * self.O


@dataclass
class Kernel:
    """A scheduled kernel plus the host-side constants it consumes.

    Attributes
    ----------
    prim_func : tvm.tirx.PrimFunc
        Scheduled PrimFunc with params ``(x, *consts, [residual], y)``.
    consts : list of np.ndarray
        Pre-packed constants in PrimFunc parameter order after ``x``.
    in_dtype : str
        dtype of ``x`` (``"float32"`` or ``"uint8"``).
    out_shape : tuple of int
        Shape of ``y``.
    out_dtype : str
        dtype of ``y``: ``"float32"``; ``"uint8"`` for kernels with a requantizing epilogue
        (``out_qparams``); ``"int32"`` for ``debug_acc`` kernels.
    info : dict
        Schedule facts, e.g. ``{"vnni": True, "schedule": "nhwc_direct_vnni_oc32_tile1x1x8",
        "schedule_source": "default"}``.
    plan : schedules.TilePlan or None
        The planner's default register-blocking plan (tuning searches around it).
    """

    prim_func: tvm.tirx.PrimFunc
    consts: list[np.ndarray]
    in_dtype: str
    out_shape: tuple
    out_dtype: str
    info: dict[str, Any] = field(default_factory=dict)
    plan: Any = None


def as_target(target) -> tvm.target.Target:
    """Accept a ``tvm.target.Target`` or its JSON-dict form."""
    if isinstance(target, tvm.target.Target):
        return target
    if isinstance(target, dict):
        return tvm.target.Target(target)
    raise TypeError(f"target must be a tvm.target.Target or a dict, got {type(target).__name__}")


def has_vnni(target) -> bool:
    """Whether ``target`` can use AVX512-VNNI ``vpdpbusd`` on 512-bit vectors."""
    from tvm.target import codegen

    t = as_target(target)
    if t.kind.name != "llvm":
        return False
    return bool(
        codegen.target_has_features("avx512vnni", t) and codegen.target_has_features("avx512bw", t)
    )


def check_scheme(scheme: str) -> None:
    """Raise ``ValueError`` for an unknown scheme name."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; expected one of {SCHEMES}")


def round_up(v: int, m: int) -> int:
    """Smallest multiple of ``m`` that is ``>= v``."""
    return -(-v // m) * m


def apply_act_te(v: te.Tensor, act) -> Any:
    """Apply an activation spec to a float32 TE expression."""
    kind, lo, hi = parse_act(act)
    if kind == "none":
        return v
    if np.isfinite(hi):
        v = tvm.te.min(v, tvm.tirx.const(hi, "float32"))
    if np.isfinite(lo):
        v = tvm.te.max(v, tvm.tirx.const(lo, "float32"))
    return v


def quantize_value(v, inv, zp):
    """uint8 activation quantizer ``clip(rint(v * inv) + zp, 0, 255)`` in float32.

    The single definition shared by :func:`~aiq_tvm.targets.x86.quantize_kernel` and the
    requantizing conv/dense epilogues, so the fused uint8 output is bit-exact with running the
    float kernel and then the quantize kernel: both apply exactly these float32 operations to
    the same float32 ``v`` (rounding half to even like ``np.rint``).

    Parameters
    ----------
    v : tvm.tirx.PrimExpr
        float32 value.
    inv, zp : tvm.tirx.PrimExpr
        float32 ``1 / scale`` and zero point (constants or buffer loads).
    """
    # tirx.round, not tirx.nearbyint: both lower to llvm.nearbyint (round half to even in the
    # default FP environment; the ties tests pin this), but only round is marked vectorizable,
    # so nearbyint makes TVM's VectorizeLoop scalarize the whole epilogue (up to 1.7x slower
    # kernels where LLVM does not re-vectorize it).
    q = tvm.tirx.round(v * inv) + zp
    lo = tvm.tirx.const(0.0, "float32")
    hi = tvm.tirx.const(255.0, "float32")
    return tvm.te.min(tvm.te.max(q, lo), hi).astype("uint8")


def out_qparams_const(qp) -> np.ndarray:
    """``[inv, zp]`` as float32: the ``out_q`` parameter of a requantizing kernel.

    A parameter rather than baked-in constants, so layers that differ only in their output
    range share one PrimFunc (and one tuning record).
    """
    return np.array([qp.inv, float(qp.zp)], dtype=np.float32)


def finalize(func: tvm.tirx.PrimFunc, *, scheduled: bool = True) -> tvm.tirx.PrimFunc:
    """Attach the kernel attributes (noalias, opaque op pattern, and scheduled if it is)."""
    for k, v in KERNEL_ATTRS.items():
        if scheduled or "is_scheduled" not in k:
            func = func.with_attr(k, v)
    return func


# ---------------------------------------------------------------------------------------------
# Weight formats: how each scheme stores weights and what the inner loop does with them.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightFormat:
    """Packed-weight format of a scheme on a target.

    Attributes
    ----------
    name : str
        ``"f32"`` float32; ``"i8"`` int8; ``"i4"`` int4 nibble pairs along the channel axis;
        ``"v8"`` int8 VNNI 16x4 blocks; ``"v4"`` int4 VNNI 16x8 blocks (accumulates
        ``16 * acc``); ``"v4s"`` int4 VNNI 16x4 blocks (for reductions too long for ``v4``).
    group : int
        Input channels per innermost reduction group (packed channel count is a multiple).
    acc_dtype : str
        Accumulator dtype (``"int32"`` for W8A8/W4A8, else ``"float32"``).
    in_dtype : str
        Activation dtype consumed by the kernel.
    unpack_ops : float
        Vector ops per weight vector and reduction step spent on unpacking (planner cost).
    intrin : str or None
        VNNI tensor intrinsic of the inner block.
    acc_shift : int
        The accumulator holds ``acc << acc_shift``; the epilogue shifts it back (exact).
    """

    name: str
    group: int
    acc_dtype: str
    in_dtype: str
    unpack_ops: float
    intrin: str | None = None
    acc_shift: int = 0

    @property
    def vnni(self) -> bool:
        return self.intrin is not None


def weight_formats(scheme: str, vnni: bool, reduction: int = 1) -> list[WeightFormat]:
    """Candidate weight formats of ``scheme`` (the planner picks the cheapest).

    int4 with VNNI offers the 16x8 ``v4`` blocks (fewer unpack ops per MAC) and the 16x4
    ``v4s`` blocks (less channel padding for small ``C``, and no reduction-length limit).
    """
    fmt = weight_format(scheme, vnni, reduction)
    if fmt.name == "v4":
        from .vnni import VNNI_U8I4

        return [fmt, WeightFormat("v4s", 4, "int32", "uint8", 4, VNNI_U8I4)]
    return [fmt]


def weight_format(scheme: str, vnni: bool, reduction: int = 1) -> WeightFormat:
    """Default weight format used for ``scheme``.

    Parameters
    ----------
    scheme : str
        Precision scheme.
    vnni : bool
        Use the VNNI blocks for int8/int4 (target has avx512vnni, layer is not depthwise).
    reduction : int
        Reduction length per output (``KH*KW*C``); very long int4 reductions use ``v4s``.
    """
    from .vnni import I4X16_MAX_REDUCTION, VNNI_U8I4, VNNI_U8I4X16, VNNI_U8I8

    check_scheme(scheme)
    if scheme == "fp32":
        return WeightFormat("f32", 1, "float32", "float32", 0)
    if scheme == "w8":
        return WeightFormat("i8", 1, "float32", "float32", 2)
    if scheme == "w4":
        return WeightFormat("i4", 2, "float32", "float32", 7)
    if scheme == "int8":
        if vnni:
            return WeightFormat("v8", 4, "int32", "uint8", 0, VNNI_U8I8)
        return WeightFormat("i8", 1, "int32", "uint8", 2)
    if not vnni:
        return WeightFormat("i4", 2, "int32", "uint8", 6)
    if reduction <= I4X16_MAX_REDUCTION:  # channel padding adds only zero terms
        return WeightFormat("v4", 8, "int32", "uint8", 3, VNNI_U8I4X16, acc_shift=4)
    return WeightFormat("v4s", 4, "int32", "uint8", 4, VNNI_U8I4)


def weight_value(fmt: WeightFormat, w: te.Tensor, ob, kh, kw, cg, ol, ci):
    """TE expression of one weight element in the accumulator dtype.

    ``w`` is the packed weight tensor; ``(ob, ol)`` the output-channel block and lane,
    ``(kh, kw)`` the kernel position, ``(cg, ci)`` the channel group and position in it.
    The VNNI expressions must match the intrinsic descriptions in ``vnni.py`` exactly.
    """
    acc = fmt.acc_dtype
    if fmt.name == "f32":
        return w[ob, kh, kw, cg * fmt.group + ci, ol]
    if fmt.name == "i8":
        return w[ob, kh, kw, cg * fmt.group + ci, ol].astype(acc)
    if fmt.name == "i4":
        byte = w[ob, kh, kw, cg, ol].astype("int32")
        return (((byte >> (ci * 4)) & 15) - 8).astype(acc)
    if fmt.name == "v8":
        return w[ob, kh, kw, cg, ol, ci].astype("int32")
    if fmt.name == "v4":
        # byte j of an output channel holds channels (j, j + 4); the value is scaled by 16.
        byte = w[ob, kh, kw, cg, ol, ci % 4].astype("int32")
        return (((byte >> (ci // 4 * 4)) & 15) - 8) * 16
    # v4s: byte j of an output channel holds channels (j, j + 2).
    byte = w[ob, kh, kw, cg, ol, ci % 2].astype("int32")
    return ((byte >> (ci // 2 * 4)) & 15) - 8


def pack_weight(q: np.ndarray, fmt: WeightFormat, ocb: int) -> np.ndarray:
    """Pack OIHW weights (float or integer codes) into ``fmt`` with ``ocb``-channel blocks.

    Output channels are zero-padded to a multiple of ``ocb`` and input channels to a multiple
    of ``fmt.group`` (int4 zero codes become nibble 8).

    Layouts: ``f32``/``i8`` ``[O/ocb, KH, KW, C, ocb]``; ``i4`` ``[O/ocb, KH, KW, C/2, ocb]``
    (low nibble = even channel); ``v8`` ``[O/ocb, KH, KW, C/4, ocb, 4]``; ``v4``
    ``[O/ocb, KH, KW, C/8, ocb, 4]`` (byte j = channels j | j + 4 << 4); ``v4s``
    ``[O/ocb, KH, KW, C/4, ocb, 2]`` (byte j = channels j | j + 2 << 4).
    """
    from aiq_tvm.quant import pack_int4

    o, c, kh, kw = q.shape
    op, cp = round_up(o, ocb), round_up(c, fmt.group)
    dtype = np.float32 if fmt.name == "f32" else np.int8
    full = np.zeros((op, cp, kh, kw), dtype)
    full[:o, :c] = q
    g = fmt.group
    # [Ob, ocb, Cg, g, KH, KW] -> [Ob, KH, KW, Cg, ocb, g]
    blk = full.reshape(op // ocb, ocb, cp // g, g, kh, kw).transpose(0, 4, 5, 2, 1, 3)
    if fmt.name in ("f32", "i8"):
        return np.ascontiguousarray(blk.reshape(op // ocb, kh, kw, cp, ocb) if g == 1 else blk)
    if fmt.name == "i4":
        return np.ascontiguousarray(pack_int4(blk)[..., 0])
    if fmt.name == "v8":
        return np.ascontiguousarray(blk)
    # Reorder each group so consecutive (even, odd) reduction positions share a byte.
    order = [0, 4, 1, 5, 2, 6, 3, 7] if fmt.name == "v4" else [0, 2, 1, 3]
    return np.ascontiguousarray(pack_int4(blk[..., order]))


def pack_weight_depthwise(q: np.ndarray, fmt: WeightFormat, cp: int) -> np.ndarray:
    """Pack depthwise ``[C, 1, KH, KW]`` weights, channels zero-padded to ``cp``.

    Layouts: ``f32``/``i8`` ``[KH, KW, Cp]``; ``i4`` ``[ceil(KH*KW/2), Cp]`` with the nibble
    pairs along the flattened (kh, kw) reduction order (low nibble = even position).
    """
    from aiq_tvm.quant import pack_int4

    c, _, kh, kw = q.shape
    dtype = np.float32 if fmt.name == "f32" else np.int8
    full = np.zeros((cp, kh * kw), dtype)
    full[:c] = q.reshape(c, kh * kw)
    if fmt.name in ("f32", "i8"):
        return np.ascontiguousarray(full.T.reshape(kh, kw, cp))
    return np.ascontiguousarray(pack_int4(full).T)


def epilogue_value(
    scheme: str, acc_val, o, consts: dict, res_val, act, debug_acc: bool, acc_shift: int = 0
):
    """Fused epilogue expression of output channel ``o`` (see ``aiq_tvm.quant``)."""
    if scheme in ("int8", "int4"):
        if acc_shift:
            acc_val = acc_val >> acc_shift  # exact: the accumulator is a multiple of 2**shift
        v = acc_val - consts["corr"][o]
        if debug_acc:
            return v
        v = v.astype("float32") * consts["comb"][o] + consts["bias"][o]
    elif scheme in ("w8", "w4"):
        v = acc_val * consts["scale"][o] + consts["bias"][o]
    else:
        v = acc_val + consts["bias"][o]
    if res_val is not None:
        v = v + res_val
    return apply_act_te(v, act)


def const_names(scheme: str, requant: bool = False) -> list[str]:
    """Names of the constant params after ``x`` (the packed weight first; ``out_q`` last)."""
    if scheme in ("int8", "int4"):
        names = ["weight", "corr", "comb", "bias"]
    elif scheme in ("w8", "w4"):
        names = ["weight", "scale", "bias"]
    else:
        names = ["weight", "bias"]
    return names + (["out_q"] if requant else [])


def output_value(v, consts: dict, requant: bool, out_dtype: str):
    """Final store value: the epilogue result ``v``, requantized to uint8 when ``requant``."""
    if requant:
        return quantize_value(v, consts["out_q"][0], consts["out_q"][1])
    return v.astype(out_dtype)


@dataclass(frozen=True)
class CpuModel:
    """What the tile planner needs to know about the target CPU.

    Attributes
    ----------
    threads : int
        Threads the work is balanced over (target ``num-cores``, default 2).
    max_acc : int
        Accumulator vectors (16 lanes) a register block may use: 24 of the 32 zmm registers with
        AVX-512; 6 (= 12 of 16 ymm registers) without.
    """

    threads: int
    max_acc: int


def cpu_model(target: tvm.target.Target) -> CpuModel:
    """Planner view of ``target``."""
    from tvm.target import codegen

    n = target.attrs.get("num-cores")
    avx512 = bool(codegen.target_has_features("avx512f", target))
    return CpuModel(threads=int(n) if n else 2, max_acc=24 if avx512 else 6)
