"""Where a model's weights come from on each inference, and how fast: the weight-read term of
the speed floor's modelled kernel times (``aiq_tvm.floor``: compute plus this read), from the
target's preset.

With repeated inference a model whose weights fit the last-level cache (LLC) reads them from
it, not from memory; a larger one streams them from memory every time. The rates are for all
of the target's cores, in the cost model's cycles (the unit of ``conv2d_cycles``): the
preset's FP32 peak over the FP32 FLOPs the model issues per cycle (``Throughput``), so the
memory term and the compute term are counted with the same clock.

* memory: the preset's ``bandwidth_gbs`` (already scaled to the target's cores);
* LLC: ``extra["llc_bytes"]`` and ``extra["llc_copy_gbs_per_core"]`` of a preset the roofline
  probe measured them for (``python -m aiq_tvm.targets.roofline --cache``); each core fills
  its own caches from the LLC, so that rate is multiplied by the cores. Where the probe also
  read ``extra["llc_usable_bytes"]`` (``targets.llc``: a virtual machine's share of a host's
  LLC), that smaller size is the LLC. A preset without them is modelled as if no cache held
  the weights, and says so in ``assumed``.

The Winograd-vs-direct choice of the builders keeps its own calibrated term
(``x86.winograd.MEMORY_BYTES_PER_CYCLE``). The x86 planner takes one figure from here: a
thread's share of the memory bandwidth, with which it weighs the weights each thread of a
batch-1 fp32 direct plan reads first (``x86.conv2d._first_read_cycles``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["WeightMemory", "weight_memory"]


@dataclass(frozen=True)
class WeightMemory:
    """Weight-read rates of one target (bytes per cost-model cycle, all cores).

    ``llc_bytes`` 0 means no cache is modelled (every read from memory). ``notes`` say where
    each figure came from; ``assumed`` what was taken for granted (the preset's assumptions
    and any missing cache figures).
    """

    memory_bytes_per_cycle: float
    llc_bytes: int
    llc_bytes_per_cycle: float
    cycles_per_second: float
    preset: str
    notes: tuple = ()
    assumed: tuple = ()
    llc_usable: bool = False  # llc_bytes is the probe's usable share, not the listed LLC

    def resident(self, model_weight_bytes: float) -> bool:
        """Whether weights of this total size stay in the LLC across inferences."""
        return 0 < model_weight_bytes <= self.llc_bytes

    def bytes_per_cycle(self, model_weight_bytes: float) -> float:
        """Read rate of a model whose weights total ``model_weight_bytes``."""
        if self.resident(model_weight_bytes):
            return self.llc_bytes_per_cycle
        return self.memory_bytes_per_cycle

    def reader(self, model_weight_bytes: float) -> Callable[[float], float]:
        """``nbytes -> cycles`` to read one layer's weights, for a model of that size."""
        rate = self.bytes_per_cycle(model_weight_bytes)
        return lambda nbytes: nbytes / rate

    def describe(self) -> str:
        llc = (f"LLC {self.llc_bytes / 2**20:g} MiB at {self.llc_bytes_per_cycle:.1f} B/cycle"
               if self.llc_bytes else "no LLC modelled")
        lines = [f"weights from memory at {self.memory_bytes_per_cycle:.2f} B/cycle, {llc} "
                 f"(cycles of {self.cycles_per_second / 1e9:.2f} GHz; preset {self.preset})"]
        lines += [f"  {n}" for n in self.notes]
        lines += [f"  assumed: {a}" for a in self.assumed]
        return "\n".join(lines)


def _model_hz(preset, cpu) -> float:
    """Cost-model cycles per second: the preset's FP32 peak over the model's FP32 rate."""
    flops_per_cycle = cpu.caps.cores * cpu.throughput.vector_ops_per_cycle * cpu.lanes * 2
    return preset.peak_gflops_fp32 * 1e9 / flops_per_cycle


def weight_memory(target, preset=None) -> WeightMemory:
    """The :class:`WeightMemory` of a target (TVM target or JSON dict), from ``preset`` (the
    one ``resolve_target`` gave with it) or else the one
    :func:`~aiq_tvm.targets.presets.select_preset` picks for it."""
    from .presets import select_preset
    from .x86.isa import cpu_model

    cpu = cpu_model(target)
    if preset is None or preset.cores != cpu.caps.cores:
        preset = select_preset(cpu.caps)
    hz = _model_hz(preset, cpu)
    mem = preset.bandwidth_gbs * 1e9 / hz
    notes = [f"memory {preset.bandwidth_gbs:.1f} GB/s ({preset.name}) at {hz / 1e9:.2f} G "
             f"model cycles/s ({preset.name}'s {preset.peak_gflops_fp32:g} GFLOP/s over "
             f"{cpu.throughput.vector_ops_per_cycle:g} FMA x {cpu.lanes} lanes per core-cycle)"]
    assumed = list(preset.assumed)
    llc, per_core = preset.extra.get("llc_bytes"), preset.extra.get("llc_copy_gbs_per_core")
    llc_usable = False
    if llc and per_core:
        cores = cpu.caps.cores
        llc_rate = per_core * cores * 1e9 / hz
        notes.append(f"LLC {llc / 2**20:g} MiB, copy {per_core:g} GB/s per core x {cores} "
                     f"cores ({preset.extra.get('llc_source', preset.name)})")
        usable = preset.extra.get("llc_usable_bytes")
        if usable and usable < llc:
            notes.append(f"of which {usable / 2**20:.1f} MiB usable by this process: "
                         f"{preset.extra.get('llc_usable_source', preset.name)}")
            llc, llc_usable = usable, True
    else:
        llc, llc_rate = 0, mem
        assumed.append(f"no cache holds the weights across inferences: {preset.name} has no "
                       "LLC figures (measure them with `python -m aiq_tvm.targets.roofline "
                       "--cache`), so every layer reads its weights from memory")
    return WeightMemory(memory_bytes_per_cycle=mem, llc_bytes=int(llc),
                        llc_bytes_per_cycle=llc_rate, cycles_per_second=hz, preset=preset.name,
                        notes=tuple(notes), assumed=tuple(assumed), llc_usable=llc_usable)
