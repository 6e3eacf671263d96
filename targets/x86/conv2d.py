"""NHWC conv2d kernels (regular, pointwise, grouped and depthwise) for every precision scheme.

Grouped convs (1 < groups < C, e.g. ResNeXt, RegNet) run the direct kernel with channel vectors
of the widest width (the target's vector, its half or its quarter, at least 4 lanes) that
divides the output channels per group ``O/G``: every output-channel block then lies inside one
group, and the block reduces over its group's ``C/G`` input channels only (the channel index is
offset by the block's group). The weights ``[O, C/G, KH, KW]`` pack like a regular conv's with
``C/G`` input channels.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, replace
from math import prod

import numpy as np
import tvm
from tvm import te

from aiq_tvm.quant import ActQParams
from aiq_tvm.schemes import get_precision

from . import amx
from . import winograd as wino
from . import winograd_int8 as wino8
from .common import (
    ConvSpec,
    Kernel,
    UnsupportedLayer,
    WeightFormat,
    apply_act_te,
    decode_int4,
    decode_int4_depthwise,
    finalize,
    fold_acc_shift,
    layer_output,
    nhwc_pad_body,
    pack_weight,
    pack_weight_depthwise,
    residual_input,
    residual_value,
    round_up,
    weight_value,
)
from .isa import CpuModel, cpu_model, numerics_qmax, plain_format
from .layer import (
    LayerArgs,
    const_placeholders,
    kernel_info,
    layer_args,
    layer_constants,
    layer_prim_func,
    schedule_layer,
)
from .prefetch import prefetch_next_weight_block
from .schedules import (
    ASSUMED_L2_BYTES,
    HEAP_ACC_CYCLES,
    STACK_ACC_BYTES,
    TASKS_PER_THREAD,
    TilePlan,
    balance,
    decode_cycles,
    divisors,
    dw_unrolled_taps,
    par_prefix_tasks,
    step_cycles,
    thread_split_extent,
    unroll_taps,
    weight_stream_terms,
)


@dataclass(frozen=True)
class _ConvPlan:
    tile: TilePlan
    owp: int  # output width computed by ``acc`` (>= OW; extra columns read padding)
    cp: int  # padded input channels
    cop: int  # padded output channels (depthwise: == cp)
    need_pad: bool
    hq: int  # rows / columns of the padded input copy
    wq: int
    # Column phases of the padded copy: 2 x 2 blocks (WeightFormat.pairs) of a conv with
    # column stride s > 1 read input columns s apart, so the copy is stored [N, hq, s, wq / s,
    # C] (column q * s + p at [p, q]): a block's two columns are then neighbours, one channel
    # row apart, as the intrinsic's activation operand needs.
    phases: int = 1
    # Kernel columns folded into the channel reduction (see ``_fold_kw``): the padded copy is
    # stored [N, hq, wq * C + tail] (each row flat) and a window row's KW * C values, padded
    # to the dot group, are one reduction of ``cp`` channels (``cp`` = padded KW * C).
    fold: bool = False
    # Modelled cycles of this plan (set by ``_plan_conv``, the cost it was chosen for).
    cycles: float = 0.0
    # The accumulation reads the input through a bounds check (the padding value outside)
    # instead of a padded copy (``need_pad`` is then False): see :func:`_border_modes`.
    inline_border: bool = False
    # A pointwise conv planned on its positions flattened (:func:`flat_spec`): the kernel is
    # built for ``flat_spec(spec)`` and takes the layer's own NHWC shapes (aliased buffers).
    flat: bool = False


def _switch(name: str) -> str:
    """Environment switch ``name``, checked: ``""`` (unset), ``"0"`` or ``"1"``."""
    env = os.environ.get(name, "")
    if env not in ("", "0", "1"):
        raise ValueError(f"{name} must be 0 or 1 (or unset), got {env!r}")
    return env


def _live_taps(k: int, d: int, s: int, pad: int, size: int, out: int) -> tuple[int, int]:
    """First and last kernel tap (along one axis) whose input rows or columns, over all
    ``out`` outputs, reach the input (``size``) and not only its padding; (0, k - 1) if none
    does."""
    live = [t for t in range(k) if t * d - pad + s * (out - 1) >= 0 and t * d - pad < size]
    return (live[0], live[-1]) if live else (0, k - 1)


def crop_dead_taps(spec: ConvSpec, weight: np.ndarray | None = None):
    """``(spec, weight)`` without the kernel rows and columns that read only padding.

    A dilated conv whose dilation reaches past the feature map (DeepLabV3's atrous pyramid:
    rates 12, 24 and 36 on a 14 x 14 map) reads the padding alone with its outer taps: for
    rates 24 and 36 the 3x3 conv is a 1x1 conv, but the padded copy it would build is 86 x 86
    pixels for 14 x 14 of input. Dropping those taps is exact in every precision (the padding
    adds zero, or the zero point its correction removes); the padding shrinks with them, and
    the output is the same size. ``weight`` (OIHW) is cropped alike (None: spec only), so an
    integer layer's per-channel weight scales come from the taps that read the input."""
    (kh0, kh1), (kw0, kw1) = (
        _live_taps(k, d, st, pad, size, out) for k, d, st, pad, size, out in (
            (spec.KH, spec.dilation[0], spec.stride[0], spec.padding[0], spec.H, spec.OH),
            (spec.KW, spec.dilation[1], spec.stride[1], spec.padding[1], spec.W, spec.OW)))
    if (kh0, kh1, kw0, kw1) == (0, spec.KH - 1, 0, spec.KW - 1):
        return spec, weight
    kh, kw = kh1 - kh0 + 1, kw1 - kw0 + 1
    top, left = spec.padding[0] - kh0 * spec.dilation[0], spec.padding[1] - kw0 * spec.dilation[1]
    if min(top, left) < 0:
        return spec, weight
    cropped = replace(spec, KH=kh, KW=kw, dilation=(spec.dilation[0] if kh > 1 else 1,
                                                    spec.dilation[1] if kw > 1 else 1))
    ekh, ekw = cropped.window
    bottom = max(0, (spec.OH - 1) * spec.stride[0] + ekh - spec.H - top)
    right = max(0, (spec.OW - 1) * spec.stride[1] + ekw - spec.W - left)
    cropped = replace(cropped, padding=(top, left, bottom, right))
    if (cropped.OH, cropped.OW) != (spec.OH, spec.OW):
        return spec, weight
    if weight is not None:
        weight = np.ascontiguousarray(weight[:, :, kh0 : kh1 + 1, kw0 : kw1 + 1])
    return cropped, weight


def check_supported(spec: ConvSpec) -> None:
    """Raise :class:`UnsupportedLayer` for layers outside the library's coverage.

    Supported: groups 1, depthwise (groups == C == O) or grouped (see
    :func:`grouped_reason`), at any stride and dilation.

    Parameters
    ----------
    spec : ConvSpec
        Layer shape.
    """
    if spec.groups == 1 or spec.is_depthwise:
        return
    if spec.groups == spec.C:
        raise UnsupportedLayer(
            f"depthwise conv with channel multiplier {spec.O // spec.C} > 1 is not supported"
        )
    reason = grouped_reason(spec.C, spec.O, spec.groups)
    if reason:
        raise UnsupportedLayer(reason)


GROUP_MIN_LANES = 4  # narrowest channel vector of a grouped conv (an xmm / NEON register)


def grouped_reason(c: int, o: int, groups: int) -> str | None:
    """Why a grouped conv (1 < groups < C) has no kernel, or None.

    Every channel vector must lie inside one group (``O/G`` a multiple of 4) and the channel
    groups of the dot-product formats (4 channels) must not straddle two groups (``C/G`` a
    multiple of 4). This holds on every target (4 lanes is the narrowest vector), so the
    Relax passes ask it without knowing the target.
    """
    if c % groups or o % groups:
        return f"groups={groups} must divide C={c} and O={o}"
    cpg, opg = c // groups, o // groups
    if opg % GROUP_MIN_LANES or cpg % GROUP_MIN_LANES:
        return (f"grouped conv with groups={groups}: {cpg} input / {opg} output channels per "
                f"group (grouped kernels need multiples of {GROUP_MIN_LANES})")
    return None


def is_grouped(spec: ConvSpec) -> bool:
    """1 < groups and not depthwise."""
    return spec.groups > 1 and not spec.is_depthwise


