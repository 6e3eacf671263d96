"""The speed floor (``BuildConfig.speed_floor``): no layer runs a precision whose modelled
kernel time on the deploy target is above the floor precision's.

The AI objective puts int4 where a layer moves many weight bytes per output position; on
targets where int4 runs on the int8 dot product after a decode (x86, Arm), that is where the
decode costs most, and int4 gains only the weight bytes it does not read from memory. The
kernel library models both (``conv2d_cycles`` / ``dense_cycles``: the plan the builder picks,
including decode-once formats and Winograd), so the rule asks it, per layer, at the build's
batch size: the kernel's compute cycles plus reading its weights once (not overlapped: see
``ConvChoice.cycles_plus_read``), the read timed from the target
(``targets.memory.weight_memory``): from the last-level cache when the model's weights at the
floor precision fit it (repeated inference re-reads them from there), else from memory; a
target whose preset has no cache figures says so in the assumption it reports.

* search: a layer is offered a precision only if its modelled time is at most the floor
  precision's times ``1 + FLOOR_TOLERANCE`` (FP32 stays offered where the candidates hold it:
  it is the search's baseline);
* given plan: layers that break that are moved to the floor precision (its FP32 layers
  stay FP32).

Weight-only precisions (``w8``, ``w4``) on a target where they do not pay
(``targets.defaults.weight_only_verdict``: x86 with 128-bit float vectors, or no paying int8)
are above any floor that is not itself weight-only, whatever the kernel model says: the model
rates their dequantizing too cheap there (MobileNetV2 on ``x86-64``, batch 1: modelled 0.73x
FP32's time on the late 1 x 1 layers, measured 1.34x (w8) / 1.74x (w4) for the whole model;
docs/performance_isa.md, session 16). Such a move carries the reason instead of a cycle
comparison.

Layers the library has no kernel for (fallbacks) are left as they are. Pure bookkeeping over
the cost model's layer shapes; no TIR is built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from .cost import CostModel, LayerCost
from .schemes import PRECISIONS, get_precision

__all__ = ["FLOOR_TOLERANCE", "MEASURED_FLOOR_TOLERANCE", "FloorMove", "describe_floor_memory",
           "floor_choices", "floor_memory", "floor_plan", "layer_cycles", "model_weight_bytes",
           "tolerance"]

# A precision stays within the floor up to 1 % above the floor precision's modelled time.
# Measured per layer (int4 vs int8 kernels of the 224 x 224 plans, one thread, Zen 4;
# docs/performance_224.md, "Speed floor"): the 19 modelled at most 1.0084x int8's time (decode
# amortized over batch 8 or a large map) ran 0.97-1.01x of int8, median 1.00x, so moving them
# would cost AI for no speed; the 17 modelled 1.011x and more ran 0.95-1.04x, median 0.98x.
FLOOR_TOLERANCE = 0.01

# A measured precision stays within the floor up to 5 % above the floor precision's measured
# time: the times are noisier than the model's 1 %. The same builds timed three times
# (skylake-avx512 at batch 16, ResNet-20 and MobileNetV2 at fp32 and int8, one thread), a
# layer's slowest / fastest: 1.002-1.022 in median, 1.022-1.052 at the 90th percentile, at
# most 1.088 (one round of measured_report(repeat=5) per timing); in another run, with the
# floor's rounds (phases.FLOOR_TIMING_ROUNDS), 1.021-1.044, 1.036-1.107, at most 1.254
# (docs/runs/s37/floor_noise_skx16.txt, floor_noise_skx16_min3.txt). Layers within noise of
# their floor gain or lose little either way.
MEASURED_FLOOR_TOLERANCE = 0.05


def tolerance(measured: bool) -> float:
    """How far above the floor precision's time a precision may run (model or measured)."""
    return MEASURED_FLOOR_TOLERANCE if measured else FLOOR_TOLERANCE


