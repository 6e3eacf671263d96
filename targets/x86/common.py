"""Shared types and helpers of the x86 kernel library (specs, kernel record, targets, epilogue)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tvm
from tvm import te

from aiq_tvm.quant import parse_act
from aiq_tvm.schemes import PrecisionScheme
from aiq_tvm.targets.fastmath import fast_silu

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
        1 (regular conv), C == O (depthwise) or a grouped conv; :func:`conv2d_kernel` rejects
        grouped shapes it has no kernel for with :class:`UnsupportedLayer` (see
        ``conv2d.grouped_reason``).
    dilation : tuple of int
        (dh, dw): kernel tap ``(kh, kw)`` reads input ``(i * sh + kh * dh, j * sw + kw * dw)``
        of the padded input (DeepLab / LR-ASPP backbones).
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
    def window(self) -> tuple[int, int]:
        """Input rows and columns one output's window spans: ``(K - 1) * dilation + 1``."""
        return ((self.KH - 1) * self.dilation[0] + 1, (self.KW - 1) * self.dilation[1] + 1)

    @property
    def OH(self) -> int:  # noqa: N802 - shape names follow the NHWC convention
        return (self.H + self.padding[0] + self.padding[2] - self.window[0]) // self.stride[0] + 1

    @property
    def OW(self) -> int:  # noqa: N802
        return (self.W + self.padding[1] + self.padding[3] - self.window[1]) // self.stride[1] + 1

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
        Schedule facts, e.g. ``{"isa": "avx2", "intrin": "aiq_pmaddubsw256_u8i8",
        "weight_format": "m8", "schedule": "nhwc_direct_dot_oc16_tile1x1x8",
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


def round_up(v: int, m: int) -> int:
    """Smallest multiple of ``m`` that is ``>= v``."""
    return -(-v // m) * m


def hardswish_te(v) -> Any:
    """``v * clip(v + 3, 0, 6) / 6`` (MobileNetV3), the division as a multiply by 1/6 (within
    an ulp of torch's; ``aiq_tvm.quant.apply_act`` computes the same)."""
    gate = tvm.te.min(tvm.te.max(v + tvm.tirx.const(3.0, "float32"),
                                 tvm.tirx.const(0.0, "float32")), tvm.tirx.const(6.0, "float32"))
    return v * (gate * tvm.tirx.const(1.0 / 6.0, "float32"))


# Activations that are not a clip of the value: applied in float32 before any requantizing.
_UNBOUNDED_ACTS = {"silu": fast_silu, "hardswish": hardswish_te}


def apply_act_te(v: te.Tensor, act) -> Any:
    """Apply an activation spec to a float32 TE expression."""
    kind, lo, hi = parse_act(act)
    if kind == "none":
        return v
    if kind in _UNBOUNDED_ACTS:
        return _UNBOUNDED_ACTS[kind](v)
    if np.isfinite(hi):
        v = tvm.te.min(v, tvm.tirx.const(hi, "float32"))
    if np.isfinite(lo):
        v = tvm.te.max(v, tvm.tirx.const(lo, "float32"))
    return v


def nhwc_pad_body(x: te.Tensor, spec: ConvSpec, hq: int, wq: int, cp: int, pad_value):
    """The element ``(b, i, j, k)`` of ``x`` padded to ``[N, hq, wq, cp]`` by ``spec``'s top
    and left padding: ``pad_value`` outside the image and in the padded channels. Only the
    bounds a side has are tested, so a copy without channel padding vectorizes."""
    n, h, w, c = spec.in_shape
    pt, pl, _, _ = spec.padding

    def body(b, i, j, k):
        conds = []
        if pt:
            conds.append(i >= pt)
        if hq > pt + h:
            conds.append(i < pt + h)
        if pl:
            conds.append(j >= pl)
        if wq > pl + w:
            conds.append(j < pl + w)
        if cp > c:
            conds.append(k < c)
        val = x[b, i - pt, j - pl, k]
        if not conds:
            return val
        return tvm.tirx.if_then_else(tvm.tirx.all(*conds), val, pad_value)

    return body


def quantize_value(v, inv, zp, rounding_convert: bool = False,
                   truncating_narrow: bool = False):
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
    rounding_convert : bool
        The target converts float32 to int32 rounding half to even in one vector op
        (``TargetCaps.rounding_convert``): see :func:`quantize_clipped`.
    truncating_narrow : bool
        The target narrows int32 vectors to bytes in one instruction
        (``TargetCaps.truncating_narrow``): see :func:`_rounding_convert_codes`.
    """
    return quantize_clipped(v, inv, zp, "none", rounding_convert, truncating_narrow)


def quantize_clipped(v, inv, zp, act, rounding_convert: bool = False,
                     truncating_narrow: bool = False):
    """``quantize_value(apply_act_te(v, act), inv, zp)`` with the activation's clip moved onto
    the output codes: bit-identical, one float op fewer per element.

    ``v * inv``, ``rint`` and ``+ zp`` are monotone for ``inv > 0``, so clipping ``v`` to
    ``[lo, hi]`` and then the codes to ``[0, 255]`` equals clipping the codes of ``v`` to
    ``[c(lo), c(hi)]`` with ``c(t) = clip(rint(t * inv) + zp, 0, 255)``; the bounds are
    loop-invariant (computed once per kernel call by LLVM's hoisting). With
    ``rounding_convert`` the rounding, the zero point and the narrowing run in integer form
    (:func:`_rounding_convert_codes`), bit-identical again.
    """
    kind, lo, hi = parse_act(act)
    if kind in _UNBOUNDED_ACTS:  # not a clip: applied to the value, codes clip to [0, 255]
        v = _UNBOUNDED_ACTS[kind](v)
    lo_c, hi_c = _code_bound(lo, inv, zp, 0.0), _code_bound(hi, inv, zp, 255.0)
    if rounding_convert:
        return _rounding_convert_codes(v * inv, zp, lo_c, hi_c, truncating_narrow)
    # tirx.round, not tirx.nearbyint: both lower to llvm.nearbyint (round half to even in the
    # default FP environment; the ties tests pin this), but only round is marked vectorizable,
    # so nearbyint makes TVM's VectorizeLoop scalarize the whole epilogue (up to 1.7x slower
    # kernels where LLVM does not re-vectorize it).
    q = tvm.tirx.round(v * inv) + zp
    return tvm.te.min(tvm.te.max(q, lo_c), hi_c).astype("uint8")


def _rounding_convert_codes(x, zp, lo_c, hi_c, truncating_narrow: bool = False):
    """``uint8(clip(rint(x) + zp, lo_c, hi_c))`` as ``lrint(clip(x, lo_c - zp, hi_c - zp)) +
    int(zp)``: bit-identical, and shorter (a rounding float -> int32 conversion, x86
    ``cvtps2dq``, replaces round, float add and truncating conversion; the narrowing becomes
    two saturating packs).

    ``lo_c - zp`` and ``hi_c - zp`` are integers (codes and zero point are), and ``rint`` is
    monotone and leaves integers unchanged, so clipping ``x`` to them before rounding equals
    clipping the rounded value; the clipped ``x`` is small, so the conversion never overflows
    (``+-inf`` and huge values give the bound codes, as before). ``llvm.lrint`` rounds in the
    default FP environment (half to even), as ``llvm.nearbyint`` does. The codes are then
    within ``[lo_c, hi_c]``, inside [0, 255] (a NaN ``x`` too: the clip returns a bound). A
    final clip to [0, 255] changes no value; it lets LLVM narrow int32 -> uint8 with saturating
    packs instead of masking and shuffling (SSE / AVX2). With ``truncating_narrow`` (AVX-512:
    ``vpmovdb``, one instruction) the codes are narrowed as they are, without that clip: one
    vector op fewer per 16 outputs. Kernels alone, one thread, int8 with relu6 and a uint8
    output, without / with the clip (docs/runs/s50/console_records.txt): skylake-avx512
    0.997-1.042x, this host (AVX-512 VNNI) 1.016-1.062x, the depthwise kernels gaining most; on
    haswell dropping it cost 0.91-1.00x, so AVX2 keeps it.
    """
    t = tvm.te.min(tvm.te.max(x, lo_c - zp), hi_c - zp)
    q = tvm.tirx.call_llvm_pure_intrin("int32", "llvm.lrint", t) + zp.astype("int32")
    if truncating_narrow:
        return q.astype("uint8")
    return tvm.te.min(tvm.te.max(q, 0), 255).astype("uint8")


def _code_bound(t: float, inv, zp, default: float):
    """``clip(rint(t * inv) + zp, 0, 255)``, or ``default`` for an infinite bound."""
    if not np.isfinite(t):
        return tvm.tirx.const(default, "float32")
    code = tvm.tirx.round(tvm.tirx.const(t, "float32") * inv) + zp
    return tvm.te.min(tvm.te.max(code, tvm.tirx.const(0.0, "float32")),
                      tvm.tirx.const(255.0, "float32"))


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
# Weight formats: how a scheme stores weights and what the inner loop does with them. The
# candidates of a scheme on a target come from that target's tables (``isa.py``).
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightFormat:
    """Packed-weight format of a scheme on a target.

    Attributes
    ----------
    name : str
        Tag in kernel records: ``"f32"``, ``"i8"``, ``"i4"`` (one channel, or one nibble pair,
        per step); ``"v8"``, ``"v4"``, ``"v4s"`` (``vpdpbusd`` blocks); ``"m8"``, ``"m4w"``,
        ``"m4"``, ``"m4s"`` (``vpmaddubsw`` blocks); ``"w8"``, ``"w4p"`` (SSE2 ``pmaddwd``
        blocks); a trailing ``"d"``: decoded once (:attr:`packed`).
    layout : str
        How the weights are packed (:func:`pack_weight`): ``"f32"`` float32; ``"i8"`` int8;
        ``"i4"`` int4 nibble pairs along the channel axis; ``"v8"`` int8 blocks of ``lanes``
        output channels x ``group`` (4; Arm ``usmmla``: 8) input channels; ``"v4"`` int4 blocks
        of ``group`` (8; ``usmmla``: 16) input channels (byte j = channels j | j + group/2);
        ``"v4w"`` two ``v4`` blocks per 16 input channels;
        ``"v4s"`` int4 blocks of 4 (byte j = channels j | j + 2); ``"v4p"`` the same with byte
        j = channels 2j | 2j + 1 (SSE2 ``pmaddwd``: one byte per int16 word pair).
    group : int
        Input channels per innermost reduction group (packed channel count is a multiple).
    acc_dtype : str
        Accumulator dtype (``"int32"`` for W8A8/W4A8, else ``"float32"``).
    in_dtype : str
        Activation dtype consumed by the kernel.
    unpack_ops : float
        Vector ops per weight vector and reduction step spent on unpacking (planner cost).
    intrin : str or None
        Tensor intrinsic of the inner block (``None``: broadcast-multiply, unrolled).
    acc_shift : int
        The accumulator holds ``acc << acc_shift``; the epilogue shifts it back (exact).
    dot_ops : float
        Multiply-class vector ops per accumulator vector and reduction step (planner cost).
    acc_latency : float
        Cycles of dependent accumulator updates per reduction step (planner cost).
    bcast_ops : float
        Vector-pipe broadcasts per output position and step (tensorized blocks broadcast
        4 activation bytes into a register).
    weight_regs : int
        Registers per channel vector holding (unpacked) weights across a block's positions.
    weight_loads : int
        Weight vector loads per channel vector and reduction step (planner cost: a block of
        several 4-channel dots, Arm's 16-channel ``sdot`` blocks, loads one per dot).
    act_offset : int
        The inner block multiplies ``a - act_offset`` instead of the uint8 activation ``a``
        (Arm ``sdot``/``smull`` take signed bytes: 128). The kernel's TE definition reduces the
        same expression and the zero-point correction absorbs it
        (``corr = (zp - act_offset) * sum(w)``), so ``acc - corr`` is unchanged.
    pairs : bool
        The intrinsic computes a 2 x 2 tile: two output positions (consecutive along the
        innermost spatial tile, which must be even) x two output channels (Arm ``usmmla``).
        The accumulator is laid out in these tiles (``[.., pos // 2, ch // 2, pos % 2,
        ch % 2]``) so that each tile is one vector register.
    packed : WeightFormat or None
        Decode-once formats (int4 stored, int8 multiplied): the weights are stored in memory
        in ``packed``'s int4 layout and the kernel decodes them once per call into an int8
        scratch tensor in ``layout`` (``"v8"`` or ``"v8b"``), which the inner block then
        reads like int8 weights, with no unpacking per register block.
    """

    name: str
    layout: str
    group: int
    acc_dtype: str
    in_dtype: str
    unpack_ops: float
    intrin: str | None = None
    acc_shift: int = 0
    dot_ops: float = 1.0
    acc_latency: float = 4.0
    bcast_ops: float = 0.0
    weight_regs: int = 1
    weight_loads: int = 1
    act_offset: int = 0
    pairs: bool = False
    packed: WeightFormat | None = None

    @property
    def pad_group(self) -> int:
        """Input channels are padded to a multiple of this (the stored layout's group too)."""
        return max(self.group, self.packed.group) if self.packed is not None else self.group

    def activation(self, x_val):
        """An activation element as the inner block multiplies it (accumulator dtype)."""
        v = x_val.astype(self.acc_dtype)
        return v - self.act_offset if self.act_offset else v

    @property
    def tensorized(self) -> bool:
        """The inner block is a tensor intrinsic (an int8 dot-product instruction)."""
        return self.intrin is not None


def weight_value(fmt: WeightFormat, w: te.Tensor, ob, kh, kw, cg, ol, ci):
    """TE expression of one weight element in the accumulator dtype.

    ``w`` is the packed weight tensor; ``(ob, ol)`` the output-channel block and lane,
    ``(kh, kw)`` the kernel position, ``(cg, ci)`` the channel group and position in it.
    Tensorized layouts must match the intrinsic descriptions (``vnni.py``, ``pmadd.py``)
    exactly.
    """
    acc = fmt.acc_dtype
    if fmt.layout == "f32":
        return w[ob, kh, kw, cg * fmt.group + ci, ol]
    if fmt.layout == "i8":
        return w[ob, kh, kw, cg * fmt.group + ci, ol].astype(acc)
    if fmt.layout == "i4":
        byte = w[ob, kh, kw, cg, ol].astype("int32")
        return (((byte >> (ci * 4)) & 15) - 8).astype(acc)
    if fmt.layout == "v8":
        return w[ob, kh, kw, cg, ol, ci].astype("int32")
    if fmt.layout == "v8b":
        # Decoded int4 (decode-once): int8 v8 blocks of 4 channels, group / 4 per group.
        return w[ob, kh, kw, cg, ci // 4, ol, ci % 4].astype("int32")
    byte, shift = int4_byte(fmt, w, ob, kh, kw, cg, ol, ci)
    value = ((byte.astype("int32") >> shift) & 15) - 8
    return value * (1 << fmt.acc_shift) if fmt.acc_shift else value


def int4_byte(fmt: WeightFormat, w: te.Tensor, ob, kh, kw, cg, ol, ci):
    """(uint8 byte, nibble shift 0 or 4) holding channel ``cg * group + ci`` of output
    channel ``ol`` of block ``ob`` in the packed int4 layouts ``v4``, ``v4w``, ``v4s`` and
    ``v4p``."""
    if fmt.layout == "v4":
        # byte j of an output channel holds channels (j, j + g/2).
        half = fmt.group // 2
        return w[ob, kh, kw, cg, ol, ci % half], ci // half * 4
    if fmt.layout == "v4w":
        # A v4 block per 8 of the 16 channels, the second one a channel block further.
        return w[ob, kh, kw, cg, ci // 8, ol, ci % 4], ci % 8 // 4 * 4
    if fmt.layout == "v4s":
        # byte j of an output channel holds channels (j, j + 2).
        return w[ob, kh, kw, cg, ol, ci % 2], ci // 2 * 4
    if fmt.layout == "v4p":
        # byte j of an output channel holds channels (2j, 2j + 1).
        return w[ob, kh, kw, cg, ol, ci // 2], ci % 2 * 4
    raise ValueError(f"{fmt.layout!r} is not a packed int4 layout")


def decoded_shape(fmt: WeightFormat, packed_shape: tuple, cp: int) -> tuple:
    """Shape of the int8 scratch a decode-once format (``fmt.packed`` set) decodes into:
    ``v8`` ``[O/ocb, KH, KW, Cp/4, ocb, 4]``, ``v8b`` ``[O/ocb, KH, KW, Cp/g, g/4, ocb, 4]``."""
    ob, kh, kw = packed_shape[:3]
    ocb = packed_shape[-2]
    g = fmt.group
    if fmt.layout == "v8":
        return (ob, kh, kw, cp // g, ocb, g)
    return (ob, kh, kw, cp // g, g // 4, ocb, 4)


def decode_int4_depthwise(w: te.Tensor, kh: int, kw: int) -> te.Tensor:
    """Decode-once stage ``wdec`` of depthwise int4 weights: ``i8`` ``[KH, KW, Cp]`` int8
    codes from the ``i4`` layout (``pack_weight_depthwise``)."""

    def value(i, j, c):
        r = i * kw + j
        nib = (w[r // 2, c] >> tvm.tirx.Cast("uint8", r % 2 * 4)) & tvm.tirx.const(15, "uint8")
        return nib.astype("int8") - tvm.tirx.const(8, "int8")

    return te.compute((kh, kw, int(w.shape[1])), value, name="wdec")


def decode_int4(fmt: WeightFormat, w: te.Tensor, cp: int) -> te.Tensor:
    """The decode-once stage ``wdec``: int8 codes of ``fmt.layout`` from the packed int4
    weights ``w`` (``fmt.packed``'s layout). 8-bit arithmetic, so it vectorizes to a few byte
    ops per 64 weights."""
    shape = decoded_shape(fmt, tuple(int(d) for d in w.shape), cp)
    g, gp = fmt.group, fmt.packed.group
    if int(w.shape[3]) * gp < cp:
        # The stored groups must cover every decoded channel (a decoded group wider than
        # the stored one pads further than the stored weights reach).
        raise ValueError(f"{fmt.name}: the stored int4 weights hold {int(w.shape[3]) * gp} "
                         f"channels, the decoded blocks read {cp}")

    def value(ob, kh, kw, cg, *rest):
        *q, ol, i = rest
        ch = cg * g + (q[0] * 4 if q else 0) + i
        byte, shift = int4_byte(fmt.packed, w, ob, kh, kw, ch // gp, ol, ch % gp)
        nib = (byte >> tvm.tirx.Cast("uint8", shift)) & tvm.tirx.const(15, "uint8")
        return nib.astype("int8") - tvm.tirx.const(8, "int8")

    return te.compute(shape, value, name="wdec")


def pack_weight(q: np.ndarray, fmt: WeightFormat, ocb: int) -> np.ndarray:
    """Pack OIHW weights (float or integer codes) into ``fmt`` with ``ocb``-channel blocks.

    Output channels are zero-padded to a multiple of ``ocb`` and input channels to a multiple
    of ``fmt.group`` (int4 zero codes become nibble 8).

    Layouts: ``f32``/``i8`` ``[O/ocb, KH, KW, C, ocb]``; ``i4`` ``[O/ocb, KH, KW, C/2, ocb]``
    (low nibble = even channel); ``v8`` ``[O/ocb, KH, KW, C/g, ocb, g]``; ``v4``
    ``[O/ocb, KH, KW, C/g, ocb, g/2]`` (byte j = channels j | j + g/2 << 4; g = 8 or 16); ``v8b``
    ``[O/ocb, KH, KW, C/g, g/4, ocb, 4]`` (``v8`` blocks of 4 channels, g/4 per group); ``v4w``
    ``[O/ocb, KH, KW, C/16, 2, ocb, 4]`` (``v4`` blocks of channels 0-7 and 8-15); ``v4s``
    ``[O/ocb, KH, KW, C/4, ocb, 2]`` (byte j = channels j | j + 2 << 4); ``v4p`` as ``v4s``
    with byte j = channels 2j | 2j + 1 << 4.
    """
    from aiq_tvm.quant import pack_int4

    o, c, kh, kw = q.shape
    op, cp = round_up(o, ocb), round_up(c, fmt.group)
    dtype = np.float32 if fmt.layout == "f32" else np.int8
    full = np.zeros((op, cp, kh, kw), dtype)
    full[:o, :c] = q
    g = fmt.group
    # [Ob, ocb, Cg, g, KH, KW] -> [Ob, KH, KW, Cg, ocb, g]
    blk = full.reshape(op // ocb, ocb, cp // g, g, kh, kw).transpose(0, 4, 5, 2, 1, 3)
    if fmt.layout in ("f32", "i8"):
        return np.ascontiguousarray(blk.reshape(op // ocb, kh, kw, cp, ocb) if g == 1 else blk)
    if fmt.layout == "i4":
        return np.ascontiguousarray(pack_int4(blk)[..., 0])
    if fmt.layout == "v8":
        return np.ascontiguousarray(blk)
    if fmt.layout == "v8b":  # [.., Cg, ocb, g] -> [.., Cg, g/4, ocb, 4]
        return np.ascontiguousarray(np.moveaxis(blk.reshape(*blk.shape[:-1], g // 4, 4), -2, -3))
    # Reorder each group so consecutive (even, odd) reduction positions share a byte.
    if fmt.layout == "v4w":  # [.., Cg, ocb, 16] -> [.., Cg, 2, ocb, 8]
        blk = np.moveaxis(blk.reshape(*blk.shape[:-1], 2, 8), -2, -3)
    if fmt.layout == "v4p":  # channel pairs (2j, 2j + 1) as they come
        return np.ascontiguousarray(pack_int4(blk))
    half = 2 if fmt.layout == "v4s" else 4 if fmt.layout == "v4w" else g // 2
    order = [c for j in range(half) for c in (j, j + half)]
    return np.ascontiguousarray(pack_int4(blk[..., order]))


def pack_weight_depthwise(q: np.ndarray, fmt: WeightFormat, cp: int) -> np.ndarray:
    """Pack depthwise ``[C, 1, KH, KW]`` weights, channels zero-padded to ``cp``.

    Layouts: ``f32``/``i8`` ``[KH, KW, Cp]``; ``i4`` ``[ceil(KH*KW/2), Cp]`` with the nibble
    pairs along the flattened (kh, kw) reduction order (low nibble = even position).
    """
    from aiq_tvm.quant import pack_int4

    c, _, kh, kw = q.shape
    dtype = np.float32 if fmt.layout == "f32" else np.int8
    full = np.zeros((cp, kh * kw), dtype)
    full[:c] = q.reshape(c, kh * kw)
    if fmt.layout in ("f32", "i8"):
        return np.ascontiguousarray(full.T.reshape(kh, kw, cp))
    return np.ascontiguousarray(pack_int4(full).T)


# ---------------------------------------------------------------------------------------------
# Epilogues: one TE expression per epilogue kind of aiq_tvm.schemes.EPILOGUES.
# ---------------------------------------------------------------------------------------------


def _int_epilogue(acc_val, o, consts, debug_acc: bool, acc_shift: int):
    if acc_shift:
        acc_val = acc_val >> acc_shift  # exact: the accumulator is a multiple of 2**shift
    v = acc_val - consts["corr"][o]
    if debug_acc:
        return v
    return v.astype("float32") * consts["comb"][o] + consts["bias"][o]


def _float_acc_int_epilogue(acc_val, o, consts, debug_acc: bool):
    """The int epilogue of an exact float32 sum (``conv2d._float_exact_depthwise``): the sum
    and the correction are integers and ``|acc - corr| < 2**24``, so the float32 difference
    is exact, the value the int32 path converts to float32 (outputs bit for bit the same)."""
    v = acc_val - consts["corr"][o].astype("float32")
    if debug_acc:
        return v.astype("int32")
    return v * consts["comb"][o] + consts["bias"][o]


def _folded_int_epilogue(acc_val, o, consts):
    """The int epilogue of a kernel whose ``comb`` constant already holds ``comb / 2**shift``
    and whose ``corr`` is zero (the int8 Winograd kernel, see ``fold_acc_shift``)."""
    return acc_val.astype("float32") * consts["comb"][o] + consts["bias"][o]


def fold_acc_shift(comb: np.ndarray, acc_shift: int) -> np.ndarray | None:
    """``comb / 2**acc_shift`` when that is exact (no float32 underflow), else None.

    float32(2**s a) * (comb / 2**s) == float32(a) * comb bit for bit (scaling by a power of
    two commutes with rounding), so a kernel with zero ``corr`` can skip the shift and the
    correction subtract per element.
    """
    folded = (comb / np.float32(2**acc_shift)).astype(np.float32)
    return folded if np.array_equal(folded * np.float32(2**acc_shift), comb) else None


def _scale_epilogue(acc_val, o, consts, debug_acc: bool, acc_shift: int):
    return acc_val * consts["scale"][o] + consts["bias"][o]


def _float_epilogue(acc_val, o, consts, debug_acc: bool, acc_shift: int):
    return acc_val + consts["bias"][o]


_EPILOGUE_EXPRS = {"int": _int_epilogue, "scale": _scale_epilogue, "float": _float_epilogue}


def epilogue_value(
    scheme: PrecisionScheme, acc_val, o, consts: dict, res_val, act, debug_acc: bool,
    acc_shift: int = 0, folded_shift: bool = False, float_acc: bool = False,
    corr_in_acc: bool = False,
):  # fmt: skip
    """Fused epilogue expression of output channel ``o`` (see ``aiq_tvm.quant``).

    With ``debug_acc`` (integer schemes) the int32 ``acc - corr`` itself. ``folded_shift``:
    ``comb`` holds ``comb / 2**acc_shift`` and ``corr`` is zero (:func:`fold_acc_shift`).
    ``float_acc``: an integer scheme's sum held exactly in float32
    (:func:`_float_acc_int_epilogue`). ``corr_in_acc``: the accumulator started at
    ``-corr``, so it is already ``acc - corr`` (``conv2d._corr_in_acc``)."""
    if corr_in_acc and scheme.epilogue == "int":
        consts = {**consts, "corr": _ZeroCorrection()}
    if float_acc and scheme.epilogue == "int":
        v = _float_acc_int_epilogue(acc_val, o, consts, debug_acc)
    elif folded_shift and scheme.epilogue == "int" and not debug_acc:
        v = _folded_int_epilogue(acc_val, o, consts)
    else:
        v = _EPILOGUE_EXPRS[scheme.epilogue](acc_val, o, consts, debug_acc, acc_shift)
    if debug_acc:
        return v
    if res_val is not None:
        v = v + res_val
    return apply_act_te(v, act)


class _ZeroCorrection:
    """``corr`` of an accumulator that already holds ``acc - corr``: every entry 0, as an
    expression the epilogues' subtraction folds away."""

    def __getitem__(self, o):
        return tvm.tirx.const(0, "int32")


def residual_input(shape: tuple, residual: bool, residual_qparams=None):
    """The ``residual`` placeholder of a kernel (``None`` without one): float32, or uint8
    when the producer of the shortcut requantized it (``residual_qparams``)."""
    if not residual:
        if residual_qparams is not None:
            raise ValueError("residual_qparams given without residual=True")
        return None
    dtype = "float32" if residual_qparams is None else "uint8"
    return te.placeholder(shape, dtype, name="residual")


def residual_value(res, idx: tuple, residual_qparams=None):
    """float32 value of the residual at ``idx``: the element itself, or a uint8 code
    dequantized as ``(q - zp) * scale``."""
    if res is None:
        return None
    if residual_qparams is None:
        return res[idx]
    zp = tvm.tirx.const(float(residual_qparams.zp), "float32")
    scale = tvm.tirx.const(float(residual_qparams.scale), "float32")
    return (res[idx].astype("float32") - zp) * scale


def layer_output(acc_val, o, consts: dict, res_val, args, acc_shift: int = 0,
                 folded_shift: bool = False, float_acc: bool = False,
                 corr_in_acc: bool = False):
    """Stored value of a layer kernel's output channel ``o`` (``args``: its ``LayerArgs``):
    the fused epilogue (:func:`epilogue_value`) and, when ``args.requant``, the uint8 code
    with the activation folded into the code clip (:func:`quantize_clipped`)."""
    ep = functools.partial(epilogue_value, args.scheme, acc_val, o, consts, res_val,
                           acc_shift=acc_shift, folded_shift=folded_shift,
                           float_acc=float_acc, corr_in_acc=corr_in_acc)
    if args.requant and not args.debug_acc:
        caps = args.cpu.caps
        return quantize_clipped(ep("none", False), consts["out_q"][0], consts["out_q"][1],
                                args.act, caps.rounding_convert, caps.truncating_narrow)
    v = ep(args.act, args.debug_acc)
    return output_value(v, consts, args.requant, args.out_dtype)


def output_value(v, consts: dict, requant: bool, out_dtype: str,
                 rounding_convert: bool = False, truncating_narrow: bool = False):
    """Final store value: the epilogue result ``v``, requantized to uint8 when ``requant``."""
    if requant:
        return quantize_value(v, consts["out_q"][0], consts["out_q"][1], rounding_convert,
                              truncating_narrow)
    return v.astype(out_dtype)
