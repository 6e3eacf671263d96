"""FP32 Winograd conv2d F(m x m, 3 x 3) for 3x3, stride-1, dilation-1, groups-1 NHWC layers.

Fewer multiplies than the direct kernel (which already runs at the FMA peak): an output tile
of m x m needs (m + 2)^2 products per channel pair instead of 9 m^2 (2.25x fewer for m = 2,
4x for m = 4). One kernel, same interface as the direct one (``(x, weight, bias,
[residual], y)``), with four blocks computed per (image, row of tiles) in the parallel loop:

* ``pad``: zero-padded input rows of the tile row (tiles cover ``ceil(OH / m) * m`` rows);
* ``wino_in``: input transform ``V = B^T d B`` of every tile (constant coefficients; the
  unrolled loops fold the zeros and ones away);
* ``acc``: (m + 2)^2 independent GEMMs ``M[e, u] = V[e, u] (tiles x C) @ U[e, u] (C x K)``,
  register-blocked as the direct kernel's broadcast-FMA blocks (tiles x channel vectors);
* ``out``: output transform ``Y = A^T M A`` with the fused epilogue (bias, residual,
  activation).

``U = G w G^T`` is computed on the host in float64 (``weight`` holds it, ``[e, u, K/ocb, C,
ocb]``). The tile planner (``winograd_plan``) and the cost it models
(``winograd_cost``) are compared with the direct kernel's in ``conv2d.conv2d_kernel``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import tvm
from tvm import s_tir, te

from .common import ConvSpec, round_up
from .schedules import (
    ASSUMED_L2_BYTES,
    STACK_ACC_BYTES,
    balance,
    divisors,
    optional_block,
    step_cycles,
    write_bits,
)

# Cook-Toom matrices (Lavin & Gray 2015): B^T [a x a], G [a x 3], A^T [m x a], a = m + 2.
_MATRICES = {
    2: (
        [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]],
    ),
    4: (
        [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
         [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
        [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
         [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    ),
}  # fmt: skip
TILE_SIZES = tuple(_MATRICES)


def matrices(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(B^T, G, A^T)`` of F(m, 3) in float64."""
    return tuple(np.array(a, dtype=np.float64) for a in _MATRICES[m])


def applies(spec: ConvSpec) -> bool:
    """The layers the Winograd kernel computes: 3x3, stride 1, dilation 1, groups 1."""
    return (
        spec.KH == spec.KW == 3 and spec.stride == (1, 1) and spec.dilation == (1, 1)
        and spec.groups == 1
    )  # fmt: skip