@dataclass(frozen=True)
class FloorMove:
    """A layer precision the floor ruled out: ``cycles`` (modelled) above ``floor_cycles``
    (the floor precision's) times ``1 + FLOOR_TOLERANCE``. ``action``: ``"excluded"`` from
    the search's choices, ``"moved"`` (a given plan's layer now runs ``floor``) or, under a
    measured floor whose floored plan ran slower as a whole, ``"kept"`` (at ``precision``)."""

    layer: str
    precision: str
    floor: str
    cycles: float
    floor_cycles: float
    action: str
    reason: str = ""  # set when a rule, not the cycle comparison, rules the precision out
    # True: ``cycles`` / ``floor_cycles`` are measured kernel times in microseconds
    # (``BuildConfig.speed_floor_timing="measured"``), not modelled cycles.
    measured: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        verb = {"moved": "moved to", "excluded": "not offered; floor",
                "kept": "kept: the plan moved to"}[self.action]
        if self.reason:
            return f"{self.layer}: {self.precision} {verb} {self.floor}: {self.reason}"
        # Measured kernels may take well under a microsecond (a small classifier).
        time = (lambda t: f"{t:.2f} us") if self.measured else (lambda t: f"{t / 1e3:.1f} kcycles")
        return (f"{self.layer}: {self.precision} {time(self.cycles)} > "
                f"{self.floor} {time(self.floor_cycles)} x "
                f"{1 + tolerance(self.measured):g} ({self.precision} {verb} {self.floor}"
                + (" ran slower as a whole)" if self.action == "kept" else ")"))


def _conv_spec(lc: LayerCost):
    from .targets.x86 import ConvSpec

    n, c, h, w = lc.in_shape
    o, _, kh, kw = lc.weight_shape
    return ConvSpec(N=n, H=h, W=w, C=c, O=o, KH=kh, KW=kw, stride=lc.strides,
                    padding=lc.padding, groups=lc.groups, dilation=lc.dilation)  # fmt: skip


def byte_stored_int4(cost: CostModel, assignment: Mapping[str, str], target) -> list[str]:
    """The plan's int4 conv layers that ``target`` runs on AMX tiles, their 4-bit codes
    stored a byte each (:func:`aiq_tvm.targets.x86.conv2d.amx_plan_for`)."""
    from .targets.capabilities import capabilities
    from .targets.x86.conv2d import amx_plan_for

    caps = capabilities(target)
    return [lc.name for lc in cost.layers
            if lc.supported and lc.op == "conv2d" and assignment.get(lc.name) == "int4"
            and amx_plan_for(_conv_spec(lc), "int4", caps) is not None]


def layer_cycles(lc: LayerCost, precision: str, target, read=None) -> float | None:
    """Modelled cycles of ``lc``'s kernel at ``precision`` on ``target`` (its batch is the cost
    model's), or None for a layer without an AIQ kernel. ``read`` (``nbytes -> cycles``)
    times the weight read (:func:`floor_memory`; default: the builders' selection term)."""
    from .targets.x86 import DenseSpec, UnsupportedLayer, conv2d_cycles, dense_cycles

    if not lc.supported:
        return None
    try:
        if lc.op == "dense":
            if len(lc.in_shape) != 2:
                return None
            n, k = lc.in_shape
            return dense_cycles(DenseSpec(N=n, K=k, O=lc.out_channels), precision, target,
                                read=read)  # fmt: skip
        return conv2d_cycles(_conv_spec(lc), precision, target, read=read)
    except UnsupportedLayer:
        return None


def model_weight_bytes(cost: CostModel, precision: str) -> float:
    """Bytes of the model's weights with every layer that has a kernel at ``precision``."""
    per = get_precision(precision).weight_bytes
    return sum(lc.weight_elems * per for lc in (cost[n] for n in cost.names) if lc.supported)


def floor_memory(cost: CostModel, floor: str, target, preset=None):
    """(``WeightMemory`` of ``target``, its ``nbytes -> cycles`` reader for this model): the
    model with every layer at the floor precision decides whether the weights stay in the
    last-level cache (a plan with smaller weights can only fit better)."""
    from .targets.memory import weight_memory

    mem = weight_memory(target, preset)
    return mem, mem.reader(model_weight_bytes(cost, floor))


def describe_floor_memory(cost: CostModel, floor: str, target, preset=None) -> str:
    """One report note: where the floor's weight reads come from and what that assumed."""
    mem, _ = floor_memory(cost, floor, target, preset)
    nbytes = model_weight_bytes(cost, floor)
    where = "the last-level cache" if mem.resident(nbytes) else "memory"
    return (f"speed floor weight reads: {nbytes / 2**20:.1f} MiB of {floor} weights read from "
            f"{where} at {mem.bytes_per_cycle(nbytes):.1f} B/cycle ({mem.preset}"
            + "".join(f"; assumed: {a}" for a in mem.assumed) + ")")