def group_lanes(spec: ConvSpec, cpu: CpuModel) -> int:
    """Lanes of a layer's channel vectors: the target's, or for a grouped conv the widest of
    its vector, half and quarter that divides ``O/G`` (so a vector never straddles groups)."""
    if not is_grouped(spec):
        return cpu.lanes
    opg = spec.O // spec.groups
    for lanes in (cpu.lanes, cpu.lanes // 2, cpu.lanes // 4):
        if lanes >= GROUP_MIN_LANES and opg % lanes == 0:
            return lanes
    raise UnsupportedLayer(f"{opg} output channels per group do not fill {cpu.lanes}-, "
                           f"{cpu.lanes // 2}- or {cpu.lanes // 4}-lane vectors")


def _narrow_args(spec: ConvSpec, args: LayerArgs) -> LayerArgs:
    """``args`` with the CPU model's vectors narrowed to :func:`layer_lanes`."""
    cpu = _narrow_cpu(spec, args.cpu, args.scheme, args.qmax)
    return args if cpu is args.cpu else replace(args, cpu=cpu)


def _narrow_cpu(spec: ConvSpec, cpu: CpuModel, scheme, qmax: int | None) -> CpuModel:
    """``cpu`` with its vectors narrowed to :func:`layer_lanes` (the register count stays:
    AVX-512 has 32 ymm/xmm registers too)."""
    if is_grouped(spec):
        lanes = group_lanes(spec, cpu)
        return cpu if lanes == cpu.lanes else replace(cpu, isa=replace(cpu.isa,
                                                                        vector_bits=32 * lanes))
    border = _border_width_cpu(spec, cpu, scheme)
    if border is not None:
        return border
    half = _half_width_cpu(spec, cpu, scheme)
    if half is None:
        return cpu
    wide = _plan_conv(spec, _layer_formats(spec, scheme, qmax, cpu), cpu)[1].cycles
    narrow = _plan_conv(spec, _layer_formats(spec, scheme, qmax, half), half)[1].cycles
    return half if narrow < wide else cpu


def layer_lanes(spec: ConvSpec, cpu: CpuModel, scheme, qmax: int | None = None) -> int:
    """Lanes of a layer's channel vectors: :func:`group_lanes` for a grouped conv; for a
    float one the target's, or half of them where :func:`_half_width_cpu` offers half-width
    vectors and the planner models them cheaper."""
    return _narrow_cpu(spec, cpu, get_precision(scheme), qmax).lanes


def _border_width_cpu(spec: ConvSpec, cpu: CpuModel, scheme) -> CpuModel | None:
    """``cpu`` with half-width vectors (at least 8 lanes) for a depthwise conv whose
    channels fill them but not full-width ones, so that it may read its borders inline
    (:func:`_border_modes` needs whole vectors) and no vector holds padding channels; else
    None. Integer ones too (:data:`DW_HALF_WIDTH_INT`). With the taps as loops
    (``AIQ_DW_UNROLL_TAPS=0``) not for windows over 9 taps at stride 1, where the half-width
    taps then cost more than the copy.

    MnasNet's and MobileNetV3's 72, 120 and 200 channels on AVX-512, fp32, this host (Xeon,
    two threads), full width with a padded copy against half width inline, same outputs:
    3x3 72 @ 56 x 56 1.22x (batch 1) and 1.39x (batch 8), 3x3 72 @ 112 x 112 / 2 1.31x, 3x3
    200 @ 14 x 14 2.03x, 5x5 72 @ 28 x 28 / 2 1.89x; 5x5 120 @ 28 x 28 0.59x with looped
    taps (docs/runs/s27/dw_half.txt), 1.63x (batch 8) and 2.54x (batch 1) with them unrolled
    (docs/runs/s28/dw_half.txt; MnasNet's layer took 0.306 ms in the model, ORT 0.192). A
    rule, not the model's choice: comparing the two widths' best plans, the model chose full
    width with the copy in five of the six."""
    half = cpu.lanes // 2
    if (not DW_HALF_WIDTH_INT and scheme.quantizes_activations) or not spec.is_depthwise \
            or not any(spec.padding) or _inline_border_mode() == "0" or half < 8:
        return None
    if spec.C % cpu.lanes == 0 or spec.C % half:
        return None
    if spec.stride == (1, 1) and spec.KH * spec.KW > 9 and not unroll_taps():
        return None
    return replace(cpu, isa=replace(cpu.isa, vector_bits=32 * half))


# Integer depthwise convs take the half-width vectors of _border_width_cpu too. Full width,
# 72 channels pad to 80 in a copy and the last vector's upper half is computed and dropped:
# int8 (uint8 output), one thread, this host, full / half width: 3x3 72 @ 56 x 56 105 / 75 us,
# 3x3 200 @ 14 x 14 17.6 / 12.2 us, 5x5 120 @ 28 x 28 the same (docs/runs/s36/dw_int8_half.txt).
DW_HALF_WIDTH_INT = True


def _half_width_cpu(spec: ConvSpec, cpu: CpuModel, scheme) -> CpuModel | None:
    """``cpu`` with half-width vectors issued at the rate its FMA pipes allow
    (``caps.fma_pipe_bits``), for a float layer (FMA kernels) whose output channels pad to
    fewer half-width than full-width vectors; else None. On a core with 256-bit pipes under
    512-bit vectors, 24 channels are three ymm FMAs in 1.5 cycles instead of two zmm ones (a
    quarter of the lanes empty) in 2: MobileNetV2's 1x1 144 -> 24 and 96 -> 24 at 56 x 56, fp32,
    one thread, Zen 4: 0.269 -> 0.217 and 0.172 -> 0.137 ms (docs/performance_224.md)."""
    if scheme.quantizes_activations:
        return None
    half = cpu.lanes // 2
    bits = cpu.caps.vector_bits
    if cpu.lanes != cpu.caps.lanes32 or cpu.caps.fma_pipe_bits > 32 * half:
        return None
    if round_up(spec.O, half) >= round_up(spec.O, cpu.lanes):
        return None
    tp = cpu.throughput
    faster = replace(tp, vector_ops_per_cycle=tp.vector_ops_per_cycle * bits / (32 * half))
    return replace(cpu, isa=replace(cpu.isa, vector_bits=32 * half, throughput=faster))


def _layer_formats(spec: ConvSpec, scheme, qmax: int | None, cpu: CpuModel,
                   nibbles: bool = False) -> list[WeightFormat]:  # fmt: skip
    """Candidate weight formats; a grouped conv keeps those whose channel group divides
    ``C/G`` (a dot block must not read two groups), else the exact plain format. ``nibbles``:
    an int4 decode form was asked for, so int4 depthwise convs keep their 4-bit formats."""
    cpg = spec.C // spec.groups
    reduction = spec.KH * spec.KW * cpg
    if not (nibbles and scheme.weight_bits == 4):
        if _float_input(spec, scheme, cpu):
            return [replace(plain_format(8, "int32", cpu.throughput), in_dtype="float32")]
        if _int4_codes_as_floats(spec, scheme):
            return [plain_format(8, "int32", cpu.throughput)]
    # Grouped convs have no decode-once formats (their scratch would need the grouped layout).
    fmts = cpu.weight_formats(scheme, qmax, reduction, spec.is_depthwise, not is_grouped(spec))
    if not is_grouped(spec):
        return fmts
    fits = [f for f in fmts if cpg % f.group == 0]
    if fits:
        return fits
    acc = "int32" if scheme.quantizes_activations else "float32"
    return [plain_format(scheme.weight_bits, acc, cpu.throughput)]


def _mb_candidates(n: int, oh: int, ow: int, max_mb: int, max_rows: int = 4):
    """Spatial tiles (tn, toh, tow) whose acc region is a box: row pieces (of up to
    ``max_rows`` rows), whole row groups, whole images."""
    out = []
    for toh in (t for t in divisors(oh) if t <= max_rows):
        out += [(1, toh, t) for t in range(1, min(ow, max_mb // toh) + 1)]
    out += [(1, t, ow) for t in divisors(oh) if t > max_rows and t * ow <= max_mb]
    if oh * ow <= max_mb:
        out += [(t, oh, ow) for t in divisors(n)[1:] if t * oh * ow <= max_mb]
    return out


# Vector registers the depthwise epilogue keeps loaded across a block's reduction (zero-point
# correction, scale, bias: LLVM hoists them out of the kh loop).
DW_EPILOGUE_REGS = 3


def _dw_window_fits(spec: ConvSpec, fmt: WeightFormat, cpu: CpuModel, rows_cols, ocv: int) -> bool:
    """Whether an integer depthwise block's accumulators, the widened inputs of one kernel row
    and its weights fit the vector registers (``rows_cols``: the block's output rows, counting
    images, and columns). LLVM unrolls the ``kw`` loop and keeps each input vector of a block
    row live across the ``kw`` taps that read it; blocks that need more registers reload them
    and ran 1.1-1.3x slower than the best tile (MobileNetV2's depthwise layers at 224, int8,
    Zen 4: 1x2x7 0.113 vs 1x4x2 0.099 ms at 144 @ 56, scripts/bench_dw_tiles.py). Float
    inputs are FMA memory operands, so fp32 keeps the accumulator budget alone, and so do
    levels without ``KernelIsa.dw_input_window``.

    A block one column wide and one channel vector deep reuses no input along its row (each
    widened input meets one tap), so it holds one input per row, not the window: 7 x 7 32 @ 45
    x 29 (a column count no wider tile divides), int8, batch 8, skylake-avx512, one thread: the
    window rule left only 1 x 1 x 1 (0.840 ms), 1 x 3 x 1 runs 0.535-0.551
    (docs/runs/s40/dw_tiles_seed18.txt). Deeper one-column blocks keep the window rule: two
    channel vectors ran no faster there (7 x 7 0.547-0.548, 5 x 5 0.192-0.212 against
    0.196-0.198 ms), and on MobileNetV2's 2 x 2 and 4 x 4 maps the 1 x 2 x 1 blocks of four
    vectors they would admit ran 1.06-1.4x slower than the picks they would displace
    (docs/runs/s40/dw_tiles_mbv2_small.txt)."""
    if fmt.in_dtype == "float32" or not cpu.isa.dw_input_window:
        return True
    rows, cols = rows_cols
    window = (cols - 1) * spec.stride[1] + spec.window[1] if cols > 1 or ocv > 1 else 1
    inputs = rows * window
    live = ocv * (rows * cols + inputs + spec.KW) + DW_EPILOGUE_REGS
    return live <= cpu.isa.registers


def conv_candidates(
    spec: ConvSpec, fmt: WeightFormat, cpu: CpuModel, flat: bool = False
) -> list[tuple[float, _ConvPlan]]:
    """All register-block plans with their modelled cost in cycles (lower is better).

    ``flat``: ``spec`` is a pointwise conv's :func:`flat_spec`; the last block of positions
    may run past the end, and its extra positions read the last input position again (see
    :func:`_acc_block`) instead of a padded copy; plans whose channels need padding are left
    out."""
    threads, lanes, tp = cpu.threads, cpu.lanes, cpu.throughput
    n, _, _, c = spec.in_shape
    oh, ow, o = spec.OH, spec.OW, spec.O
    sh, sw = spec.stride
    dw = spec.is_depthwise
    g = fmt.group
    in_bytes = 4 if fmt.in_dtype == "float32" else 1
    mode = "dw" if dw else ("dot" if fmt.tensorized else "bcast")
    max_acc = cpu.max_acc(mode, 1, fmt.weight_regs)
    red = ("kh", "kw") if dw else ("kh", "kw", "cg", "ci")
    inner = "ci" if g > 1 and not dw else None
    intrin = fmt.intrin
    out = []
    folds = (False, True) if _fold_kw(spec, fmt) else (False,)
    rows = max_acc if _prefers_rows(spec, mode) else 4
    for (tn, toh, tow), fold in ((t, f) for t in _mb_candidates(n, oh, ow, max_acc, rows)
                                 for f in folds):
        if fmt.pairs and tow % 2:
            continue  # 2 x 2 blocks pair neighbouring output columns
        if dw and ow % tow and ow > max_acc:
            # Depthwise blocks with a column tail (owp > OW) ran 3.6x slower than whole ones
            # on MobileNetV2's 112 x 112 stride-2 layer (int8 batch 1, Zen 4: 0.382 vs 0.106
            # ms, scripts/bench_int4_decode.py --only dw); the model does not see it.
            continue
        mb = tn * toh * tow
        owp = round_up(ow, tow)
        phases = sw if fmt.pairs and sw > 1 else 1
        hq, wq = (oh - 1) * sh + spec.window[0], round_up((owp - 1) * sw + spec.window[1], phases)
        for ocv in (1, 2, 3, 4):
            if mb * ocv > cpu.max_acc(mode, ocv, fmt.weight_regs):
                continue
            if dw and not _dw_window_fits(spec, fmt, cpu, (tn * toh, tow), ocv):
                continue
            ocb = lanes * ocv
            if (o // spec.groups) % ocb and is_grouped(spec):
                continue  # a block must lie inside one group
            cop = round_up(o, ocb)
            cp = cop if dw else round_up(c * spec.KW if fold else c, fmt.pad_group)
            if flat and cp != c:
                continue
            for inline in _border_modes(spec, fmt, cp):
                need_pad = not inline and _reads_copy(spec, fold, phases, hq, wq, cp, flat)
                unrolled = dw_unrolled_taps(spec.KH, spec.KW, inline) if dw else 0
                blocks = (n // tn) * (oh // toh) * (owp // tow) * (cop // ocb)
                cred = cp // spec.groups  # channels one output reduces over (not depthwise)
                steps = (1 if fold else spec.KW) * spec.KH * (1 if dw else cred // g)
                work = blocks * steps * step_cycles(mb, ocv, fmt, mode, tp)
                # decode-once: the int8 scratch, once per call (added to the parallel blocks'
                # cost)
                taps = spec.KH * (1 if fold else spec.KW)  # a folded row's taps are in cp
                scratch = taps * cp * (1 if dw else cop) if fmt.packed else 0
                work += n * oh * ow * (cop // lanes) * tp.epi_cycles
                if inline:  # a bounds check per input vector load
                    work += n * oh * owp * (cop // lanes) * taps * INLINE_CHECK_CYCLES
                line = 1 + -(-(c if fold else cp) * in_bytes // 64)
                if mb * ocb * 4 >= STACK_ACC_BYTES:
                    work += blocks * mb * ocv * HEAP_ACC_CYCLES
                pars = _parallel_options(spec, fmt, cpu, (tn, toh, tow), ocb, owp, cp, cop, hq,
                                         wq, line, need_pad, fold, scratch)
                for p_order, par, tasks, pad_pixels, root_pad, reread in pars:
                    total = max(work + pad_pixels * tp.pad_pixel_cycles,
                                tasks * reread / wino.WEIGHT_STREAM_BYTES_PER_CYCLE)
                    root = root_pad * tp.pad_pixel_cycles
                    min_tasks = TASKS_PER_THREAD * threads if par == p_order else 0
                    tile = TilePlan((tn, toh, tow), ocb, lanes, mode, p_order, par, intrin, red,
                                    inner, min_tasks, pairs=fmt.pairs,
                                    unrolled_taps=unrolled)  # fmt: skip
                    tile, decode = (_decode_plan(tile, scratch, (n, oh, owp, cop), cpu)
                                    if scratch else (tile, 0.0))  # fmt: skip
                    for tile_k, ws in _weight_streams(spec, fmt, cpu, tile, (n, oh, owp), blocks,
                                                      taps * cred, cop):
                        cost = max(total, ws) / threads / balance(tasks, threads) + decode + root
                        out.append((cost, _ConvPlan(tile_k, owp, cp, cop, need_pad, hq, wq,
                                                    phases, fold, inline_border=inline,
                                                    flat=flat)))
                out += _block_candidates(spec, out[-1][1], work, scratch, line, cpu)
    return out


# Weight bytes per cycle a core's register blocks stream from its L2 (a chunk of a large panel,
# ``TilePlan.kchunk``), and the largest chunk of one output-channel block's weights (L2-resident
# next to the input rows it meets). Measured on 3x3 960 -> 256 at 14 x 14 dilated 12 (DeepLabV3's
# atrous pyramid, fp32 batch 1, two threads, this host; docs/runs/s30/kchunk.txt): chunks of
# 16-64 channels (37-147 KB) ran 1.30-1.38x faster than the whole 2.2 MB panel, 8 channels 1.05x.
L2_WEIGHT_BYTES_PER_CYCLE = 32.0
CHUNK_BYTES = 160 * 1024
# Largest per-task accumulator buffer of a chunked plan (it lives between chunks).
CHUNK_ACC_BYTES = 256 * 1024


def _reads_copy(spec: ConvSpec, fold: bool, phases: int, hq: int, wq: int, cp: int,
                flat: bool) -> bool:
    """Whether a plan that does not read its borders inline reads a padded copy of the input
    (padding, a window or blocks past the input's edge, padded channels, folded columns,
    column phases); never a flat plan (:func:`flat_spec`), whose last block re-reads the last
    position instead."""
    _, h, w, c = spec.in_shape
    pt, pl, _, _ = spec.padding
    return not flat and bool(fold or phases > 1 or pt or pl or hq > h or wq > w or cp != c)


def _weight_streams(spec: ConvSpec, fmt: WeightFormat, cpu: CpuModel, tile: TilePlan,
                    extents: tuple[int, int, int], blocks: int, reduction: int,
                    cop: int) -> list[tuple[TilePlan, float]]:
    """``[(tile, modelled cycles of float32 weights streamed from beyond L2)]``: ``tile`` as
    planned, with the term of :func:`_cycled_weights_stream` or of its whole panels
    (:func:`_chunk_options`), and a chunked copy of it (``TilePlan.kchunk``) where that
    applies and its accumulators fit. ``[(tile, 0.0)]`` for every layer whose float32 weights
    fit L2, as before."""
    outer = tuple(e // t for e, t in zip(extents, tile.tiles, strict=True))
    cycled = _cycled_weights_stream(spec, fmt, cpu, tile.order, outer, reduction, cop)
    out = []
    for kchunk, stream in _chunk_options(spec, fmt, cpu, blocks, reduction * tile.ocb * 4):
        if not kchunk:
            out.append((tile, max(stream, cycled)))
        elif _chunk_fits(tile, extents, cop):
            out.append((replace(tile, kchunk=kchunk, min_tasks=0), stream))
    return out


def _chunk_options(spec: ConvSpec, fmt: WeightFormat, cpu: CpuModel, blocks: int,
                   panel: int) -> list[tuple[int, float]]:
    """``[(kchunk, modelled weight-streaming cycles)]`` of a float32 plan whose register blocks
    each read ``panel`` bytes of weights (one output-channel block, all taps and channels):
    ``[(0, 0.0)]`` (no chunks, no streaming term) where the panel fits the core's L2, as every
    layer was planned before, and for other formats; else the whole panel streamed from
    beyond L2 per block (``wino.WEIGHT_STREAM_BYTES_PER_CYCLE``) and the largest chunk of
    input channels within :data:`CHUNK_BYTES`, streamed from L2."""
    l2 = cpu.caps.l2_bytes or ASSUMED_L2_BYTES
    if (fmt.name != "f32" or panel <= l2 or spec.is_depthwise
            or not weight_stream_terms()):  # fmt: skip
        return [(0, 0.0)]
    out = [(0, blocks * panel / wino.WEIGHT_STREAM_BYTES_PER_CYCLE)]
    per_channel = panel // spec.C * spec.groups  # bytes of one input channel's weights
    fits = [d for d in divisors(spec.C // spec.groups) if d * per_channel <= CHUNK_BYTES]
    if fits and fits[-1] < spec.C // spec.groups:
        out.append((fits[-1], blocks * panel / L2_WEIGHT_BYTES_PER_CYCLE))
    return out


# Share of the core's L2 a 1x1 conv's weights may fill and still stay there across the
# spatial tile loops (the rest of L2 holds the inputs and outputs streaming past them). Fitted
# to two layers on this host (2 MiB of L2; docs/runs/s33/pw_cycled_share.txt): DeepLabV3's 1x1
# 2048 -> 256 at 28 x 28 (2 MiB of weights) ran its rows-first plan at 186 GFLOP/s and 279
# with the term; MobileNetV2's 960 -> 320 at 7 x 7 (1.2 MiB) ran 0.68-0.90x with the term at
# half of L2, so it stays rows first.
CYCLED_L2_SHARE = 0.75


def _cycled_weights_stream(spec: ConvSpec, fmt: WeightFormat, cpu: CpuModel,
                           order: tuple[str, ...], outer: tuple[int, int, int], reduction: int,
                           cop: int) -> float:
    """Modelled cycles of float32 1x1 convs re-reading weights the other channel blocks
    evicted: with the output-channel loop inside spatial tile loops (``outer``: the spatial
    tile counts), each iteration of those loops reads every block's weights (``reduction x
    cop`` in all) again, from beyond L2 where they exceed :data:`CYCLED_L2_SHARE` of it (the
    rest of L2 holds the activations streaming past). FCN-ResNet50's 1x1 2048 -> 512
    at 28 x 28 split rows first and cycled its 4 MB of weights through L2 for every block of
    4 positions (2.5x slower than with the term, docs/runs/s30/weight_stream.txt). 0 for other
    formats, where the channel loop leads, and
    for convs with a window (on a skylake-avx512 target, 1 MiB of L2, the term reordered three
    stride-2 3x3 layers of ResNet-50 at batch 8, one faster and two slower when run on this
    host's 2 MiB L2, so it is not applied to them unvalidated), as before."""
    if fmt.name != "f32" or not spec.is_pointwise or not weight_stream_terms():
        return 0.0
    weights = reduction * cop * 4
    if weights <= (cpu.caps.l2_bytes or ASSUMED_L2_BYTES) * CYCLED_L2_SHARE:
        return 0.0
    sweeps = prod(outer[int(nm[1])] for nm in order[: order.index("o")])
    return 0.0 if sweeps == 1 else sweeps * weights / wino.WEIGHT_STREAM_BYTES_PER_CYCLE


def _chunk_fits(tile: TilePlan, extents: tuple[int, int, int], cop: int) -> bool:
    """Whether a chunked plan's per-task accumulators fit :data:`CHUNK_ACC_BYTES`: the chunk
    loop runs inside all of ``par`` (a chunked tile fuses every loop of it), so a task holds
    one tile of each spatial loop in ``par``, the whole extent of the others, and one channel
    block if ``"o"`` is in ``par``, else all of them."""
    positions = prod(t if f"s{i}" in tile.par else e
                     for i, (e, t) in enumerate(zip(extents, tile.tiles, strict=True)))
    return positions * (tile.ocb if "o" in tile.par else cop) * 4 <= CHUNK_ACC_BYTES


# Modelled cycles of the bounds check on one input vector load of a conv reading its borders
# inline (:func:`_border_modes`), fitted to 17 depthwise shapes timed both ways on this host
# (fp32, two threads; docs/runs/s27/dw_border.txt, dw_border_7x7.txt): with it the planner
# keeps the copy exactly where the copy was faster (7x7 at 56 x 56 and 28 x 28, batch 8, where
# the copy was 1.22x and 1.11x faster: once per image, 1.2-1.5x the input's pixels for 49 taps)
# and reads inline elsewhere (1.10-3.58x faster). The model's copy-minus-inline difference
# there was 0.022-0.024 cycles per vector tap and thread where the copy won, 0.033 and up
# where inline won.
INLINE_CHECK_CYCLES = 0.057


def _border_modes(spec: ConvSpec, fmt: WeightFormat, cp: int) -> tuple[bool, ...]:
    """Whether the planner's candidates read the borders inline (True: a bounds check per
    input vector, :func:`_bordered_reader`) or from a padded copy (False): both for padded
    depthwise convs whose channels fill whole vectors (``cp == C``; a partial vector would read
    past a pixel); the copy alone otherwise, and for integer convs at stride 1 unless they are
    3x3 with their taps unrolled (the default; ``AIQ_DW_UNROLL_TAPS``).

    The copy is a pass of its own over the input before the taps run, with nothing to hide it
    behind; the checks cost a little on every load (:data:`INLINE_CHECK_CYCLES`). Measured on
    this host (Xeon, AVX-512, two threads), copy against inline, same outputs:

    - fp32, 11 MobileNet / MnasNet / EfficientNet shapes (3x3, 5x5): inline 1.10-3.58x faster
      (144 @ 56 x 56: 3.3x at batch 1, 2.0x at batch 8; 32 @ 112 x 112 batch 8: 1.33x);
    - fp32, ConvNeXt's 7x7: inline 1.18x at 56 x 56 batch 1, 1.35-2.66x at 14 x 14 and 7 x 7,
      0.82x and 0.90x at 56 x 56 and 28 x 28 batch 8 (the model keeps the copy there)
      (docs/runs/s27/dw_border.txt, dw_border_7x7.txt; taps as loops);
    - int8 at stride 2: inline 1.11-1.52x (the copy writes 4x the output's pixels);
    - int8 at stride 1, taps as loops: inline 0.55-0.91x. The uint8 copy is a quarter of the
      bytes, and a widened input vector stays in registers across the taps that read it
      (``_dw_window_fits``) only where LLVM sees those taps together: the checks of looped
      taps broke that up. With the taps unrolled (:func:`schedules.unroll_taps`), 3x3: inline
      0.97-1.31x at 224 x 224 sizes, 1.07-2.04x on MobileNetV2's 32 x 32 maps (skylake-avx512,
      one thread); but 5x5 0.71-0.75x and 7x7 0.83-1.08x, so those keep the copy, a rule
      rather than the model, which would read the 5x5 at batch 1 inline
      (docs/runs/s28/dw_border_int8.txt).

    ``AIQ_INLINE_BORDER``: ``0`` the copy only, ``1`` inline only wherever it applies (also
    integer kernels at stride 1 with looped taps; comparisons: docs/runs/s27/dw_border.py)."""
    env = _inline_border_mode()
    if env == "0" or not spec.is_depthwise or cp != spec.C or not any(spec.padding):
        return (False,)
    if env == "1":
        return (True,)
    if (fmt.in_dtype == "float32" or spec.stride != (1, 1)
            or (spec.KH * spec.KW <= 9 and unroll_taps())):
        return (True, False)
    return (False,)


def _inline_border_mode() -> str:
    """``AIQ_INLINE_BORDER``, checked: ``""`` (default), ``"0"`` or ``"1"``."""
    return _switch("AIQ_INLINE_BORDER")


def _bordered_reader(x: te.Tensor, spec: ConvSpec, pad_value):
    """``read(b, i, j, c)``: the input at padded coordinates, ``pad_value`` outside it, with no
    copy (:func:`_border_modes`). Out-of-range loads sit in the untaken branch."""
    _, h, w, _ = spec.in_shape
    pt, pl, _, _ = spec.padding

    def read(b, i, j, c):
        inside = tvm.tirx.all(i >= pt, i < pt + h, j >= pl, j < pl + w)
        return tvm.tirx.if_then_else(tvm.tirx.likely(inside), x[b, i - pt, j - pl, c],
                                     pad_value)

    return read


def _parallel_options(spec: ConvSpec, fmt: WeightFormat, cpu: CpuModel, tiles: tuple,
                      ocb: int, owp: int, cp: int, cop: int, hq: int, wq: int, line: int,
                      need_pad: bool, fold: bool, scratch: int) -> list[tuple]:
    """How a conv's register blocks may be shared out over the threads: ``(order, par,
    tasks, pad pixels made in the tasks, pad pixels made at the root, bytes each task
    re-reads)`` per option (see :func:`conv_candidates`)."""
    n, h, w, c = spec.in_shape
    tn, toh, tow = tiles
    dw = spec.is_depthwise
    in_bytes = 4 if fmt.in_dtype == "float32" else 1
    cred = cp // spec.groups
    taps = spec.KH * (1 if fold else spec.KW)
    w_reread = _rereads(cop * taps * (1 if dw else cred) * in_bytes, cpu)
    if not need_pad:
        order = _unpadded_order(cop * spec.KH * spec.KW * (1 if dw else cred),
                                n * h * w * c, in_bytes, fmt, cpu)
        reread = 0
        if order[0] == "s0" and n // tn > 1 and w_reread:
            order, reread = IMAGE_CHANNEL_ORDER, w_reread
        ext = {"s0": n // tn, "s1": spec.OH // toh, "s2": owp // tow, "o": cop // ocb}
        tasks = par_prefix_tasks([ext[k] for k in order if ext[k] > 1],
                                 TASKS_PER_THREAD * cpu.threads)
        return [(order, order, tasks, 0, 0, reread)]
    order = ("s0", "s1", "o", "s2")
    # A row task reads every weight: past the L2 it streams them again.
    out = []
    # Padded copy per image group (no redundancy) or per output-row group. An image group's
    # copy past the L2 share is written out to L3 or memory and read back by the conv: row
    # groups keep theirs in cache (MobileNetV2's depthwise 96 @ 112 x 112 / 2, fp32 batch 8:
    # 2.38 ms with image tasks, 17x its batch-1 time; docs/runs/s26/kernel_times.txt).
    image_copy = tn * hq * wq * cp * in_bytes
    if spec.OH == toh or (n // tn >= 2 * cpu.threads and not _rereads(image_copy, cpu)):
        out.append((IMAGE_CHANNEL_ORDER if w_reread else order, ("s0",), n // tn,
                    n * hq * wq * line, 0, w_reread))
    rows = (toh - 1) * spec.stride[0] + spec.window[0]
    pad_px = n * (spec.OH // toh) * rows * wq * line
    out.append((order, ("s0", "s1"), (n // tn) * (spec.OH // toh), pad_px, 0, w_reread))
    if w_reread and not dw and not scratch and cop // ocb > 1:
        # Output-channel tasks read each weight once, and the padded copy (made once, at the
        # root) each. (Decode-once formats have this split with a per-block decode:
        # _block_candidates.)
        out.append((("o", "s0", "s1", "s2"), ("o",), cop // ocb, 0, n * hq * wq * line,
                    _rereads(n * hq * wq * cp * in_bytes, cpu)))
    return out


# Image tasks over weights past the L2: each image walks the output-channel blocks outermost,
# so a block's weights stay in the L2 while it computes all of the image's positions and the
# task reads every weight once. Spatial blocks outside the channel blocks stream all the
# weights again for every row or position block: ResNet-50's 3x3/2 512 at 14 x 14 (9.4 MB of
# fp32 weights) and 1x1 1024 -> 512 at 14 x 14 (2 MB) ran 12x and 14x their batch-1 time at
# batch 8 that way (docs/runs/s26/kernel_times.txt).
IMAGE_CHANNEL_ORDER = ("s0", "o", "s1", "s2")


def _rereads(nbytes: int, cpu: CpuModel) -> int:
    """Bytes a task streams from L3 or memory when it reads ``nbytes`` that every task reads
    or writes in full (weights of a row or image task, the padded input of a channel task, an
    image task's padded copy): all of them past :data:`ROW_SPLIT_L2_SHARE` of a core's L2,
    else none (they stay there from the task before). 0 where the L2 is unknown (plans as
    before this model)."""
    l2 = cpu.caps.l2_bytes
    return 0 if not l2 or nbytes <= ROW_SPLIT_L2_SHARE * l2 else nbytes


def _unpadded_order(weights: int, inputs: int, in_bytes: int, fmt: WeightFormat,
                    cpu: CpuModel) -> tuple:
    """Parallel loop order of an unpadded conv (``weights`` / ``inputs``: element counts):
    output channels first when its weights outweigh its input, so each core reads only its
    slice of them, unless it splits rows like its neighbours (:func:`_rows_like_neighbours`)."""
    big_w = weights > inputs and not _rows_like_neighbours(weights * in_bytes, fmt, cpu)
    return ("o", "s0", "s1", "s2") if big_w else ("s0", "s1", "s2", "o")


# Float weights up to this share of a core's L2 (``TargetCaps.l2_bytes``) are re-read from it by
# a row-split 1x1 conv (see _rows_like_neighbours); larger ones keep the output-channel split.
# 3/4 leaves room for the rows the conv reads and writes (768 KiB of Zen 4's 1 MiB).
ROW_SPLIT_L2_SHARE = 0.75


def _rows_like_neighbours(w_bytes: int, fmt: WeightFormat, cpu: CpuModel) -> bool:
    """Whether an unpadded float conv whose weights outweigh its input still splits output
    rows over the threads (not output channels). The padded layers around it (depthwise,
    3x3) always split rows; a channel split there makes each core read half the rows the
    other core just wrote, from that core's cache. MobileNetV2 fp32 at batch 1 on two threads
    (Zen 4, scripts/profile_insitu.py, docs/performance_224.md): the depthwise 960 @ 7 x 7
    after a channel-split 1x1 ran 24.6-27.2 us in situ (12.3 us on its own), 17.0-18.2 us
    after a row-split one. One thread has no other core's cache to read from; the integer
    formats were not measured. A target whose L2 is unknown keeps the channel split."""
    fits = w_bytes <= ROW_SPLIT_L2_SHARE * cpu.caps.l2_bytes
    return cpu.threads > 1 and fmt.in_dtype == "float32" and fits


def _block_candidates(spec: ConvSpec, plan: _ConvPlan, work: float, scratch: int, line: int,
                      cpu: CpuModel) -> list[tuple[float, _ConvPlan]]:
    """[(modelled cycles, plan)] of ``plan`` decoding per output-channel block
    (``TilePlan.decode_block``) if it decodes once (``scratch`` bytes), is not depthwise, has
    more than one block and more weight bytes than input bytes (else []): the blocks over the
    threads, each decoding its own; the padded copy (if any) at the root, on one thread."""
    n, h, w, c = spec.in_shape
    blocks = plan.cop // plan.tile.ocb
    w_bytes = plan.cop * spec.KH * (1 if plan.fold else spec.KW) * plan.cp
    if not scratch or spec.is_depthwise or blocks < 2 or w_bytes <= n * h * w * c:
        return []
    # Not with a column tail (e.g. 4-column blocks over 7 columns): those plans won on balance
    # in the model (one block per thread) but ran 0.72-0.89x of int8 at two threads (batch 1,
    # 3x3 512 -> 512 at 7 x 7 and 3x3/2 256 -> 512 at 14 x 14; docs/runs/int4_block).
    if plan.owp != spec.OW or not _block_decode_allowed():
        return []
    tile = replace(plan.tile, order=("o", "s0", "s1", "s2"), par=("o",), min_tasks=0,
                   decode_threads=0, decode_block=True)  # fmt: skip
    pad = n * plan.hq * plan.wq * line * cpu.throughput.pad_pixel_cycles if plan.need_pad else 0
    decode = decode_cycles(scratch, cpu.lanes, cpu.threads, per_thread=True, split=True,
                           block=scratch // blocks, l2_bytes=cpu.caps.l2_bytes)
    cost = work / cpu.threads / balance(blocks, cpu.threads) + pad + decode
    return [(cost, replace(plan, tile=tile))]


def _block_decode_allowed() -> bool:
    """``AIQ_INT4_BLOCK_DECODE=0`` leaves the per-block decode (``TilePlan.decode_block``) out
    of the plans (comparisons: scripts/bench_int4_decode.py)."""
    env = os.environ.get("AIQ_INT4_BLOCK_DECODE", "")
    if env not in ("", "0", "1"):
        raise ValueError(f"AIQ_INT4_BLOCK_DECODE must be 0 or 1, got {env!r}")
    return env != "0"


def _decode_plan(tile: TilePlan, scratch: int, extents: tuple, cpu: CpuModel):
    """(tile, modelled decode cycles) of a decode-once plan: each thread decodes its own
    scratch inside the parallel loop (``TilePlan.decode_threads``) when the parallel loop
    splits evenly into one chunk per thread, else one shared scratch at the root."""
    npar = tile.num_parallel(extents)
    names = tile.order[:npar]
    blocks = (e // t for e, t in zip(extents, (*tile.tiles, tile.ocb), strict=True))
    outer = dict(zip(("s0", "s1", "s2", "o"), blocks, strict=True))
    lead = thread_split_extent([outer[nm] for nm in names], cpu.threads)
    if lead is None:
        return tile, decode_cycles(scratch, cpu.lanes, cpu.threads, l2_bytes=cpu.caps.l2_bytes)
    split = names[lead] == "o"  # each thread decodes its own output-channel blocks
    return (replace(tile, decode_threads=cpu.threads),
            decode_cycles(scratch, cpu.lanes, cpu.threads, per_thread=True, split=split,
                          l2_bytes=cpu.caps.l2_bytes))


def _fold_kw(spec: ConvSpec, fmt: WeightFormat) -> bool:
    """Whether folding the kernel columns into the channel reduction saves dot groups: a
    regular conv with few input channels (the RGB stem: 3 channels padded to a group of 4
    waste a quarter of every ``vpdpbusd``; a 7-column window row of 21 values pads to 24)
    whose input columns are contiguous channel runs (NHWC). Tensorized formats only (their
    group is the waste), and not the 2 x 2 pair ones (another input layout). Decode-once int4
    folds like int8 (its scratch is the folded int8 weight), so it runs int8's stem blocks."""
    g = fmt.group
    if not fmt.tensorized or fmt.pairs or g == 1:
        return False
    if spec.groups != 1 or spec.KW == 1 or spec.C % g == 0 or spec.dilation[1] != 1:
        return False  # a dilated window row is not one run of KW * C values
    return round_up(spec.KW * spec.C, g) < spec.KW * round_up(spec.C, g)


def _prefers_rows(spec: ConvSpec, mode: str) -> bool:
    """Whether a conv's register blocks may span more than 4 output rows (up to one row per
    accumulator), and equal-cost tiles go to the one with more rows: float (broadcast-FMA)
    pointwise convs at stride 1 that narrow the channels (``C > O``), unless ``AIQ_PW_ROWS=0``.

    The model prices 14 blocked positions the same whether they are 1 x 14 (one row) or 14 x 1
    (one column), and took 1 x 14. The instructions are the same (one broadcast FMA per
    position and input channel); only the addresses differ: 1 x 14 reads one contiguous run
    of inputs per block, 14 x 1 fourteen runs a row apart. Measured, same outputs (this host,
    AVX-512, two threads; docs/runs/s28/pw_rows.txt), taller blocks on channel-narrowing
    layers: MnasNet's 32 -> 16 at 112 x 112 batch 8 0.537 -> 0.371 ms (1.45x; ORT's node took
    0.395 ms in session 26's profile), MobileNetV2's 144 -> 24 at 56 x 56 1.21x, ResNet-50's
    256 -> 64 1.09x, the other five 0.95-1.08x; on widening layers 0.97-1.02x, so they keep
    the old tiles, as do integer dot kernels (0.96-1.07x). On a haswell target, narrowing
    layers 0.96-1.08x."""
    env = _switch("AIQ_PW_ROWS")
    return (env != "0" and mode == "bcast" and spec.is_pointwise and spec.stride == (1, 1)
            and spec.C > spec.O)


def flat_spec(spec: ConvSpec) -> ConvSpec | None:
    """A pointwise stride-1 conv with each image's positions as one row (N x 1 x HW): the
    same NHWC memory, so the kernel reads and writes the layer's own tensors. None where it
    does not apply (a window, a stride, groups, or images that are one row already).

    Register blocks then tile all the positions of an image together, so a block of 6 or 12
    positions (24 accumulators with 4 or 2 channel vectors) no longer needs the row width to
    be a multiple of it; the last block's extra positions read the image's last input
    position again and are not stored. Rows of 14 or 17 positions allowed 4 x 4, 7 x 2 or
    17 x 1 blocks; where rows fit both, 4 x 4 blocks ran 1.07-1.14x slower than 6 x 4 and
    12 x 2 (fp32 1x1 1024 -> 256 at 12 x 12, batch 8, docs/runs/s32/pw_tiles.txt), and the
    flat plans ran 1.03-1.20x faster than the row plans at 14 x 14 and 17 x 17
    (docs/runs/s32/flat_ab.txt). The images stay a loop of their own so that image tasks
    walking the output-channel blocks outermost (``IMAGE_CHANNEL_ORDER``) remain a choice:
    one row of all the images' positions lost it and streamed the 2 MB of weights of a
    1x1 1024 -> 512 at 14 x 14 once per block of positions (0.80x, batch 8).

    With ``AIQ_FLAT_POINTWISE=1`` (:func:`flat_plans`; off by default) :func:`_plan_conv`
    offers the flat plans beside the row plans to float32 weights (the format measured)
    where a row holds at most one register block (14 or 17 positions on AVX-512; the model
    then picks). Wider rows (28, 56) have blocks enough, and there the flat plans, faster
    alone, ran 0.78-0.95x in a whole ResNet-50 at batch 8 (scripts/profile_insitu.py,
    docs/runs/s32/insitu_r50_b8.txt). With the rule, whole networks ran -3.6 % to +1.9 %
    (Inception-v3 batch 1 +1.9 %, ResNet-50 batch 8 0.0 %, batch 1 -1.7 %, MobileNetV2
    batch 8 -3.6 %; docs/runs/s32/ab_flat.txt), so they are not the default."""
    if not spec.is_pointwise or spec.stride != (1, 1) or spec.is_depthwise or spec.H == 1:
        return None
    return ConvSpec(spec.N, 1, spec.H * spec.W, spec.C, spec.O, 1, 1)


def flat_plans() -> bool:
    """Whether :func:`_plan_conv` offers :func:`flat_spec` plans: ``AIQ_FLAT_POINTWISE=1``
    (off by default: alone the kernels ran 1.03-1.20x faster, in whole networks -3.6 % to
    +1.9 %, docs/runs/s32/ab_flat.txt)."""
    return _switch("AIQ_FLAT_POINTWISE") == "1"


def _plan_conv(
    spec: ConvSpec, fmts: list[WeightFormat], cpu: CpuModel
) -> tuple[WeightFormat, _ConvPlan]:
    """Cheapest (format, plan), with ``AIQ_FLAT_POINTWISE=1`` the plans of :func:`flat_spec`
    included, ranked by modelled cost plus the first read of their weights
    (:func:`_first_read_cycles`); ties go to the smaller register block, then, for float
    pointwise convs, to the tile with more rows (:func:`_prefers_rows`). The plan keeps its
    modelled cost (``cycles``)."""
    flat = flat_spec(spec) if flat_plans() and spec.W <= cpu.max_acc("bcast") else None
    cands = [
        (c, i, fmt, p) for i, fmt in enumerate(fmts) for c, p in conv_candidates(spec, fmt, cpu)
    ]
    if flat is not None:  # float32 weights: the format measured (docs/runs/s32/flat_ab.txt)
        cands += [(c, i, fmt, p) for i, fmt in enumerate(fmts) if fmt.name == "f32"
                  for c, p in conv_candidates(flat, fmt, cpu, flat=True)]
    rate = _thread_memory_rate(cpu)
    cost, _, fmt, plan = min(
        cands, key=lambda t: (round(t[0] + _first_read_cycles(spec, t[2], t[3], cpu, rate), 1),
                              t[1], t[3].tile.ocb * prod(t[3].tile.tiles),
                              -t[3].tile.tiles[1] if _prefers_rows(spec, t[3].tile.mode)
                              else 0)  # fmt: skip
    )
    return fmt, replace(plan, cycles=cost)


def _first_read_cycles(spec: ConvSpec, fmt: WeightFormat, plan: _ConvPlan, cpu: CpuModel,
                       rate: float) -> float:
    """Cycles the busiest thread spends reading from memory, at its share ``rate`` (bytes
    per cycle) of the target's memory bandwidth, what a call reads first: every weight where
    each thread walks all output-channel blocks (row and image tasks); where output-channel
    blocks are the parallel split, its share of them plus the whole input, which one thread
    reads into the padded copy before the parallel loop.

    Ranks the direct plans only: ``_ConvPlan.cycles`` stays the compute model, which the
    Winograd choice and the speed floor use. In a whole network a layer's weights come from
    memory (see :meth:`ConvChoice.cycles_plus_read`), and that read adds to the compute
    rather than hiding under it; the compute model prices neither it nor the root copy's
    input read. Measured cold (64 MB written before each call) / hot, fp32 batch 1
    (docs/runs/s35/cand_rank.txt): 3x3 448 -> 384 at 8 x 8 (6.2 MB of weights, tied in the
    compute model), row tasks 1.095 / 0.767 ms, channel tasks 0.869-0.928 / 0.753-0.777;
    3x3/2 256 -> 256 at 56 x 56 (2.4 MB of weights, 3.2 MB input), where the root copy's
    read keeps the row tasks: 3.580 / 3.396 ms against 3.756-3.895 / 3.565-3.733.

    Only up to :data:`FIRST_READ_MAX_BATCH` and for float32 kernels: the integer kernels'
    weights are a quarter of the bytes, and of the int8 layers the term moved in the models
    checked, 1x1 320 -> 784 at 14 x 14 ran slower cold (141.7 against 122.4 us) and 1x1
    832 -> 48 at 7 x 7 slower hot (9.0 against 6.7 us; docs/runs/s35/first_read_ab.txt)."""
    if not rate or spec.N > FIRST_READ_MAX_BATCH or fmt.in_dtype != "float32":
        return 0.0
    weights = prod(spec.weight_shape) * 4
    if plan.tile.par[:1] != ("o",):
        return weights / rate
    root_copy = prod(spec.in_shape) * 4 if plan.need_pad else 0
    return (weights / cpu.threads + root_copy) / rate


# Largest batch the first read ranks plans at. At batch 8 the compute per weight byte is 8x
# larger and image tasks, each reading all the weights, ran faster than channel tasks where
# the term would have chosen these: 3x3/2 256 -> 512 and 512 -> 512 at 14 x 14 (ResNet-18 /
# ResNet-50 at batch 8) 1.06-1.13x hot, 1.05-1.10x cold (docs/runs/s35/cand_b8_image.txt).
FIRST_READ_MAX_BATCH = 1


@functools.lru_cache(maxsize=64)
def _thread_memory_rate_of(target_text: str, threads: int) -> float:
    from aiq_tvm.targets.memory import weight_memory

    return weight_memory(tvm.target.Target(target_text)).memory_bytes_per_cycle / threads


def _thread_memory_rate(cpu: CpuModel) -> float:
    """One thread's share of the target's memory bandwidth, in the planner's cycles (the
    roofline preset's, ``targets.memory.weight_memory``)."""
    return _thread_memory_rate_of(str(cpu.target), cpu.threads)


@dataclass(frozen=True)
class ConvChoice:
    """What :func:`conv2d_kernel` builds for a layer: weight format, direct plan and the
    Winograd plan replacing it (or None), chosen by :func:`_conv_choice`."""

    fmt: WeightFormat
    plan: _ConvPlan
    wplan: wino.WinoPlan | None
    weight_bytes: float  # the direct kernel's weight bytes in memory (int4: half a byte each)

    @property
    def direct_cycles(self) -> float:
        """Modelled cycles of the direct kernel (its plan, or its weight read if slower)."""
        return wino.bounded_cycles(self.plan.cycles, self.weight_bytes)

    @property
    def cycles(self) -> float:
        """Modelled cycles of the chosen kernel (Winograd's cost includes its weight read)."""
        return self.direct_cycles if self.wplan is None else self.wplan.cost

    def cycles_plus_read(self, read) -> float:
        """The chosen kernel's compute cycles plus reading its weights once, timed by
        ``read`` (``nbytes -> cycles``): the speed floor's model. Per-layer runs with weights
        from memory (rotating copies above the LLC, docs/performance_224.md "Speed floor")
        took about the warm time plus the read at copy bandwidth: at batch 1 the read does
        not hide behind the compute, as the builders' ``max`` bound assumes."""
        if self.wplan is not None:
            return self.wplan.cycles_plus_read(read)
        return self.plan.cycles + read(self.weight_bytes)


def _conv_choice(spec: ConvSpec, scheme, qmax: int | None, cpu: CpuModel, *, requant: bool,
                 winograd, decode_once, database, tune_trials: int) -> ConvChoice:  # fmt: skip
    """The planning of :func:`conv2d_kernel` (formats, direct plan, Winograd), shared with
    :func:`conv2d_cycles` so the modelled cycles are those of the kernel it builds."""
    decode_once = _decode_request(decode_once)
    fmts = _decode_choice(_layer_formats(spec, scheme, qmax, cpu, decode_once is not None),
                          decode_once)  # fmt: skip
    fmt, plan = _plan_conv(spec, fmts, cpu)
    w_bytes = prod(spec.weight_shape) * scheme.weight_bytes
    # An int4 decode form asked for (decode once, or unpack in the loop) is a direct kernel's.
    if scheme.name == "int4" and decode_once is not None and winograd is None:
        winograd = False
    wplan = _winograd_pick(spec, scheme.name, requant, w_bytes, fmt, cpu, winograd, database,
                           tune_trials)  # fmt: skip
    return ConvChoice(fmt, plan, wplan, w_bytes)


def conv2d_cycles(spec: ConvSpec, scheme, target, numerics_target=None, *,
                  requant: bool = False, winograd: bool | int | None = None,
                  decode_once: bool | None = None, read=None) -> float:  # fmt: skip
    """Modelled cycles (wall, all threads of ``target``) of the kernel :func:`conv2d_kernel`
    builds for this layer, without building TIR (``Kernel.info["modelled_cycles"]``).

    ``requant``: the kernel requantizes its output (fp32 layers then have no Winograd
    kernel). Not foreseen without the weights: an int8 Winograd layer whose transformed
    values could overflow int32 falls back to the direct kernel (``direct_cycles``).
    ``read`` (``nbytes -> cycles``): the speed floor's model instead, compute plus the
    weight read it times (:meth:`ConvChoice.cycles_plus_read`); the kernel choice does not
    depend on it.

    Raises
    ------
    UnsupportedLayer
        As :func:`conv2d_kernel`.
    """
    choice = conv_choice_for(spec, scheme, target, numerics_target, requant=requant,
                             winograd=winograd, decode_once=decode_once)
    return choice.cycles if read is None else choice.cycles_plus_read(read)


def conv_choice_for(spec: ConvSpec, scheme, target, numerics_target=None, *,
                    requant: bool = False, winograd: bool | int | None = None,
                    decode_once: bool | None = None) -> ConvChoice:  # fmt: skip
    """:class:`ConvChoice` of a layer as :func:`conv2d_kernel` makes it (no weights needed)."""
    check_supported(spec)
    spec, _ = crop_dead_taps(spec)
    prec = get_precision(scheme)
    qmax = prec.weight_qmax(numerics_qmax(target if numerics_target is None
                                          else numerics_target, spec.is_depthwise))  # fmt: skip
    cpu = _narrow_cpu(spec, cpu_model(target).for_scheme(prec), prec, qmax)
    return _conv_choice(spec, prec, qmax, cpu, requant=requant, winograd=winograd,
                        decode_once=decode_once, database=None, tune_trials=0)


def _pad_block(x: te.Tensor, spec: ConvSpec, plan: _ConvPlan, pad_value) -> te.Tensor:
    """Zero-point (int) or zero (float) padded copy, channels padded to ``plan.cp`` (columns
    split into ``plan.phases`` phases, see ``_ConvPlan``)."""
    if plan.fold:
        return _flat_pad_block(x, spec, plan, pad_value)
    n = spec.N
    body = nhwc_pad_body(x, spec, plan.hq, plan.wq, plan.cp, pad_value)
    ph = plan.phases
    if ph > 1:
        return te.compute((n, plan.hq, ph, plan.wq // ph, plan.cp),
                          lambda b, i, p, q, k: body(b, i, q * ph + p, k), name="pad")
    return te.compute((n, plan.hq, plan.wq, plan.cp), body, name="pad")


def _flat_pad_block(x: te.Tensor, spec: ConvSpec, plan: _ConvPlan, pad_value) -> te.Tensor:
    """The padded copy of a folded conv (``_ConvPlan.fold``): rows stored flat, ``wq * C``
    values plus the tail the last window's padded reduction reads (its weights are zero),
    rounded up to a 64-byte multiple so the copy vectorizes."""
    n, h, w, c = spec.in_shape
    pt, pl, _, _ = spec.padding
    length = round_up(plan.wq * c + plan.cp - spec.KW * c, 64)

    def body(b, i, f):
        col = f - pl * c  # flat position in the input row
        conds = [col >= 0, col < w * c]
        if pt:
            conds.append(i >= pt)
        if plan.hq > pt + h:
            conds.append(i < pt + h)
        val = x[b, i - pt, col // c, col % c]
        return tvm.tirx.if_then_else(tvm.tirx.all(*conds), val, pad_value)

    return te.compute((n, plan.hq, length), body, name="pad")


def conv2d_kernel(
    spec: ConvSpec,
    scheme,
    weight_oihw: np.ndarray,
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
    winograd: bool | int | None = None,
    decode_once: bool | None = None,
) -> Kernel:
    """Build a fused NHWC conv2d kernel.

    Parameters
    ----------
    spec : ConvSpec
        Layer shape (groups 1, grouped or depthwise).
    scheme : str or PrecisionScheme
        A registered precision (``"fp32"``, ``"int8"``, ``"int4"``, ``"w8"``, ``"w4"``).
    weight_oihw : np.ndarray
        Float weight ``[O, C/groups, KH, KW]`` (quantized here for non-fp32 schemes). Kernel
        rows and columns that read only padding are dropped first (:func:`crop_dead_taps`).
    bias : np.ndarray or None
        ``[O]`` bias; ``None`` means zeros.
    act : str or tuple
        ``"none"``, ``"relu"``, ``"relu6"`` or ``("clip", lo, hi)``.
    act_qparams : ActQParams, optional
        Input quantization parameters (required by int8/int4).
    out_qparams : ActQParams, optional
        Requantizing epilogue: write ``y`` as uint8
        ``clip(rint(v * inv) + zp, 0, 255)`` of the final float32 epilogue value ``v``
        (after bias, residual and activation), bit-exact with running the kernel without
        ``out_qparams`` and then :func:`~aiq_tvm.targets.x86.quantize_kernel` on its output.
        ``[inv, zp]`` becomes the ``out_q`` parameter (last constant).
    residual : bool
        Add a ``residual`` input (output-shaped, fp32) after the bias, before the activation.
    residual_qparams : ActQParams, optional
        The residual is uint8, requantized by its producer with these parameters; the
        epilogue adds ``(q - zp) * scale`` (a quarter of the float32 shortcut's memory traffic).
    target : tvm.target.Target or dict
        Compilation target: its capabilities (``aiq_tvm.targets.capabilities``) choose the
        vector width and the int8 dot instruction (``vpdpbusd``, ``vpmaddubsw``, or none).
    numerics_target : tvm.target.Target or dict, optional
        Target whose weight codes the kernel reproduces (default: ``target``). 8-bit weight
        codes depend on it: 63 at most where ``vpmaddubsw`` is the int8 dot product, 127
        elsewhere. A host build calibrating or searching for a cross target passes the deploy
        target here; codes wider than this target's dot product multiplies exactly run on the
        exact 32-bit path, never a saturating one.
    schedule : bool
        Return the scheduled PrimFunc (``False``: the plain TE PrimFunc, which is also the
        tuning workload).
    debug_acc : bool
        int schemes only: output the int32 ``acc - corr`` instead of the float result.
    database : str, os.PathLike or tvm.s_tir.meta_schedule.database.Database, optional
        Tuning records (a directory holds a meta-schedule JSON database; created if missing).
        If it has a record of this kernel's workload (its unscheduled PrimFunc, shared by
        every layer of the same shape, scheme and epilogue) for ``target``, the best record's
        schedule is used (``info["schedule_source"] == "database"``).
    tune_trials : int
        Without a record: if > 0, tune now with this many measured candidates (meta-schedule
        evolutionary search with the XGBoost cost model over this library's schedule
        template, see :mod:`~aiq_tvm.targets.x86.tune`), commit the result to ``database``
        (if given) and use the best of default and tuned (``"tuned"``). Otherwise, and without
        a database, the planner's default schedule (``"default"``).

    winograd : bool, int or None
        fp32 3x3 stride-1 layers only (:mod:`~aiq_tvm.targets.x86.winograd`): ``None``
        (default) uses Winograd F(m, 3) where its modelled cost beats the direct kernel's,
        ``False`` never, ``True`` always where it applies, an int forces that tile edge
        (2 or 4). The environment variable ``AIQ_WINOGRAD`` = ``0`` turns the default off, ``2``
        or ``4`` restricts it to that tile edge (comparisons).

    Returns
    -------
    Kernel
        PrimFunc params are ``(x, weight, [corr, comb | scale], bias, [acc_init], [out_q],
        [residual], y)``; ``acc_init`` (minus ``corr``, padded) where the accumulators start
        there (:func:`_corr_in_acc`).

    Raises
    ------
    UnsupportedLayer
        Dilation > 1, channel multiplier > 1, or a grouped conv whose channels per group are
        not multiples of 4.
    ValueError
        Bad scheme, shapes or missing ``act_qparams``.
    """
    check_supported(spec)
    if np.shape(weight_oihw) == spec.weight_shape:  # (a wrong shape is layer_args' error)
        spec, weight_oihw = crop_dead_taps(spec, weight_oihw)
    args = layer_args(
        scheme, weight_oihw, spec.weight_shape, bias, act=act, act_qparams=act_qparams,
        out_qparams=out_qparams, debug_acc=debug_acc, target=target,
        numerics_target=numerics_target, depthwise=spec.is_depthwise,
    )  # fmt: skip
    args = _narrow_args(spec, args)
    choice = _conv_choice(spec, args.scheme, args.qmax, args.cpu, requant=args.requant,
                          winograd=winograd, decode_once=decode_once, database=database,
                          tune_trials=tune_trials)  # fmt: skip
    fmt, plan, wplan = choice.fmt, choice.plan, choice.wplan
    amx_plan = amx_plan_for(spec, args.scheme, args.cpu.caps) if schedule else None
    if amx_plan is not None:
        kernel = _amx_int8_kernel(spec, args, fmt, amx_plan, residual, residual_qparams)
        kernel.info["modelled_cycles"] = choice.cycles  # not modelled: the dot kernel's
        return kernel
    if wplan is not None and schedule:  # the unscheduled (tuning) workload is direct
        if args.scheme.name in WINOGRAD_INT_SCHEMES:
            kernel = _winograd_int8_kernel(spec, args, fmt, wplan, residual, residual_qparams)
        else:
            kernel = _winograd_kernel(spec, args, wplan, residual, residual_qparams)
        if kernel is not None:
            kernel.info["modelled_cycles"] = choice.cycles
            return kernel
    built = flat_spec(spec) if plan.flat else spec
    names, consts = _conv_constants(built, args, fmt, plan)
    func = _conv_prim_func(built, args, fmt, plan, names, consts, residual, residual_qparams)
    kind = "dw" if spec.is_depthwise else ("pw" if spec.is_pointwise else "direct")
    kind = "grouped" if is_grouped(spec) else kind
    kind = f"{kind}_foldkw" if plan.fold else kind
    kind = f"{kind}_flat" if plan.flat else kind
    func, sched = schedule_layer(func, plan.tile, f"nhwc_{kind}", args, fmt, schedule=schedule,
                                 database=database, tune_trials=tune_trials)  # fmt: skip
    if plan.flat:
        func = _with_layer_shapes(func, {"x": spec.in_shape, "residual": spec.out_shape,
                                         "out": spec.out_shape})
    info = kernel_info(args, fmt, plan.tile.mode, sched, names, consts, residual, plan.need_pad)
    info["decode_once"] = fmt.packed is not None
    info["inline_border"] = plan.inline_border
    info["modelled_cycles"] = choice.direct_cycles
    if fmt.packed is not None:  # where the int4 weights are decoded (see TilePlan)
        tile = plan.tile
        info["decode_at"] = ("block" if tile.decode_block else
                             "thread" if tile.decode_threads > 1 else "root")
    info["float_input"] = _stages_float_input(spec, fmt)
    in_dtype = "uint8" if info["float_input"] else fmt.in_dtype
    return Kernel(func, consts, in_dtype, spec.out_shape, args.out_dtype, info, plan.tile)


def _with_layer_shapes(func: tvm.tirx.PrimFunc, shapes: dict) -> tvm.tirx.PrimFunc:
    """``func`` taking the parameters named in ``shapes`` in those shapes: each becomes a
    buffer of its shape, and the body's buffer of the old shape is declared on the same data
    (both dense, so every element keeps its address): a :func:`flat_spec` kernel then reads
    and writes the layer's NHWC tensors as they are."""
    params, decls = [], []
    for p in func.params:
        shape = shapes.get(getattr(p, "name", None))
        if shape is None or tuple(int(d) for d in p.shape) == tuple(shape):
            params.append(p)
            continue
        layer_buf = tvm.tirx.decl_buffer(shape, p.dtype, p.name)
        params.append(layer_buf)
        decls.append(tvm.tirx.DeclBuffer(p, data=layer_buf.data))
    if not decls:
        return func
    return tvm.tirx.PrimFunc(params, tvm.tirx.SeqStmt([*decls, func.body]), func.ret_type,
                             func.attrs)


def _decode_request(decode_once: bool | None) -> bool | None:
    """``decode_once``, else ``AIQ_INT4_DECODE`` (checked): None where neither asks."""
    if decode_once is None:
        env = os.environ.get("AIQ_INT4_DECODE", "")
        if env not in ("", "0", "1"):
            raise ValueError(f"AIQ_INT4_DECODE must be 0 or 1, got {env!r}")
        decode_once = None if env == "" else env == "1"
    return decode_once


def _decode_choice(fmts: list[WeightFormat], decode_once: bool | None) -> list[WeightFormat]:
    """The candidate formats left by the decode form asked for (:func:`_decode_request`):
    the decode-once formats only, the in-loop ones only, or both for the planner to weigh."""
    if decode_once is None:
        return fmts
    chosen = [f for f in fmts if (f.packed is not None) == decode_once]
    return chosen or fmts  # layers without decode-once formats keep theirs


def _conv_constants(
    spec: ConvSpec, args: LayerArgs, fmt: WeightFormat, plan: _ConvPlan
) -> tuple[list[str], list[np.ndarray]]:
    """Host-side constants: weight codes packed into ``fmt``, scales, corrections, bias."""
    q, s_w = args.scheme.quantize_weight(args.weight, args.int8_qmax)
    if spec.is_depthwise:
        packed = pack_weight_depthwise(q, fmt.packed or fmt, plan.cp)
        if _float_weight_codes(spec, fmt):
            packed = packed.astype(np.float32)
    else:
        wq = _folded_weight(q) if plan.fold else q
        packed = pack_weight(wq, fmt.packed or fmt, plan.tile.ocb)
    names, consts = layer_constants(args, q, s_w, packed, fmt.act_offset)
    if _corr_in_acc(spec, args, fmt):
        corr = consts[names.index("corr")]
        width = plan.cp if spec.is_depthwise else plan.cop
        init = np.zeros(width, np.float32 if _acc_dtype(spec, fmt) == "float32" else np.int32)
        init[: corr.size] = -corr
        at = names.index("out_q") if "out_q" in names else len(names)  # out_q stays last
        names, consts = [*names[:at], ACC_INIT, *names[at:]], [*consts[:at], init, *consts[at:]]
    return names, consts


# Constant of the integer kernels whose accumulators start at minus the zero-point
# correction (:func:`_corr_in_acc`).
ACC_INIT = "acc_init"


def _corr_in_acc(spec: ConvSpec, args: LayerArgs, fmt: WeightFormat) -> bool:
    """Whether an integer kernel's accumulators start at ``-corr`` (constant ``acc_init``,
    padded to the accumulated channels) instead of 0, so that its epilogue has no
    subtraction: ``acc - corr`` is the same integer either way (int32 arithmetic, or a float
    sum whose partial sums stay exact integers, :func:`_float_exact_depthwise`), so outputs
    are the same bits. One epilogue op fewer per output vector, against loading the initial
    values (once per register block) and keeping them in registers. Kernels alone, one
    thread, int8 with a uint8 output (docs/runs/s50/console_records.txt): depthwise 1.05-1.06x
    on skylake-avx512, 1.01-1.08x on haswell; other convs on skylake-avx512 1.01-1.06x with
    reductions of 16-32 values, 0.99-1.03x beyond, on haswell (16 vector registers)
    0.89-1.01x. So: depthwise convs on x86, and convs reducing over at most
    :data:`CORR_IN_ACC_MAX_REDUCTION` values on AVX-512 (32 vector registers). The
    accumulators the ``x16``-scaled int4 path shifts first keep the subtraction, as do Arm
    targets (not timed). ``AIQ_CORR_IN_ACC=0`` / ``1`` turns it off / on wherever it applies
    (comparisons)."""
    env = _switch("AIQ_CORR_IN_ACC")
    caps = args.cpu.caps
    if (env == "0" or args.scheme.epilogue != "int" or fmt.acc_shift or args.debug_acc
            or caps.arch != "x86_64"):
        return False
    reduction = spec.C // spec.groups * spec.KH * spec.KW
    return (env == "1" or spec.is_depthwise
            or (caps.vector_bits == 512 and reduction <= CORR_IN_ACC_MAX_REDUCTION))


# Longest reduction of a non-depthwise conv whose accumulators start at -corr (_corr_in_acc).
CORR_IN_ACC_MAX_REDUCTION = 64


def _acc_dtype(spec: ConvSpec, fmt: WeightFormat) -> str:
    """The accumulator's dtype: ``fmt.acc_dtype``, float32 for a float-exact depthwise conv."""
    if spec.is_depthwise and fmt.acc_dtype == "int32" and _float_exact_depthwise(spec):
        return "float32"
    return fmt.acc_dtype


def _folded_weight(q: np.ndarray) -> np.ndarray:
    """``[O, C, KH, KW]`` -> ``[O, KW * C, KH, 1]``: reduction position ``kw * C + c``."""
    o, c, kh, kw = q.shape
    return np.ascontiguousarray(q.transpose(0, 3, 1, 2).reshape(o, kw * c, kh, 1))


def _conv_prim_func(spec: ConvSpec, args: LayerArgs, fmt: WeightFormat, plan: _ConvPlan,
                    names: list[str], consts: list[np.ndarray], residual: bool,
                    residual_qparams: ActQParams | None) -> tvm.tirx.PrimFunc:  # fmt: skip
    """The unscheduled TE kernel: optional padded copy, accumulation, fused epilogue."""
    prec = args.scheme
    tens = const_placeholders(names, consts)
    out_shape = spec.out_shape
    res = residual_input(out_shape, residual, residual_qparams)
    zp = args.act_qparams.zp if prec.quantizes_activations else 0
    pad_value = tvm.tirx.const(zp, fmt.in_dtype)
    if _stages_float_input(spec, fmt):  # read as floats from a converted copy
        x = te.placeholder(spec.in_shape, "uint8", name="x")
        src = te.compute(spec.in_shape, lambda *i: x(*i).astype("float32"), name="xf")
    else:
        x = src = te.placeholder(spec.in_shape, fmt.in_dtype, name="x")
    xp = _pad_block(src, spec, plan, pad_value) if plan.need_pad else src
    xread = _bordered_reader(src, spec, pad_value) if plan.inline_border else None
    wt = tens["weight"]
    if fmt.packed is not None and spec.is_depthwise:
        wt = decode_int4_depthwise(wt, spec.KH, spec.KW)
    elif fmt.packed is not None:
        wt = decode_int4(fmt, wt, plan.cp)
    acc = _acc_block(spec, plan, fmt, xp, wt, xread)
    float_acc = fmt.acc_dtype == "int32" and acc.dtype == "float32"  # see _acc_block
    y = te.compute(
        out_shape,
        lambda b, i, j, oc: layer_output(
            acc[b, i, j, oc], oc, tens, residual_value(res, (b, i, j, oc), residual_qparams),
            args, fmt.acc_shift, float_acc=float_acc, corr_in_acc=ACC_INIT in tens),
        name="out",
    )  # fmt: skip
    func = layer_prim_func(x, tens, names, res, y)
    return _init_from_constant(func, "acc", ACC_INIT) if ACC_INIT in tens else func


def _init_from_constant(func: tvm.tirx.PrimFunc, block: str, const: str) -> tvm.tirx.PrimFunc:
    """``func`` whose reduction block ``block`` starts each output element at parameter
    ``const`` indexed by the element's last (channel) index, instead of 0. (TE's reductions
    take such an ``init``, but TVM 0.27's ``create_prim_func`` drops it and writes 0.)"""
    from tvm.s_tir.stmt import SBlock

    from aiq_tvm._ir import tir_substitute

    init_buf = next(b for b in func.params if getattr(b, "name", None) == const)

    def visit(stmt):
        if not isinstance(stmt, SBlock) or stmt.name_hint != block:
            return None
        store = stmt.init
        channel = store.indices[-1]
        load = tvm.tirx.BufferLoad(init_buf, [channel]).astype(store.buffer.dtype)
        # Not added to the block's reads: decompose_reduction gives the init block its own
        # from the init's body, and the update block must keep the reads the tensor
        # intrinsics match.
        return SBlock(list(stmt.iter_vars), list(stmt.reads), list(stmt.writes), stmt.name_hint,
                      stmt.body,
                      tvm.tirx.BufferStore(store.buffer, load, list(store.indices)),
                      list(stmt.alloc_buffers), list(stmt.match_buffers), stmt.annotations)

    return func.with_body(tir_substitute(func.body, visit))


def _acc_block(spec: ConvSpec, plan: _ConvPlan, fmt: WeightFormat, xp, wt,
               xread=None) -> te.Tensor:  # fmt: skip
    """The reduction into the accumulator over padded output channels; a depthwise conv reads
    its input through ``xread`` (:func:`_bordered_reader`) where given, else from ``xp``, and
    an integer one sums in float32 where that is exact (:func:`_float_exact_depthwise`)."""
    n = spec.N
    sh, sw = spec.stride
    dh, dw = spec.dilation
    kh = te.reduce_axis((0, spec.KH), "kh")
    kw = te.reduce_axis((0, 1 if plan.fold else spec.KW), "kw")
    accd = fmt.acc_dtype
    if spec.is_depthwise:

        def wval(cc, i, j):
            if fmt.layout == "i4":
                r = i * spec.KW + j
                byte = wt[r // 2, cc].astype("int32")
                return (((byte >> (r % 2 * 4)) & 15) - 8).astype(accd)
            if wt.dtype == "float32":  # codes stored as floats: _float_weight_codes
                return wt[i, j, cc]
            return wt[i, j, cc].astype(accd)

        def xval(b, i, j, cc):
            return xread(b, i, j, cc) if xread is not None else xp[b, i, j, cc]

        cd = _acc_dtype(spec, fmt)
        return te.compute(
            (n, spec.OH, plan.owp, plan.cp),
            lambda b, i, j, cc: te.sum(
                xval(b, i * sh + kh * dh, j * sw + kw * dw, cc).astype(cd)
                * wval(cc, kh, kw).astype(cd),
                axis=[kh, kw]),
            name="acc",
        )
    g = fmt.group
    ocb = plan.tile.ocb
    cpg = plan.cp // spec.groups  # channels per group (grouped: C/G, not padded)
    cg = te.reduce_axis((0, cpg // g), "cg")
    ci = te.reduce_axis((0, g), "ci")
    blocks_per_group = spec.O // spec.groups // ocb  # grouped: O/G is a multiple of ocb

    def chan(oc):
        """Input channel of reduction step (cg, ci) for output channel ``oc``: offset by the
        group of oc's block (written via the block index so it is loop-invariant inside a
        tensorized block)."""
        if spec.groups == 1:
            return cg * g + ci
        return oc // ocb // blocks_per_group * cpg + cg * g + ci

    def xval(b, i, j, c):
        if plan.flat and plan.owp > spec.W:  # the last block's extra positions: see flat_spec
            return xp[b, i, te.min(j, spec.W - 1), c]
        if plan.fold:  # window row kh of column j: flat values j * sw * C + (kw * C + c)
            return xp[b, i * sh + kh * dh, j * sw * spec.C + c]
        if plan.phases > 1:  # input column j * sw + kw * dw: phase (kw * dw) % sw, column
            # j + (kw * dw) // sw
            return xp[b, i * sh + kh * dh, kw * dw % sw, j + kw * dw // sw, c]
        return xp[b, i * sh + kh * dh, j * sw + kw * dw, c]

    return te.compute(
        (n, spec.OH, plan.owp, plan.cop),
        lambda b, i, j, oc: te.sum(
            fmt.activation(xval(b, i, j, chan(oc)))
            * weight_value(fmt, wt, oc // ocb, kh, kw, cg, oc % ocb, ci),
            axis=[kh, kw, cg, ci],
        ),
        name="acc",
    )


# Largest |uint8 activation x weight code| product of the integer kernels (codes within int8).
MAX_INT_PRODUCT = 255 * 128


def _float_exact_depthwise(spec: ConvSpec) -> bool:
    """Whether an integer depthwise conv accumulates in float32 FMAs: its uint8 inputs and
    weight codes widened to float, the sum exact (every partial sum an integer below 2**24:
    ``KH * KW * 255 * 128`` is, up to 514 taps); the epilogue subtracts the correction in
    float32, also exact, so the outputs are the int32 path's bit for bit. One FMA per tap
    instead of integer multiply-adds on widened values; the tiles stay those planned for the
    int32 path. Kernels alone (11 shapes, int8, same tiles and outputs;
    docs/runs/s27/dw_float_acc.txt): 1.00-1.33x on this host (AVX-512 VNNI), 1.08-1.34x on a
    haswell target, 0.97-1.29x on skylake-avx512 (below 1.0 only the 3x3 stride-2 48 @ 112 x
    112). Whole models, INT8, here: MobileNetV2 1.03x (batch 1) and
    1.04x (batch 8), MnasNet 1.03x (batch 8) (docs/runs/s27/dw_float_acc_onoff.jsonl).
    ``AIQ_DW_FLOAT_ACC=0`` keeps int32 (comparisons)."""
    env = _switch("AIQ_DW_FLOAT_ACC")
    return env != "0" and spec.KH * spec.KW * MAX_INT_PRODUCT < 2**24


def _float_weight_codes(spec: ConvSpec, fmt: WeightFormat) -> bool:
    """Whether a depthwise conv that sums in float32 (:func:`_float_exact_depthwise`) keeps
    its int8 weight codes as float32 constants: each tap's FMA then reads its weight vector
    straight from memory instead of widening and converting it in every register block (two
    more vector instructions per tap beside one FMA; the weights are only KH * KW * C values).
    Same outputs bit for bit. Kernels alone, int8 weights against float codes, same tiles
    (docs/runs/s33/dw_float_weights_*.txt, one thread): MobileNetV2's 32 x 32 layers at batch
    16 0.99-1.23x on skylake-avx512 (total 1.10x), 0.98-1.12x on haswell (1.07x); its and
    EfficientNet's 224 x 224 layers on this host (AVX-512 VNNI) 0.99-1.13x at batch 1 and 8.
    ``AIQ_DW_FLOAT_WEIGHTS=0`` keeps the int8 constants (comparisons)."""
    env = _switch("AIQ_DW_FLOAT_WEIGHTS")
    if env == "0":
        return False
    return (spec.is_depthwise and fmt.layout == "i8" and fmt.packed is None
            and fmt.acc_dtype == "int32" and _float_exact_depthwise(spec))


def _float_input(spec: ConvSpec, scheme, cpu: CpuModel) -> bool:
    """Whether an integer depthwise conv reads its uint8 input as float32 from a copy
    converted once per call (:func:`_stages_float_input`) instead of widening and converting
    input vectors inside its register blocks: its taps are then float FMAs with memory
    operands planned like the fp32 kernel's (inline borders, fp32's register tiles), the
    products and sums those of the float-exact path bit for bit. Where it pays (levels with
    ``KernelIsa.dw_float_input``): stride 1, more than 9 taps, at least 64 channels (fewer
    keep cheap in-place tiles) and a copy within half the L2. Kernels alone, one thread,
    skylake-avx512, in place -> copy (fp32), us (docs/runs/s40/dw_float_input_*.txt): 7x7 192
    @ 28 x 28 234.5 -> 114.8 (98.3), 384 @ 14 x 14 77.9 -> 48.8 (36.4), 5x5 672 @ 14 x 14
    81.8 -> 53.0 (36.3), 240 @ 28 x 28 95.4 -> 83.8 (62.4); where the copy is larger it lost
    (5x5 240 @ 28 x 28 batch 8 713 -> 974, 32 @ 112 x 112 184 -> 231), and at stride 2 (5x5
    144 @ 56 x 56 67 -> 148). ``AIQ_DW_FLOAT_INPUT=0`` keeps the in-place conversion, ``1``
    takes the copy wherever an integer depthwise conv sums in float (comparisons)."""
    env = _switch("AIQ_DW_FLOAT_INPUT")
    if env == "0" or not (spec.is_depthwise and scheme.quantizes_activations
                          and _float_exact_depthwise(spec)):  # fmt: skip
        return False
    if env == "1":
        return True
    copy_bytes = 4 * prod(spec.in_shape)
    return (cpu.isa.dw_float_input and spec.stride == (1, 1) and spec.KH * spec.KW > 9
            and spec.C >= 64 and copy_bytes <= cpu.caps.l2_bytes // 2)


def _stages_float_input(spec: ConvSpec, fmt: WeightFormat) -> bool:
    """An integer depthwise format planned on float reads (:func:`_float_input`)."""
    return spec.is_depthwise and fmt.acc_dtype == "int32" and fmt.in_dtype == "float32"


def _int4_codes_as_floats(spec: ConvSpec, scheme) -> bool:
    """Whether an int4 depthwise conv takes int8's format, its 4-bit codes decoded at build
    time into the float32 constants of :func:`_float_weight_codes`: the same products, without
    unpacking nibbles in every register block (``i4``) or into a scratch at every call
    (``i4d``). The weights of a depthwise layer are KH * KW * C values, so storing them as
    floats costs little. Kernels alone, one thread, nibbles against float codes: MobileNetV2's
    32 x 32 layers at batch 16 on skylake-avx512 1.02-1.24x (total 1.12x), its and
    EfficientNet's 224 x 224 layers on this host (AVX-512 VNNI) 0.97-1.15x at batch 1 and 8
    (total 1.05x) (docs/runs/s40/dw_int4_skx32.txt, dw_int4_host224.txt)."""
    return (spec.is_depthwise and scheme.quantizes_activations and scheme.weight_bits == 4
            and _switch("AIQ_DW_FLOAT_WEIGHTS") != "0" and _float_exact_depthwise(spec))


def _winograd_choice(spec, args, fmt, plan, cpu, winograd, database, tune_trials):
    """:func:`_winograd_pick` for a builder's ``args``."""
    return _winograd_pick(spec, args.scheme.name, args.requant,
                          args.weight.size * args.scheme.weight_bytes, fmt, cpu, winograd,
                          database, tune_trials)  # fmt: skip


# Integer schemes the int16 Winograd kernels run (uint8 activations, weight codes within int8):
# int4 codes transform to the same int16 U as int8 ones, so an int4 layer takes the int8
# layer's Winograd kernel where it wins (a mixed plan is then never slower there than uniform
# int8; its stored U is int16 either way, the int4 rounding is what stays).
WINOGRAD_INT_SCHEMES = ("int8", "int4")


def _winograd_pick(spec, scheme_name, requant, w_bytes, fmt, cpu, winograd, database,
                   tune_trials):  # fmt: skip
    """The Winograd plan to use instead of the direct one, or None: fp32 without a
    requantizing epilogue (F(2, 3) or F(4, 3)), int8 and int4 (F(2, 3) or F(4, 3) in int16,
    any epilogue). ``w_bytes``: the direct kernel's weight bytes in memory."""
    if winograd is False:
        return None
    layer = spec
    if scheme_name == "fp32":  # the int16 kernels do not run dilation phases
        spec = wino.dilation_phases(spec) or spec
    if scheme_name == "fp32" and not requant and wino.applies(spec):
        sizes, arith, margin = wino.TILE_SIZES, None, wino.SELECT_MARGIN
    elif scheme_name in WINOGRAD_INT_SCHEMES and wino8.applies(spec, cpu):
        sizes, arith, margin = tuple(wino8.TILES), wino8.arith(cpu), wino8.select_margin(cpu)
    else:
        return None
    if database is not None or tune_trials:
        return None  # tuning records describe the direct kernel
    if isinstance(winograd, int) and not isinstance(winograd, bool):
        return wino.winograd_plan(spec, cpu, (winograd,), arith) if winograd in sizes else None
    env = os.environ.get("AIQ_WINOGRAD", "")
    if winograd is None and env == "0":
        return None
    sizes = tuple(m for m in sizes if env not in ("2", "4") or m == int(env))
    if not sizes:
        return None
    if scheme_name in WINOGRAD_INT_SCHEMES:
        wplan = wino8.winograd_plan(spec, cpu, sizes)
    else:
        wplan = wino.winograd_plan(spec, cpu, sizes, arith)
    if winograd is True:
        return wplan
    direct = min(c for c, p in conv_candidates(layer, fmt, cpu))
    direct = max(direct, wino.weight_read_cycles(w_bytes))
    return wplan if wplan.cost * margin < direct else None


def _winograd_kernel(spec: ConvSpec, args, wplan, residual: bool, residual_qparams) -> Kernel:
    """fp32 Winograd kernel with the direct kernel's interface (x, weight, bias, [res], y);
    the residual is float32 or a requantized uint8 shortcut, as in the direct kernel."""
    u = wino.transform_weight(args.weight, wplan.m, wplan.ocb)
    consts = [u, np.ascontiguousarray(args.bias)]
    x = te.placeholder(spec.in_shape, "float32", name="x")
    wt = te.placeholder(u.shape, "float32", name="weight")
    bias = te.placeholder(args.bias.shape, "float32", name="bias")
    res = residual_input(spec.out_shape, residual, residual_qparams)

    def epilogue(val, b, i, j, k):
        v = val + bias[k]
        if res is not None:
            v = v + residual_value(res, (b, i, j, k), residual_qparams)
        return apply_act_te(v, args.act)

    phases = wino.dilation_phases(spec)  # a dilated layer: its phases' conv (wplan's)
    y = wino.winograd_compute(phases or spec, wplan, x, wt, epilogue,
                              layer=spec if phases else None)
    params = [x, wt, bias] + ([res] if res is not None else []) + [y]
    func = finalize(te.create_prim_func(params), scheduled=False)
    func = finalize(wino.schedule_winograd(func, phases or spec, wplan))
    func, lines = prefetch_next_weight_block(func, args.cpu.caps.l2_bytes, args.cpu.threads)
    sched = {"schedule": wplan.describe(), "schedule_source": "default", "weight_prefetch": lines}
    fmt = args.cpu.weight_formats(args.scheme, None, 9 * spec.C, False)[0]
    info = kernel_info(args, fmt, "bcast", sched, ["weight", "bias"], consts, residual, True)
    info["algorithm"] = f"winograd_f{wplan.m}"
    return Kernel(func, consts, "float32", spec.out_shape, "float32", info, None)


def amx_plan_for(spec: ConvSpec, scheme, caps) -> amx.AmxPlan | None:
    """The AMX plan of an int8 or int4 layer on a target with AMX-INT8 (``caps``), or None
    where the ``vpdpbusd`` kernel runs (``AIQ_AMX=0`` turns AMX off). Needs no weights:
    reports call it too.

    Tiles run wherever they apply (:func:`~aiq_tvm.targets.x86.amx.amx_plan`). Whole models
    ran fastest that way on a Sapphire Rapids guest (session 25): MobileNetV2 INT8 b1 / b8
    1.44 / 9.27 ms, against 1.47 / 9.76 ms with tiles only for reductions of 256 and more and
    1.52 / 9.93 ms without; ResNet-50 b1 4.03 / 4.37 / 8.32 ms.

    int4 layers take the same tiles with their 4-bit codes stored one per byte (tiles read
    bytes): int8's speed, int4's accuracy, int8's weight memory (``Kernel.info``'s
    ``weight_format`` is ``amx_i8``, and the build report notes it). Kept on the ``vpdpbusd``
    path they would run several times slower than an int8 layer next to them."""
    env = _switch("AIQ_AMX")
    name = get_precision(scheme).name
    if env == "0" or name not in ("int8", "int4") or not amx.has_amx(caps):
        return None
    return amx.amx_plan(spec)


def _amx_int8_kernel(spec: ConvSpec, args, fmt, plan: amx.AmxPlan, residual: bool,
                     residual_qparams) -> Kernel:  # fmt: skip
    """The AMX-INT8 kernel (:mod:`~aiq_tvm.targets.x86.amx`) with the direct kernel's
    interface, constants (weight codes packed for tiles, a byte each) and epilogue."""
    q, s_w = args.scheme.quantize_weight(args.weight, args.int8_qmax)
    names, consts = layer_constants(args, q, s_w, amx.pack_weight_amx(q, plan))
    x = te.placeholder(spec.in_shape, "uint8", name="x")
    tens = const_placeholders(names, consts)
    res = residual_input(spec.out_shape, residual, residual_qparams)
    pad_value = tvm.tirx.const(args.act_qparams.zp, "uint8")
    xp = amx.pad_input(x, spec, plan, pad_value) if plan.need_pad else x
    acc = amx.amx_acc(spec, plan, xp, tens["weight"])
    blk = amx.OC_BLOCK

    def out(b, i, j, oc):
        val = acc[b, i // amx.ROW_BLOCK, j // plan.rows, oc // blk, i % amx.ROW_BLOCK,
                  j % plan.rows, oc % blk]
        return layer_output(val, oc, tens, residual_value(res, (b, i, j, oc), residual_qparams),
                            args, 0)

    y = te.compute(spec.out_shape, out, name="out")
    func = layer_prim_func(x, tens, names, res, y)
    func = amx.request_tile_permission(finalize(amx.schedule_amx(func, spec, plan)))
    sched = {"schedule": plan.describe(), "schedule_source": "default"}
    info = kernel_info(args, fmt, "dot", sched, names, consts, residual, plan.need_pad)
    info.update(algorithm="amx", intrin="tdpbusd", weight_format="amx_i8")
    return Kernel(func, consts, "uint8", spec.out_shape, args.out_dtype, info, None)


# uint8 lanes of the narrowest whole vector store (xmm / NEON q register).
UINT8_STORE_LANES = 16


def _winograd_int8_kernel(spec: ConvSpec, args, fmt, wplan, residual: bool,
                          residual_qparams) -> Kernel | None:  # fmt: skip
    """int8 Winograd kernel (F(2, 3) or F(4, 3) in int16 / int32) with the direct kernel's
    interface and epilogue (``corr`` is zero: the input transform already subtracts the zero
    point). A layer whose values could overflow (:func:`winograd_int8.fits`) takes F(2, 3)
    instead of F(4, 3), or else None (direct)."""
    q, s_w = args.scheme.quantize_weight(args.weight, args.int8_qmax)
    tile = wino8.TILES[wplan.m]
    u = wino8.transform_weight(q, wplan.ocb, tile)
    zp = int(args.act_qparams.zp)
    if not wino8.fits(tile, u, q, zp):
        if tile.m == wino8.M:
            return None
        wplan = wino.winograd_plan(spec, args.cpu, (wino8.M,), wino8.arith(args.cpu))
        return _winograd_int8_kernel(spec, args, fmt, wplan, residual, residual_qparams)
    names, consts = layer_constants(args, q, s_w, u)
    consts[names.index("corr")] = np.zeros_like(consts[names.index("corr")])
    folded = None if args.debug_acc else fold_acc_shift(consts[names.index("comb")],
                                                         tile.shift)
    if folded is not None:
        consts[names.index("comb")] = folded
    is_folded = folded is not None
    x = te.placeholder(spec.in_shape, "uint8", name="x")
    tens = const_placeholders(names, consts)
    res = residual_input(spec.out_shape, residual, residual_qparams)

    def epilogue(y, b, i, j, k):
        return layer_output(y, k, tens, residual_value(res, (b, i, j, k), residual_qparams),
                            args, tile.shift, folded_shift=is_folded)

    y = wino8.winograd_int8_compute(spec, tile, wplan.ocb, zp, x, tens["weight"], epilogue)
    func = layer_prim_func(x, tens, names, res, y)
    intrin = wino8.intrin_for(args.cpu)
    gemm = functools.partial(wino8.schedule_gemm, intrin=intrin)
    # uint8 outputs narrow into whole 16-byte stores: two int32 ymm vectors per store on AVX2
    # (ResNet-20's 3x3 layers 1-4 % faster on haswell with the saturating-pack epilogue); a zmm
    # already fills one, and AVX-512 levels keep that (not measured better doubled).
    func = finalize(wino.schedule_winograd(func, spec, wplan, gemm, 2 * args.cpu.lanes,
                                           row_pass=True,
                                           out_lanes=max(args.cpu.lanes, UINT8_STORE_LANES),
                                           in_rows=tile.split_input))
    func, lines = prefetch_next_weight_block(func, args.cpu.caps.l2_bytes, args.cpu.threads)
    sched = {"schedule": wplan.describe(), "schedule_source": "default", "weight_prefetch": lines}
    info = kernel_info(args, fmt, "dot", sched, names, consts, residual, True)
    info.update(algorithm=f"winograd_f{tile.m}", intrin=intrin, weight_format="wino_i16")
    return Kernel(func, consts, "uint8", spec.out_shape, args.out_dtype, info, None)