def dilation_phases(spec: ConvSpec) -> ConvSpec | None:
    """The conv each dilation phase of ``spec`` runs, or None where ``spec`` does not split.

    A 3x3 stride-1 conv with dilation ``d`` on both axes reads, for an output pixel ``(i, j)``,
    only inputs whose row and column are ``i`` and ``j`` modulo ``d``. Where the map sizes and
    paddings are multiples of ``d``, it is ``d * d`` independent dilation-1 convs, one per
    (row, column) residue, each over the ``H / d x W / d`` pixels of its residue class with
    padding ``p / d``: the Winograd kernel runs them as ``N * d * d`` images (DeepLabV3's and
    FCN's dilated ResNet stages, dilation 2 and 4 on 28 x 28 maps at 224)."""
    dh, dw = spec.dilation
    if not (spec.KH == spec.KW == 3 and spec.stride == (1, 1) and spec.groups == 1
            and dh == dw > 1):
        return None
    d = dh
    if spec.H % d or spec.W % d or any(p % d for p in spec.padding):
        return None
    return replace(spec, N=spec.N * d * d, H=spec.H // d, W=spec.W // d,
                   padding=tuple(p // d for p in spec.padding), dilation=(1, 1))


@dataclass(frozen=True)
class WinoPlan:
    """Tile size, task shape and register block of one Winograd kernel.

    A parallel task transforms ``rows`` rows of tiles of one image and multiplies them by
    ``kgroup`` output channels of ``U`` (the input transform is repeated per channel group:
    groups let layers with few tiles and large weights use both cores and read ``U`` once).
    """

    m: int  # output tile edge
    tiles: int  # tiles per register block (divides the tiles of a row)
    ocv: int  # channel vectors per register block
    lanes: int
    rows: int  # tile rows per task (divides the tile rows)
    kgroup: int  # output channels per task (a multiple of ocb dividing the padded channels)
    cost: float  # modelled cycles (per thread)
    compute: float = 0.0  # of which the tasks' cycles (cost without the weight-read bound)
    weight_bytes: float = 0.0  # U in memory
    reread: float = 0.0  # cycles of the passes over U after the first (winograd_parts)

    def cycles_plus_read(self, read) -> float:
        """The tasks' cycles (or U's further passes, where longer) plus reading U once, timed
        by ``read`` (``nbytes -> cycles``): the speed floor's model, weight reads not
        overlapped with compute."""
        return max(self.compute, self.reread) + read(self.weight_bytes)

    @property
    def alpha(self) -> int:
        return self.m + 2

    @property
    def ocb(self) -> int:
        return self.ocv * self.lanes

    def describe(self) -> str:
        return (f"nhwc_winograd_f{self.m}_oc{self.ocb}_tile{self.tiles}_rows{self.rows}"
                f"_k{self.kgroup}")


def _nonzeros(mat: np.ndarray) -> int:
    return int(np.count_nonzero(mat))


# Cycles per (non-zero coefficient x channel vector) of the transforms: a load and an add or
# FMA each, from cache.
TRANSFORM_CYCLES = 0.5
# U streamed from L3/memory: about 10 bytes per cycle and core, measured on the AVX2 host
# with layers whose transformed weights (4-9 MB) exceed the caches (7x7x512, 14x14x256).
WEIGHT_STREAM_BYTES_PER_CYCLE = 10.0
# Share of a core's L2 its part of U may fill and stay there across passes (the rest holds a
# task's V and M and the input rows). Until session 38 a fixed 256 KiB: ResNet-20's int8
# F(4, 3) 64 -> 64 at 8 x 8 (U 288 KiB) was then priced rereading U for every image and put
# level with F(2, 3), and ran 1.47x faster than it at batch 16 on skylake-avx512 code (2 MiB
# of L2; docs/runs/s38/wino_tiles_skx16.txt). On the fp32 cold-cache set of session 31
# (docs/runs/s31/wino_fit.py) every threshold from 64 KiB to 768 KiB picks the same kernels
# and 1 MiB loses 0.009 ms less (docs/runs/s38/wino_fit_cached.txt).
CACHED_L2_SHARE = 0.5


def cached_weight_bytes(cpu) -> float:
    """Largest part of U per core that stays in its L2 across passes (``cpu.caps.l2_bytes``;
    an unknown L2 is sized as ``schedules.ASSUMED_L2_BYTES``)."""
    return CACHED_L2_SHARE * (cpu.caps.l2_bytes or ASSUMED_L2_BYTES)


def winograd_cost(spec: ConvSpec, m: int, tiles: int, ocv: int, rows: int, kgroup: int,
                  cpu, arith: WinoArith | None = None) -> float:
    """Modelled cycles per thread of F(m, 3) (see :func:`winograd_parts`), bounded below by
    reading U once (:func:`weight_read_cycles`) and then again in each further pass."""
    return _bounded_wino(*winograd_parts(spec, m, tiles, ocv, rows, kgroup, cpu, arith))


def _bounded_wino(compute: float, u_bytes: float, reread: float = 0.0) -> float:
    # Where the weight reads bound the layer, the faster compute plan still wins the tie.
    return max(compute, weight_read_cycles(u_bytes) + reread) + 1e-3 * compute


def winograd_parts(spec: ConvSpec, m: int, tiles: int, ocv: int, rows: int, kgroup: int,
                   cpu, arith: WinoArith | None = None) -> tuple[float, float, float]:
    """(cycles per thread, bytes of U, cycles of U's further passes) of F(m, 3) with a
    ``tiles x ocv`` register block and tasks of ``rows`` tile rows x ``kgroup`` output
    channels.

    Per task: the GEMM steps as the direct kernel's (``step_cycles``), the transforms
    (:func:`transform_ops` per input / output channel vector, ``TRANSFORM_CYCLES`` each), the
    padded rows.

    U: the tasks of one group of tile rows (one *pass*, over every channel group) read all of
    U between them, so a layer reads it ``N x tile rows / rows`` times. Where a core's part of
    U (its slices of all the channel groups it runs: between two reads of one slice it reads
    the others, however small each is) exceeds :func:`cached_weight_bytes` the passes after the
    first stream it again from beyond L2 at ``WEIGHT_STREAM_BYTES_PER_CYCLE`` per core; the
    first read comes from memory (:func:`_bounded_wino`). Until session 31 each task's slice
    was priced at the stream rate inside the task and overlapped with its compute: plans of
    one tile row and a few channels per task looked as cheap as those that read U a few
    times, and ran 1.4-2.2x slower on wide layers in a cold cache (3x3 512 -> 512 at
    28 x 28, 2048 -> 512 at 28 x 28; fit on 22 layers: docs/runs/s31/wino_fit.txt).
    """
    ar = arith or FP32_ARITH
    lanes, tp, threads = cpu.lanes, cpu.throughput, cpu.threads
    a = m + 2
    n_h, n_w = -(-spec.OH // m), -(-spec.OW // m)
    kp = round_up(spec.O, lanes * ocv)
    step = step_cycles(tiles, ocv, ar.step_fmt, ar.mode, tp)
    tiles_task = rows * n_w
    steps = -(-spec.C // ar.step_fmt.group)
    gemm = a * a * (tiles_task // tiles) * (kgroup // (lanes * ocv)) * steps * step
    # Transformed inputs hold 4 / in_bytes values per 32-bit lane.
    cv_in, cv_out = -(-spec.C * ar.in_bytes // (4 * lanes)), kgroup // lanes
    ops_in, ops_out = transform_ops(m, ar, cpu)
    t_in = ops_in * cv_in * tiles_task * TRANSFORM_CYCLES
    t_out = ops_out * cv_out * tiles_task * TRANSFORM_CYCLES
    pad_line = 1 + -(-spec.C * ar.in_bytes // 64)
    pad = (rows * m + 2) * (n_w * m + 2) * pad_line * tp.pad_pixel_cycles
    epi = rows * m * spec.OW * cv_out * tp.epi_cycles
    tasks = spec.N * (n_h // rows) * (kp // kgroup)
    compute = tasks * (gemm + t_in + t_out + pad + epi) / threads / balance(tasks, threads)
    u_bytes = a * a * spec.C * kp * ar.weight_bytes
    reread = 0.0
    # A core's U between two reads of one slice: its slices of every channel group it runs.
    if u_bytes / min(threads, kp // kgroup) > cached_weight_bytes(cpu):
        passes = spec.N * (n_h // rows)
        reread = (passes - 1) * u_bytes / (WEIGHT_STREAM_BYTES_PER_CYCLE * threads)
    return compute, u_bytes, reread


# In a whole network a layer's weights come from memory on every inference (ResNet-50's do
# not fit in the last-level cache). U holds (m + 2)^2 / 9 times the direct kernel's weight
# bytes (4x for F(4, 3)), which decides weight-heavy layers at batch 1. Half the roofline
# preset's 19.7 GB/s at ~3.5 GHz: with the full figure (5.6 B/cycle) Winograd made ResNet-50
# at batch 1 slower than the direct kernels in whole-model runs on the shared 2-core host
# (scripts/bench_models.py); with half of it the 7x7x512 layers stay direct and 14x14x256
# take F(2, 3).
MEMORY_BYTES_PER_CYCLE = 2.8


def weight_read_cycles(nbytes: int) -> float:
    """Cycles to read a layer's weights from memory once, as the Winograd-vs-direct choice
    weighs it (a calibrated selection term; the speed floor's, from the target, is
    ``targets.memory``)."""
    return nbytes / MEMORY_BYTES_PER_CYCLE


def bounded_cycles(plan_cycles: float, weight_bytes: float) -> float:
    """A direct (conv or dense) kernel's modelled cycles: its plan's, or reading its weights
    once from memory where that takes longer (the same bound Winograd is weighed with; it is
    what int4 weights halve)."""
    return max(plan_cycles, weight_read_cycles(weight_bytes))


@dataclass(frozen=True)
class StepFmt:
    """The GEMM step of ``step_cycles`` (the fields it reads of a ``WeightFormat``)."""

    dot_ops: float
    group: int
    acc_latency: float
    unpack_ops: float = 0.0
    bcast_ops: float = 0.0
    weight_loads: int = 1


@dataclass(frozen=True)
class WinoArith:
    """Arithmetic of a Winograd kernel as the cost model sees it.

    ``step_fmt`` and ``mode`` give one GEMM step (``group`` input channels per step),
    ``in_bytes`` / ``weight_bytes`` the size of a transformed input / weight element.
    ``split_input`` (tile edges ``m``) / ``split_output``: the kernel computes that transform
    in two passes, rows then columns (:func:`transform_ops`); ``odd_multiply`` (tile edges):
    its output transform ends with an int32 multiply per output vector.
    """

    step_fmt: StepFmt
    mode: str
    in_bytes: int
    weight_bytes: int
    # Register blocks whose accumulators reach this many bytes are not considered (None: no
    # limit): TVM allocates such a block's buffer on the heap instead of the stack.
    max_block_bytes: int | None = None
    split_input: tuple[int, ...] = ()
    split_output: bool = False
    odd_multiply: tuple[int, ...] = ()


# Vector ops of an int32 multiply without SSE4.1's pmulld: LLVM builds it from two pmuludq and
# the shuffles that pair and merge their halves (the x86-64 baseline level).
EMULATED_MULLD_OPS = 6


def transform_ops(m: int, arith: WinoArith, cpu=None) -> tuple[int, int]:
    """Vector ops per tile and channel vector of the input and the output transform: one per
    non-zero coefficient of the Kronecker product (``B^T x B^T``, ``A^T x A^T``) in one pass;
    in two passes (rows, then columns) one per non-zero of ``B^T`` per column of the tile, and
    of ``A^T`` per column of the tile and then per output row. Until session 38 the model
    priced the int16 kernel's two-pass transforms as one pass (F(4, 3): 484 input and 324
    output ops instead of 264 and 180) and put ResNet-20's 16- and 32-channel int8 F(4, 3)
    layers on skylake-avx512 0.98x / 1.18x as fast as FP32 (docs/runs/s38/
    wino_parts_skx16_before.txt) where they ran 1.74x / 1.54x faster (wino_skx16.txt).
    The multiply of ``odd_multiply`` tiles adds one op per output pixel (on a ``cpu`` without
    ``sse4.1``: ``EMULATED_MULLD_OPS``; there ResNet-20's int8 stem ran F(4, 3) 1.15x slower
    than F(2, 3) at batch 16: docs/runs/s38/wino_tiles_stem_x86-64_b16.txt)."""
    bt, _, at = matrices(m)
    a = m + 2
    t_in = a * 2 * _nonzeros(bt) if m in arith.split_input else _nonzeros(bt) ** 2
    t_out = (a + m) * _nonzeros(at) if arith.split_output else _nonzeros(at) ** 2
    if m in arith.odd_multiply:
        pmulld = cpu is None or "sse4.1" in cpu.caps.features
        t_out += m * m * (1 if pmulld else EMULATED_MULLD_OPS)
    return t_in, t_out


# fp32: one broadcast FMA per channel and accumulator vector.
FP32_ARITH = WinoArith(StepFmt(1.0, 1, 4.0), "bcast", 4, 4)
# Per-task buffers (V and M) above this spill out of L2; such task shapes are not considered.
MAX_TASK_BUFFER_BYTES = 1 << 20


def winograd_plans(spec: ConvSpec, cpu, tile_sizes=TILE_SIZES,
                   arith: WinoArith | None = None) -> Iterator[WinoPlan]:  # fmt: skip
    """Every (tile edge, task shape, register block) the planner weighs for ``spec`` on
    ``cpu`` (``arith``: the kernel's arithmetic, fp32 by default), with its modelled cost."""
    ar = arith or FP32_ARITH
    for m in tile_sizes:
        n_h, n_w = -(-spec.OH // m), -(-spec.OW // m)
        for t, ocv in _register_blocks(n_w, cpu, ar.mode):
            if ar.max_block_bytes and t * ocv * cpu.lanes * 4 >= ar.max_block_bytes:
                continue
            ocb = cpu.lanes * ocv
            kp = round_up(spec.O, ocb)
            for rows in divisors(n_h):
                for kg in (d * ocb for d in divisors(kp // ocb)):
                    buf = (m + 2) ** 2 * rows * n_w * (spec.C * ar.in_bytes + kg * 4)
                    if buf > MAX_TASK_BUFFER_BYTES and rows > 1:
                        continue
                    parts = winograd_parts(spec, m, t, ocv, rows, kg, cpu, ar)
                    yield WinoPlan(m, t, ocv, cpu.lanes, rows, kg, _bounded_wino(*parts), *parts)


def winograd_plan(spec: ConvSpec, cpu, tile_sizes=TILE_SIZES,
                  arith: WinoArith | None = None) -> WinoPlan | None:  # fmt: skip
    """Cheapest of :func:`winograd_plans` (the first of equal costs; None if there is none)."""
    return min(winograd_plans(spec, cpu, tile_sizes, arith), key=lambda p: p.cost,
               default=None)


def _register_blocks(n_w: int, cpu, mode: str = "bcast"):
    for t in divisors(n_w):
        for ocv in (1, 2, 3, 4):
            if t * ocv <= cpu.max_acc(mode, ocv, 1):
                yield t, ocv


def transform_weight(weight_oihw: np.ndarray, m: int, ocb: int) -> np.ndarray:
    """``U = G w G^T`` as ``[a, a, K/ocb, C, ocb]`` float32 (output channels zero-padded)."""
    _, g, _ = matrices(m)
    o, c = weight_oihw.shape[:2]
    u = np.einsum("ei,ocij,uj->euco", g, weight_oihw.astype(np.float64), g)
    kp = round_up(o, ocb)
    full = np.zeros((*u.shape[:3], kp), np.float64)
    full[..., :o] = u
    a = m + 2
    blk = full.reshape(a, a, c, kp // ocb, ocb).transpose(0, 1, 3, 2, 4)
    return np.ascontiguousarray(blk.astype(np.float32))


def _coef(mat: np.ndarray, row, col: int):
    """``mat[row, col]`` for a loop variable ``row`` (folded once ``row`` is unrolled)."""
    val = tvm.tirx.const(0.0, "float32")
    for r in range(mat.shape[0]):
        if mat[r, col] != 0:
            val = tvm.tirx.Select(row == r, tvm.tirx.const(float(mat[r, col]), "float32"), val)
    return val


def winograd_compute(spec: ConvSpec, plan: WinoPlan, x, wt, epilogue, layer=None):
    """TE blocks ``pad``, ``wino_in``, ``acc`` and ``out``; ``epilogue(acc_value, b, i, j, k)``
    gives the stored value. ``layer``: the dilated layer whose phases ``spec`` is
    (:func:`dilation_phases`; ``x`` has the layer's shape): ``out`` is then the phases'
    result and a last block, ``unphase``, puts each pixel back and applies the epilogue."""
    m, a = plan.m, plan.alpha
    bt, _, at = matrices(m)
    n, h, w, c = spec.in_shape
    pt, pl = spec.padding[0], spec.padding[1]
    n_h, n_w = -(-spec.OH // m), -(-spec.OW // m)
    kp = round_up(spec.O, plan.ocb)
    hq, wq = n_h * m + 2, n_w * m + 2
    d = layer.dilation[0] if layer is not None else 1

    def pad_body(b, i, j, k):
        conds = [i >= pt, i < pt + h, j >= pl, j < pl + w]
        # phase image b: image b // d**2, rows and columns b // d % d and b % d modulo d
        val = x[b // (d * d), b // d % d + d * (i - pt), b % d + d * (j - pl), k] if d > 1 \
            else x[b, i - pt, j - pl, k]
        return tvm.tirx.if_then_else(tvm.tirx.all(*conds), val, tvm.tirx.const(0.0, "float32"))

    xp = te.compute((n, hq, wq, c), pad_body, name="pad")

    def in_body(b, th, e, u, tw, k):
        total = tvm.tirx.const(0.0, "float32")
        for i in range(a):
            for j in range(a):
                coef = _coef(bt, e, i) * _coef(bt, u, j)
                total = total + coef * xp[b, th * m + i, tw * m + j, k]
        return total

    v = te.compute((n, n_h, a, a, n_w, c), in_body, name="wino_in")
    rc = te.reduce_axis((0, c), "rc")
    ocb = plan.ocb
    acc = te.compute(
        (n, n_h, a, a, n_w, kp),
        lambda b, th, e, u, tw, k: te.sum(
            v[b, th, e, u, tw, rc] * wt[e, u, k // ocb, rc, k % ocb], axis=rc
        ),
        name="acc",
    )

    def out_body(b, i, j, k):
        total = tvm.tirx.const(0.0, "float32")
        for e in range(a):
            for u in range(a):
                coef = _coef(at, i % m, e) * _coef(at, j % m, u)
                total = total + coef * acc[b, i // m, e, u, j // m, k]
        return total if d > 1 else epilogue(total, b, i, j, k)

    y = te.compute(spec.out_shape, out_body, name="out")
    if d == 1:
        return y
    return te.compute(layer.out_shape, lambda b, i, j, k: epilogue(
        y[b * d * d + i % d * d + j % d, i // d, j // d, k], b, i, j, k), name="unphase")


def _vector_width(extent: int, lanes: int) -> int:
    return min(lanes, extent & -extent)


def schedule_winograd(func, spec: ConvSpec, plan: WinoPlan, gemm=None, in_lanes=None,
                      row_pass: bool = False, out_lanes=None, in_rows: bool = False):
    """Parallel over (image, group of tile rows, group of output channels); transforms and
    GEMM per task (see module doc). ``gemm(sch, acc, plan)`` schedules the GEMM block (default:
    fp32 broadcast FMAs); ``in_lanes`` / ``out_lanes`` are the input / output transform's
    vector widths (default ``plan.lanes``); ``row_pass``: the output transform has a separate
    row pass, block ``wino_out`` (``A^T M``), computed per output tile and channel vector;
    ``in_rows``: the input transform has a separate row pass, block ``wino_in_rows``
    (``B^T d``), computed per tile and channel vector (either row pass per row of the tile
    where a whole tile's would not fit on the stack, see ``_schedule_row_pass``)."""
    sch = s_tir.Schedule(func)
    m, lanes = plan.m, plan.lanes
    out, acc = sch.get_sblock("out"), sch.get_sblock("acc")
    v, pad = sch.get_sblock("wino_in"), sch.get_sblock("pad")
    b, i, j, k = sch.get_loops(out)
    th, mi = sch.split(i, [None, m])
    tho, thi = sch.split(th, [None, plan.rows])
    tw, mj = sch.split(j, [None, m])
    kgo, kgi = sch.split(k, [None, plan.kgroup])
    # Within a task's channel group: a 16-lane uint8 store over 8-channel groups (4-lane
    # int32 targets) would split the group unevenly and break the GEMM's tensorize.
    kw = _vector_width(math.gcd(spec.O, plan.kgroup), out_lanes or lanes)
    ko, ki = sch.split(kgi, [None, kw])
    sch.reorder(b, tho, kgo, thi, tw, ko, mi, mj, ki)
    task = sch.fuse(b, tho, kgo)
    sch.vectorize(ki)
    sch.unroll(mi)
    sch.unroll(mj)
    if row_pass:
        rows = sch.get_sblock("wino_out")
        on_stack = m * plan.alpha * kw * _elem_bytes(sch, rows) < STACK_ACC_BYTES
        _schedule_row_pass(sch, rows, ko if on_stack else mi, kw)
    sch.compute_at(acc, task, preserve_unit_loops=True)
    sch.compute_at(v, task, preserve_unit_loops=True)
    if in_rows:  # the pad's consumer (moved under the input transform's loops below)
        sch.compute_at(sch.get_sblock("wino_in_rows"), task, preserve_unit_loops=True)
    sch.compute_at(pad, task, preserve_unit_loops=True)
    sch.parallel(task)
    (gemm or _schedule_gemm)(sch, acc, plan)
    co, e = _schedule_input_transform(sch, v, int(sch.get(v).iter_vars[-1].dom.extent),
                                      in_lanes or lanes)  # fmt: skip
    if in_rows:
        rows = sch.get_sblock("wino_in_rows")
        cw = _vector_width(int(sch.get(v).iter_vars[-1].dom.extent), in_lanes or lanes)
        on_stack = plan.alpha**2 * cw * _elem_bytes(sch, rows) < STACK_ACC_BYTES
        _schedule_row_pass(sch, rows, co if on_stack else e, cw)
    p_loops = sch.get_loops(pad)
    sch.vectorize(p_loops[-1])
    _schedule_unphase(sch, lanes)
    return sch.mod["main"]


def _schedule_unphase(sch, lanes: int) -> None:
    """The dilated layer's last pass (``unphase``, if any): parallel over output rows, one
    channel vector at a time."""
    block = optional_block(sch, "unphase")
    if block is None:
        return
    b, i, j, k = sch.get_loops(block)
    _, ki = sch.split(k, [None, _vector_width(int(sch.get(block).iter_vars[-1].dom.extent),
                                              lanes)])
    sch.vectorize(ki)
    sch.parallel(sch.fuse(b, i))


def _elem_bytes(sch, block) -> int:
    return write_bits(sch, block) // 8


def _schedule_row_pass(sch, rows, loop, lanes: int) -> None:
    """A transform's row pass of one tile and channel vector (or of one row of it, ``loop``
    inside the tile: the rows of a whole tile at or above STACK_ACC_BYTES would be a heap
    buffer, which LLVM does not keep in registers), unrolled, vectorized like its consumer,
    right before the column pass reads it."""
    sch.compute_at(rows, loop, preserve_unit_loops=True)
    mi, u, tw, k = sch.get_loops(rows)[-4:]
    ko, ki = sch.split(k, [None, lanes])
    sch.vectorize(ki)
    sch.unroll(u)
    sch.unroll(mi)


def _schedule_input_transform(sch, v, channels: int, lanes: int):
    th, e, u, tw, c = sch.get_loops(v)[-5:]
    cw = _vector_width(channels, lanes)
    co, ci = sch.split(c, [None, cw])
    sch.reorder(th, tw, co, e, u, ci)
    sch.vectorize(ci)
    sch.unroll(e)
    sch.unroll(u)
    return co, e


def _schedule_gemm(sch, acc, plan: WinoPlan):
    th, e, u, tw, k, rc = sch.get_loops(acc)[-6:]
    two, twi = sch.split(tw, [None, plan.tiles])
    ko, kv, kl = sch.split(k, [None, plan.ocv, plan.lanes])
    # A U block (C x ocb) is reused by every tile of the task before the next one is read.
    sch.reorder(e, u, ko, th, two, rc, twi, kv, kl)
    register_block_copy_out(sch, acc, two, plan.lanes)
    reg = sch.fuse(twi, kv)
    sch.vectorize(kl)
    sch.unroll(reg)
    vectorized_init(sch, acc, rc)


def register_block_copy_out(sch, acc, block_loop, lanes: int) -> None:
    """Accumulators in a small stack buffer (promoted to registers), copied out once per
    register block (``block_loop``) in vectors of ``lanes``, the width the GEMM updates them
    in. A copy vectorized over a whole block of 3 channel vectors (48 lanes) made LLVM keep
    the accumulators as scalars, inserted into and extracted from vectors at every step: F(4, 3)
    with 3 tiles x 48 channels at 35 x 35 x 96 ran 8.4x slower (2.633 ms against 0.313 ms,
    docs/runs/s31/copyout.txt)."""
    copy = sch.cache_write(acc, 0, "global")
    sch.reverse_compute_at(copy, block_loop, preserve_unit_loops=True)
    tiles, channels = sch.get_loops(copy)[-2:]
    vectors, lane = sch.split(channels, [None, lanes])
    sch.vectorize(lane)
    sch.unroll(vectors)
    sch.unroll(tiles)


def vectorized_init(sch, acc, reduction_loop) -> None:
    """The accumulators' zero-initialization split off above ``reduction_loop``, vectorized."""
    init = sch.decompose_reduction(acc, reduction_loop)
    i_loops = sch.get_loops(init)[-2:]
    sch.vectorize(i_loops[-1])
    sch.unroll(i_loops[-2])

# Winograd replaces the direct kernel when its modelled cost times this margin is lower.
SELECT_MARGIN = 1.0