def _is_weight_only(precision: str) -> bool:
    scheme = get_precision(precision)
    return scheme.quantizes_weights and not scheme.quantizes_activations


def _new_cache(cost: CostModel, floor: str, target, preset, times=None) -> dict:
    """Per-call state of :func:`_violation`: the weight-read term, the target's weight-only
    verdict and the layer cycles computed so far (``times``: measured kernel times instead,
    ``{layer: {precision: us}}``; a layer or precision it lacks is left as it is)."""
    from .targets import capabilities
    from .targets.defaults import int8_pays, weight_only_verdict

    caps = capabilities(target)
    # Weight-only kernels lose to FP32 there, so also to a floor that beats FP32: FP32
    # itself, or an integer floor where int8 pays. (Against a slow integer floor the cycle
    # model decides.)
    rule = not _is_weight_only(floor) and (floor == "fp32" or int8_pays(caps, preset)[0])
    pays, why = weight_only_verdict(caps, preset)
    if times is None:
        return {"read": floor_memory(cost, floor, target, preset)[1],
                "weight_only_slower": "" if pays or not rule else why, "measured": False}
    # Measured: the times decide, weight-only kernels included (the rule stands in for them).
    cache = {"read": None, "weight_only_slower": "", "measured": True}
    cache.update({(name, p): times.get(name, {}).get(p) for name in cost.names
                  for p in PRECISIONS})
    return cache


def _violation(lc: LayerCost, precision: str, floor: str, target, action: str,
               cache: dict) -> FloorMove | None:  # fmt: skip
    """The move if ``precision`` is slower than ``floor`` beyond the tolerance, else None
    (``cache``: from :func:`_new_cache`)."""
    if precision == floor:
        return None
    for p in (precision, floor):
        if (lc.name, p) not in cache:
            cache[lc.name, p] = layer_cycles(lc, p, target, cache["read"])
    cyc, ref = cache[lc.name, precision], cache[lc.name, floor]
    if cyc is None or ref is None:
        return None  # no AIQ kernel: left as it is
    why = cache["weight_only_slower"]
    if why and _is_weight_only(precision):
        return FloorMove(lc.name, precision, floor, cyc, ref, action, reason=why)
    if cyc <= ref * (1 + tolerance(cache["measured"])):
        return None
    return FloorMove(lc.name, precision, floor, cyc, ref, action, measured=cache["measured"])


def floor_choices(choices: Mapping[str, Sequence[str]], cost: CostModel, floor: str,
                  target, preset=None, times=None
                  ) -> tuple[dict[str, list[str]], list[FloorMove]]:  # fmt: skip
    """The search's per-layer choices without the precisions slower than ``floor`` (FP32,
    the search's baseline, stays), and what was left out (``preset``: the target's, for the
    weight-read term; default: the one selected for it; ``times``: measured kernel times,
    ``{layer: {precision: us}}``, instead of the model)."""
    cache = _new_cache(cost, floor, target, preset, times)
    out, moves = {}, []
    for name, cands in choices.items():
        keep = []
        for p in cands:
            move = None if p == "fp32" else _violation(cost[name], p, floor, target,
                                                       "excluded", cache)  # fmt: skip
            if move is None:
                keep.append(p)
            else:
                moves.append(move)
        out[name] = keep
    return out, moves


def floor_plan(assignment: Mapping[str, str], cost: CostModel, floor: str,
               target, preset=None, times=None
               ) -> tuple[dict[str, str], list[FloorMove]]:  # fmt: skip
    """A given plan's assignment with the layers slower than ``floor`` moved to it
    (``times``: as :func:`floor_choices`)."""
    cache = _new_cache(cost, floor, target, preset, times)
    out, moves = dict(assignment), []
    for name, p in assignment.items():
        if p == "fp32":
            continue  # a plan's FP32 layers stay (accuracy, as the search's baseline does)
        move = _violation(cost[name], p, floor, target, "moved", cache)
        if move is not None:
            out[name] = floor
            moves.append(move)
    return out, moves
