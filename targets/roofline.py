"""Measure a CPU target's roofline peaks with TVM-generated micro-kernels, per ISA level.

The kernels use the target's own vector width and int8 instruction family (from
:func:`aiq_tvm.targets.capabilities`), so the figures are the ones our kernels can reach on it:

* **FP32 GFLOP/s**: each thread runs ``ACC`` independent chains of ``llvm.fmuladd`` on
  vectors of the float kernels' width (``caps.float_vector_bits``: 256 bits on AVX without
  AVX2, else the level's) held in registers (FMA where the target has it, multiply + add
  otherwise); 2 FLOPs per lane per step.
* **INT8 GOP/s**: the same chains with the target's int8 multiply-accumulate (see
  :data:`INT8_CHAINS`), 2 ops per int8 x int8 multiply-add:

  - ``vpdpbusd`` (AVX-512 VNNI on zmm, AVX-VNNI on ymm): one instruction, 4 MACs per lane;
  - ``vpmaddubsw`` (AVX-512BW, AVX2): ``vpmaddubsw`` + ``vpmaddwd`` (by ones) + ``vpaddd``;
  - ``vpmaddwd`` (SSE2): ``pmaddwd`` + ``paddd`` on int16 (the widening is not timed);
  - ``none`` (generic): int8 widened and multiplied as integers, as LLVM lowers it;
  - ``sdot`` / ``smmla`` (Armv8.2 DotProd / Armv8.6 I8MM) and ``smull`` (``smull`` +
    ``smlal`` + ``sadalp``, Armv8.0);
  - ``tdpbusd`` (AMX-INT8 tiles, what the int8 convs of an ``amx-int8`` target run on):
    four independent 16 x 16 int32 accumulator tiles, each step 16 x 64 uint8 by 64 x 16
    int8 (16 384 multiply-adds). On such a target this is the preset's int8 peak, and the
    vector family is timed beside it (``other_int8_chains_gops``): depthwise and dense
    layers stay on vectors.

  Each step's u8 operand is the accumulator itself reinterpreted as bytes, so no product is
  loop-invariant (LLVM would hoist it) while the timing stays that of the instruction mix.
* **GB/s**: ``y = 2 * x`` over a float32 array far larger than the caches, parallel and
  vectorized; bytes = read + written.

Compute peaks time one core's chains by the CPU time of its thread and multiply by the
cores (on a shared machine the wall clock would count other processes' turns on the cores);
bandwidth is the copy on all cores timed by the process's CPU time per thread.  Every probe
runs ``RUNS`` times in turn; a run's figure is the median of ``REPEAT`` timed calls and the
result the median of the runs (every run is kept in the preset's ``extra``).  ``--write``
stores the result as a measured preset JSON in ``targets/presets/`` (shipped with the
package)::

    flock /work/wt/bench.lock env TVM_NUM_THREADS=2 python -m aiq_tvm.targets.roofline \\
        --target '{"kind":"llvm","mcpu":"haswell","num-cores":2}' --write --name NAME

``--cache PRESET`` measures only the last-level cache of this machine for a measured preset's
target and stores it in that preset's ``extra`` (``llc_bytes`` from sysfs,
``llc_copy_gbs_per_core``: the copy probe on a quarter of the LLC, all cores, per core, and
``llc_usable_bytes``: how much of it this process can use, from a pointer-chase latency curve,
``targets.llc``); the speed floor reads weights from there when a model's fit
(``targets.memory``) and ``micro_batch="auto"`` sizes its calls by it::

    flock /work/bench.lock env TVM_NUM_THREADS=2 python -m aiq_tvm.targets.roofline \
        --cache znver4-2t

Only host-runnable targets can be measured (the probe executes the code).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tvm
from tvm import te, tirx
from tvm.script import tirx as T

from . import host_target, parse_target_string
from .capabilities import SYSFS_CACHES, capabilities, host_cache_bytes
from .llc import latency_curve, probe_sizes, usable_llc
from .presets import AMX_FAMILY, CpuPreset

__all__ = ["measure", "fp32_peak", "int8_peak", "bandwidth", "INT8_CHAINS", "Int8Chain",
           "Probe", "chain_probe", "bandwidth_probe", "probe_module"]

ACC = 12  # independent accumulators per thread: enough to cover latency x throughput
REPEAT = 50  # timed calls per run of a probe; the run's figure is their median
RUNS = 11  # runs of every probe; a preset takes the median of the runs
# Chain steps per call: ~2-5 ms a call on a 3 GHz core, long against a thread-pool wake-up
# (tens of microseconds) that would otherwise dominate calls on a loaded machine.
ITERS = 1_000_000


@dataclass(frozen=True)
class Int8Chain:
    """One step of an int8 probe chain on ``bits``-wide int32 accumulators.

    ``step(acc, b)`` returns the new accumulator from the old one and a loop-invariant vector
    ``b`` of ``b_lanes`` lanes of ``b_dtype``; ``macs`` is the int8 multiply-adds one step does per
    accumulator vector; ``instructions`` names what the step compiles to (for reports).
    """

    family: str
    bits: int
    b_lanes: int
    macs: int
    instructions: str
    step: Callable
    b_dtype: str = "int8"


def _vpdpbusd(bits: int) -> Int8Chain:
    lanes = bits // 32
    name = f"llvm.x86.avx512.vpdpbusd.{bits}"

    def step(acc, b):
        return T.call_llvm_pure_intrin(f"int32x{lanes}", name, acc,
                                       T.reinterpret(f"int8x{bits // 8}", acc), b)

    return Int8Chain("vpdpbusd", bits, bits // 8, bits // 8, f"vpdpbusd ({bits}-bit)", step)


_PMADDUBSW = {512: "llvm.x86.avx512.pmaddubs.w.512", 256: "llvm.x86.avx2.pmadd.ub.sw",
              128: "llvm.x86.ssse3.pmadd.ub.sw.128"}
_PMADDWD = {512: "llvm.x86.avx512.pmaddw.d.512", 256: "llvm.x86.avx2.pmadd.wd",
            128: "llvm.x86.sse2.pmadd.wd"}


def _vpmaddubsw(bits: int) -> Int8Chain:
    lanes = bits // 32

    def step(acc, b):
        pairs = T.call_llvm_pure_intrin(f"int16x{2 * lanes}", _PMADDUBSW[bits],
                                        T.reinterpret(f"uint8x{bits // 8}", acc), b)
        quads = T.call_llvm_pure_intrin(f"int32x{lanes}", _PMADDWD[bits], pairs,
                                        T.broadcast(T.int16(1), 2 * lanes))
        return acc + quads

    return Int8Chain("vpmaddubsw", bits, bits // 8, bits // 8,
                     f"vpmaddubsw + vpmaddwd + vpaddd ({bits}-bit)", step)


def _vpmaddwd(bits: int) -> Int8Chain:
    """``vpmaddwd`` on int16 operands: the multiply rate of a kernel that widens int8 to int16
    first (exact for full 8-bit codes, half the MACs per instruction of ``vpmaddubsw``; the
    widening itself is not timed).  The int8 family of the SSE2 level (128 bits: ``pmaddwd``,
    no byte multiply); at 256 and 512 bits measured with ``--int8 vpmaddwd`` to weigh it
    against 7-bit weights on ``vpmaddubsw``."""
    lanes = bits // 32

    def step(acc, b):
        return acc + T.call_llvm_pure_intrin(f"int32x{lanes}", _PMADDWD[bits],
                                             T.reinterpret(f"int16x{2 * lanes}", acc), b)

    return Int8Chain("vpmaddwd", bits, 2 * lanes, 2 * lanes,
                     f"vpmaddwd + vpaddd on int16 ({bits}-bit)", step, "int16")


def _widening(bits: int) -> Int8Chain:
    lanes = bits // 32

    def step(acc, b):
        a = tirx.Cast(f"int32x{lanes}", tirx.Cast(f"int8x{lanes}", acc))
        return acc + a * tirx.Cast(f"int32x{lanes}", b)

    return Int8Chain("none", bits, lanes, lanes,
                     f"int8 widened to int32, integer multiply + add ({bits}-bit)", step)


def _arm_dot(family: str, macs: int) -> Int8Chain:
    name = f"llvm.aarch64.neon.{family}.v4i32.v16i8"

    def step(acc, b):
        return T.call_llvm_pure_intrin("int32x4", name, acc, T.reinterpret("int8x16", acc), b)

    return Int8Chain(family, 128, 16, macs, f"{family} (128-bit)", step)


def _half(vec, high: bool):
    return tirx.Shuffle([vec], [tirx.IntImm("int32", i + 8 * high) for i in range(8)])


def _smull() -> Int8Chain:
    def mul(x, y):
        return T.call_llvm_pure_intrin("int16x8", "llvm.aarch64.neon.smull.v8i16", x, y)

    def step(acc, b):
        a = _half(T.reinterpret("int8x16", acc), False)
        pairs = mul(a, _half(b, False)) + mul(a, _half(b, True))
        return acc + T.call_llvm_pure_intrin("int32x4", "llvm.aarch64.neon.saddlp.v4i32.v8i16",
                                             pairs)

    return Int8Chain("smull", 128, 16, 16, "smull + smlal + sadalp (128-bit)", step)


# (int8 family, vector bits) -> chain; the families are TargetCaps.int8_dot values.
INT8_CHAINS: dict[tuple[str, int], Int8Chain] = {
    (c.family, c.bits): c
    for c in (_vpdpbusd(512), _vpdpbusd(256), _vpmaddubsw(512), _vpmaddubsw(256),
              _vpmaddubsw(128), _vpmaddwd(512), _vpmaddwd(256), _vpmaddwd(128), _widening(128),
              _widening(256), _widening(512),
              _arm_dot("sdot", 16), _arm_dot("smmla", 32), _smull())
}


# The AMX tile family (AMX_FAMILY, a target with ``amx-int8``): its own probe kernel.
AMX_TILES = 4  # independent accumulator tiles (tdpbusd latency ~4x its issue interval)
AMX_MACS = 16 * 16 * 64  # multiply-adds of one tdpbusd
AMX_INSTRUCTIONS = "tdpbusd (AMX tiles, 16 x 64 uint8 by 64 x 16 int8)"
# Steps per call: a tdpbusd issues every 16 cycles, a vector chain step every cycle or two.
AMX_ITERS = ITERS // 16


def int8_instructions(caps, family: str | None = None) -> str:
    """What the int8 probe of ``family`` (default: the target's int8 family) times."""
    return AMX_INSTRUCTIONS if family == AMX_FAMILY else int8_chain(caps, family).instructions


def _amx_kernel(threads: int, iters: int):
    """Each thread: configure 16 x 64-byte tiles, zero four accumulators, load two A and two B
    tiles once, then ``iters`` steps of four independent ``tdpbusd``; store, release."""
    from .x86.amx import ARCH_REQ_XCOMP_PERM, SYS_ARCH_PRCTL, XFEATURE_XTILEDATA, config_words

    words = config_words(16, 64)

    def call(name, *args):
        return T.evaluate(T.call_llvm_intrin("void", name, *args))

    @T.prim_func
    def tiles(out: T.Buffer((threads, AMX_TILES, 16, 16), "int32"),
              a: T.Buffer((2, 16, 64), "uint8"), b: T.Buffer((2, 16, 64), "int8")):
        T.func_attr({"tir.noalias": True})
        for t in T.parallel(threads):
            T.evaluate(T.call_extern("int64", "syscall", T.int64(SYS_ARCH_PRCTL),
                                     T.int64(ARCH_REQ_XCOMP_PERM), T.int64(XFEATURE_XTILEDATA)))
            cfg = T.alloc_buffer((8,), "int64", scope="local")
            for k in T.unroll(8):
                cfg[k] = T.int64(0)
            cfg[0] = T.int64(words[0])
            cfg[2] = T.int64(words[2])
            cfg[3] = T.int64(words[3])
            cfg[6] = T.int64(words[6])
            call("llvm.x86.ldtilecfg", T.address_of(cfg[0]))
            for k in T.unroll(AMX_TILES):
                call("llvm.x86.tilezero", T.Cast("uint8", k))
            call("llvm.x86.tileloadd64", T.uint8(4), T.address_of(a[0, 0, 0]), T.int64(64))
            call("llvm.x86.tileloadd64", T.uint8(5), T.address_of(a[1, 0, 0]), T.int64(64))
            call("llvm.x86.tileloadd64", T.uint8(6), T.address_of(b[0, 0, 0]), T.int64(64))
            call("llvm.x86.tileloadd64", T.uint8(7), T.address_of(b[1, 0, 0]), T.int64(64))
            for _ in T.serial(iters):
                call("llvm.x86.tdpbusd", T.uint8(0), T.uint8(4), T.uint8(6))
                call("llvm.x86.tdpbusd", T.uint8(1), T.uint8(4), T.uint8(7))
                call("llvm.x86.tdpbusd", T.uint8(2), T.uint8(5), T.uint8(6))
                call("llvm.x86.tdpbusd", T.uint8(3), T.uint8(5), T.uint8(7))
            for k in T.unroll(AMX_TILES):
                call("llvm.x86.tilestored64", T.Cast("uint8", k),
                     T.address_of(out[t, k, 0, 0]), T.int64(64))
            call("llvm.x86.tilerelease")

    return tiles


def _chain_kernel(threads: int, iters: int, lanes: int, dtype: str, b_lanes: int, b_dtype: str,
                  step):
    @T.prim_func
    def chains(out: T.Buffer((threads, ACC * lanes), dtype), b: T.Buffer((b_lanes,), b_dtype)):
        T.func_attr({"tir.noalias": True})
        for t in T.parallel(threads):
            acc = T.alloc_buffer((ACC * lanes,), dtype)
            # Start from the input vector (lanes differ), so LLVM can neither fold the chains
            # nor scalarize them as splats.
            for v in T.unroll(ACC):
                acc[T.ramp(v * lanes, 1, lanes)] = T.Cast(
                    f"{dtype}x{lanes}", b[T.ramp(0, 1, lanes)]) + T.broadcast(
                        T.Cast(dtype, v + 1), lanes)
            for _ in T.serial(iters):
                for v in T.unroll(ACC):
                    acc[T.ramp(v * lanes, 1, lanes)] = step(acc[T.ramp(v * lanes, 1, lanes)],
                                                            b[T.ramp(0, 1, b_lanes)])
            for v in T.unroll(ACC):
                out[t, T.ramp(v * lanes, 1, lanes)] = acc[T.ramp(v * lanes, 1, lanes)]

    return chains


def _fma_step(lanes: int):
    # acc + acc * 1e-7: the addend is the accumulator, so Arm's destructive fmla needs no
    # register copy; the value grows by about one ulp per step and never overflows.
    def step(acc, _b):
        return T.call_llvm_pure_intrin(f"float32x{lanes}", f"llvm.fmuladd.v{lanes}f32", acc,
                                       T.broadcast(T.float32(1e-7), lanes), acc)

    return step


def int8_chain(caps, family: str | None = None) -> Int8Chain:
    """The probe chain of a target's int8 family (or ``family``) at its vector width."""
    key = (family or caps.int8_dot, caps.vector_bits)
    if key not in INT8_CHAINS:
        raise ValueError(f"no int8 probe for {key[0]} at {key[1]} bits; known: "
                         f"{sorted(INT8_CHAINS)}")
    return INT8_CHAINS[key]


def probe_module(caps, kind: str, threads: int, iters: int, family: str | None = None
                 ) -> tvm.IRModule:
    """The ``"fp32"`` or ``"int8"`` probe kernel for a target (compiles for any target);
    ``family`` picks another int8 chain than the target's own (see :data:`INT8_CHAINS`)."""
    lanes = caps.lanes32
    if kind == "fp32":
        flanes = caps.float_vector_bits // 32  # AVX without AVX2: ymm floats, xmm integers
        func = _chain_kernel(threads, iters, flanes, "float32", flanes, "float32",
                             _fma_step(flanes))
    elif kind == "int8" and family == AMX_FAMILY:
        if not caps.amx:
            raise ValueError(f"the {AMX_FAMILY} probe needs a target with amx-tile and amx-int8 "
                             f"(e.g. mcpu sapphirerapids, or mattr +amx-tile,+amx-int8); this "
                             f"one is {caps.describe()}")
        func = _amx_kernel(threads, iters)
    elif kind == "int8":
        chain = int8_chain(caps, family)
        func = _chain_kernel(threads, iters, lanes, "int32", chain.b_lanes, chain.b_dtype,
                             chain.step)
    else:
        raise ValueError(f"probe kind must be 'fp32' or 'int8', got {kind!r}")
    return tvm.IRModule({"main": func})


@dataclass
class Probe:
    """A compiled probe kernel: ``work`` ops (or bytes) per call of ``lib["main"](*args)``.

    ``clock="wall"`` times calls with TVM's ``time_evaluator`` (wall clock, all threads the
    kernel uses).  ``clock="cpu"`` times a single-threaded kernel by the CPU time of the
    calling thread (TVM runs a one-task parallel loop on the caller); ``clock="process"``
    times a kernel on all threads by this process's CPU time (``scale`` = threads turns it
    into the time of threads running side by side; a thread waiting for another one at the
    end of the parallel loop still counts, so this errs low).  CPU clocks leave out the time
    threads spend descheduled while other processes use the cores.  Rates are multiplied by
    ``scale``.
    """

    lib: object
    args: tuple
    work: float
    clock: str = "wall"
    scale: float = 1.0

    def rate(self, repeat: int | None = None) -> float:
        """Work per second / 1e9 (times ``scale``) from the median of ``repeat`` (default
        :data:`REPEAT`) timed calls after a warm-up call."""
        main, n = self.lib["main"], repeat or REPEAT
        main(*self.args)
        if self.clock in ("cpu", "process"):
            clock = time.thread_time if self.clock == "cpu" else time.process_time
            times = []
            for _ in range(n):
                t0 = clock()
                main(*self.args)
                times.append(clock() - t0)
        else:
            times = self.lib.time_evaluator("main", tvm.cpu(), number=1, repeat=n)(
                *self.args).results
        return self.scale * self.work / float(np.median(times)) / 1e9


CLOCKS = ("cpu", "wall")


def chain_probe(target, kind: str, threads: int, iters: int | None = None,
                family: str | None = None, clock: str = "cpu") -> Probe:
    """The ``"fp32"`` or ``"int8"`` chains compiled for a host-runnable target; its rate is
    GFLOP/s or GOP/s (2 ops per multiply-add) of ``threads`` cores.

    ``clock="cpu"``: one thread timed by its CPU time, times ``threads`` (the chains live in
    registers, so cores do not slow each other down); ``clock="wall"``: ``threads`` threads
    timed by the wall clock, which counts whatever else the machine runs.
    """
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
    caps = capabilities(target)
    amx = kind == "int8" and family == AMX_FAMILY
    iters = iters or (AMX_ITERS if amx else ITERS)
    n = 1 if clock == "cpu" else threads
    lib = tvm.compile(probe_module(caps, kind, n, iters, family), target).mod
    lanes = caps.lanes32
    if amx:
        out = tvm.runtime.tensor(np.zeros((n, AMX_TILES, 16, 16), np.int32))
        a = tvm.runtime.tensor(np.ones((2, 16, 64), np.uint8))
        b = tvm.runtime.tensor(np.ones((2, 16, 64), np.int8))
        return Probe(lib, (out, a, b), 2 * AMX_MACS * AMX_TILES * iters * n, clock, threads / n)
    if kind == "fp32":
        lanes = caps.float_vector_bits // 32
        out = tvm.runtime.tensor(np.zeros((n, ACC * lanes), np.float32))
        b = tvm.runtime.tensor(np.ones(lanes, np.float32))
        ops_per_step = 2 * lanes
    else:
        chain = int8_chain(caps, family)
        out = tvm.runtime.tensor(np.zeros((n, ACC * lanes), np.int32))
        b = tvm.runtime.tensor(np.ones(chain.b_lanes, chain.b_dtype))
        ops_per_step = 2 * chain.macs
    return Probe(lib, (out, b), ops_per_step * ACC * iters * n, clock, threads / n)


def bandwidth_probe(target, n_floats: int = 1 << 25, clock: str = "process") -> Probe:
    """``y = 2 * x`` over ``n_floats`` float32, parallel on the target's cores and vectorized;
    its rate is GB/s (bytes read + bytes written), timed by ``clock`` (``"process"`` or
    ``"wall"``, see :class:`Probe`)."""
    if clock not in ("process", "wall"):
        raise ValueError(f"bandwidth clock must be 'process' or 'wall', got {clock!r}")
    x = te.placeholder((n_floats,), "float32", name="x")
    y = te.compute((n_floats,), lambda i: x[i] * 2.0, name="y")
    sch = tvm.s_tir.Schedule(te.create_prim_func([x, y]))
    (loop,) = sch.get_loops(sch.get_sblock("y"))
    outer, inner = sch.split(loop, [None, 64])
    sch.parallel(outer)
    sch.vectorize(inner)
    lib = tvm.compile(sch.mod, target).mod
    args = (tvm.runtime.tensor(np.ones(n_floats, np.float32)),
            tvm.runtime.tensor(np.empty(n_floats, np.float32)))
    threads = capabilities(target).cores if clock == "process" else 1
    return Probe(lib, args, 2 * 4 * n_floats, clock, float(threads))


def fp32_peak(target, threads: int, iters: int | None = None) -> float:
    """FP32 GFLOP/s of multiply-add chains on ``threads`` cores (one core's CPU-time rate,
    median of :data:`REPEAT` calls, times ``threads``)."""
    return chain_probe(target, "fp32", threads, iters).rate()


def int8_peak(target, threads: int, iters: int | None = None, family: str | None = None
              ) -> float:
    """INT8 GOP/s (multiply + add = 2 ops) of the target's int8 chains (or ``family``'s) on
    ``threads`` cores, like :func:`fp32_peak`."""
    return chain_probe(target, "int8", threads, iters, family).rate()


def bandwidth(target, n_floats: int = 1 << 25) -> float:
    """Copy bandwidth in GB/s (median of :data:`REPEAT` calls)."""
    return bandwidth_probe(target, n_floats).rate()


def host_llc_bytes(caches: Path = SYSFS_CACHES) -> int:
    """Size of this machine's last-level cache (the highest cache level sysfs lists for CPU
    0, in ``caches``), or 0 where sysfs does not say."""
    return host_cache_bytes(None, caches)


# The LLC probe copies a quarter of the LLC (in + out): far more than the cores' private
# caches of the machines measured, little enough to stay in the LLC.
LLC_FRACTION = 4


def measure_cache(target_dict: dict, runs: int = RUNS, llc_bytes: int | None = None) -> dict:
    """This machine's LLC size and the copy rate per core of a working set in it (the
    bandwidth probe on ``llc / LLC_FRACTION`` bytes of traffic, all cores, process CPU time),
    for a host-runnable target. ``llc_bytes``: the LLC size to probe (default: sysfs's)."""
    target, caps = _runnable(dict(target_dict))
    llc = host_llc_bytes() if llc_bytes is None else llc_bytes
    if not llc:
        raise ValueError("this machine's sysfs lists no caches; cannot size the LLC probe")
    probe = bandwidth_probe(target, n_floats=llc // LLC_FRACTION // 8)
    rates = [probe.rate() for _ in range(runs)]
    curve = latency_curve(target, probe_sizes(llc))
    usable, how = usable_llc(curve, caps.l2_bytes, llc)
    return {"llc_bytes": llc, "cores": caps.cores, "runs": rates,
            "per_core_gbs": float(np.median(rates)) / caps.cores,
            "latency_ns": curve, "usable_bytes": usable, "usable_how": how}


def _store_cache(name: str, m: dict, argv: list[str]) -> Path:
    """Record :func:`measure_cache`'s figures in measured preset ``name``'s ``extra``."""
    path = Path(__file__).resolve().parent / "presets" / f"{name}.json"
    if not path.exists():
        raise ValueError(f"no measured preset {name!r} in {path.parent}")
    data = json.loads(path.read_text())
    cmd = f"TVM_NUM_THREADS={m['cores']} python -m aiq_tvm.targets.roofline " + " ".join(
        f"'{a}'" if a.startswith("{") else a for a in argv)
    today = datetime.date.today().isoformat()
    extra = data["extra"]
    extra.update(
        llc_bytes=m["llc_bytes"], llc_copy_gbs_per_core=round(m["per_core_gbs"], 1),
        llc_runs=_rounded(m["runs"]),
        llc_source=f"measured on {today} by `{cmd}`: copy of "
        f"{m['llc_bytes'] // LLC_FRACTION >> 20} MiB (in + out) on {m['cores']} threads, "
        f"process CPU time, median of {len(m['runs'])} runs of {REPEAT} calls, per core")
    # A run that read no usable size drops an earlier run's, keeping only its own curve.
    extra.pop("llc_usable_bytes", None)
    extra.pop("llc_usable_source", None)
    if m["usable_bytes"]:
        extra.update(llc_usable_bytes=m["usable_bytes"],
                     llc_usable_source=f"{m['usable_how']}; pointer-chase latency "
                     f"(targets/llc.py) measured on {today} by `{cmd}`")
    extra["llc_latency_ns"] = {f"{size / 2**20:g} MiB": round(ns, 1)
                               for size, ns in m["latency_ns"].items()}
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def _runnable(tdict: dict):
    target = tvm.target.Target(tdict)
    caps = capabilities(target)
    if not caps.host_runnable:
        why = ", ".join(caps.missing_on_host) or f"{caps.arch} code"
        raise ValueError(f"cannot measure {tdict} here: this machine lacks {why}; declare its "
                         "preset from data sheets instead (targets/presets.py)")
    return target, caps


def measure(target_dict: dict | None = None, runs: int = RUNS,
            int8_families: tuple = ()) -> dict:
    """Measure the three peaks of a host-runnable target (default: this machine).

    Compute peaks are one core's chains timed by the CPU time of its thread, times the cores
    (other processes on a shared machine take turns on the cores but do not slow a running
    register-only chain); bandwidth is the copy on all cores timed by the process's CPU time
    per thread.  The probes
    run ``runs`` times in turn (fp32, int8, bandwidth, ..., then again), so a change of load
    hits every figure alike; each run's figure is the median of :data:`REPEAT` calls and the
    result is the median of the runs (all runs are returned under ``"runs"``, with ``"fp32
    wall"``, ``"int8 wall"`` and ``"bandwidth wall"``: all cores by the wall clock, for
    comparison).
    ``int8_families`` adds other int8 chains at the target's width (``"int8 <family>"``).

    Raises
    ------
    ValueError
        If this machine cannot execute code built for the target (names the missing
        features).
    """
    tdict = dict(target_dict or host_target())
    target, caps = _runnable(tdict)
    tdict.setdefault("num-cores", caps.cores)
    # AMX targets' int8 convs run on tiles: that is their int8 peak; the vector family (what
    # depthwise and dense layers run) is timed beside it.
    main_family = AMX_FAMILY if caps.amx else None
    if main_family:
        int8_families = (caps.int8_dot, *(f for f in int8_families if f != caps.int8_dot))
    int8_families = tuple(f for f in int8_families if f != main_family)
    load_before = os.getloadavg()[0]
    probes = {"fp32": chain_probe(target, "fp32", caps.cores),
              "int8": chain_probe(target, "int8", caps.cores, family=main_family),
              "bandwidth": bandwidth_probe(target)}
    for family in int8_families:
        probes[f"int8 {family}"] = chain_probe(target, "int8", caps.cores, family=family)
    # For comparison: all cores at once by the wall clock (what a loaded machine leaves).
    probes["fp32 wall"] = chain_probe(target, "fp32", caps.cores, clock="wall")
    probes["int8 wall"] = chain_probe(target, "int8", caps.cores, family=main_family,
                                      clock="wall")
    probes["bandwidth wall"] = bandwidth_probe(target, clock="wall")
    rates: dict[str, list] = {k: [] for k in probes}
    for _ in range(runs):
        for key, probe in probes.items():
            rates[key].append(probe.rate())
    median = {k: float(np.median(v)) for k, v in rates.items()}
    return {
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "nice": os.nice(0),
        "target": tdict,
        "isa": caps.isa,
        "peak_gflops_fp32": median["fp32"],
        "peak_gops_int8": median["int8"],
        "bandwidth_gbs": median["bandwidth"],
        "other_int8": {k.split(" ", 1)[1]: v for k, v in median.items()
                       if k.startswith("int8 ") and not k.endswith(" wall")},
        "runs": rates,
        "repeat": REPEAT,
        "threads": caps.cores,
        "int8_instructions": int8_instructions(caps, main_family),
        "int8_family": main_family or caps.int8_dot,
        "vector_bits": caps.vector_bits,
        "float_vector_bits": caps.float_vector_bits,
    }


def _target_arg(text: str) -> dict:
    text = text.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise argparse.ArgumentTypeError(f"--target is not valid JSON: {err}") from None
    try:
        return parse_target_string(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _rounded(values, digits=1) -> list:
    return [round(float(v), digits) for v in values]


def _widths(m: dict) -> str:
    fbits = m.get("float_vector_bits", m["vector_bits"])
    if fbits == m["vector_bits"]:
        return f"{fbits}-bit"
    return f"{m['vector_bits']}-bit integers, {fbits}-bit floats"


def _preset_from(m: dict, name: str, argv: list[str]) -> CpuPreset:
    cpu = _cpu_model()
    nice = f"nice -n {m['nice']} " if m.get("nice") else ""
    cmd = f"TVM_NUM_THREADS={m['threads']} {nice}python -m aiq_tvm.targets.roofline " + " ".join(
        f"'{a}'" if a.startswith("{") else a for a in argv)
    mcpu = m["target"].get("mcpu", "the default CPU")
    runs = m["runs"]
    return CpuPreset(
        name=name,
        description=f"{mcpu} code ({m['isa']}, {_widths(m)}) on {cpu}, "
        f"{m['threads']} threads; measured",
        target=m["target"],
        isa=m["isa"],
        peak_gflops_fp32=round(m["peak_gflops_fp32"], 1),
        peak_gops_int8=round(m["peak_gops_int8"], 1),
        bandwidth_gbs=round(m["bandwidth_gbs"], 1),
        source=f"measured on {datetime.date.today().isoformat()} by `{cmd}` (median of "
        f"{len(runs['fp32'])} runs, each the median of {m['repeat']} calls: multiply-add chains "
        f"on one core timed by its CPU time x {m['threads']} cores, int8 via "
        f"{m['int8_instructions']}; 128 MiB copy on {m['threads']} threads timed by the process's "
        "CPU time per thread)",
        measured=True,
        extra={"machine": cpu, "threads": m["threads"], "nice": m.get("nice", 0),
               **({"float_vector_bits": m["float_vector_bits"]}
                  if m.get("float_vector_bits", m["vector_bits"]) != m["vector_bits"] else {}),
               "load_average_before": round(m["load_before"], 2),
               "load_average_after": round(m["load_after"], 2),
               "runs": {k: _rounded(v) for k, v in runs.items()},
               **({"int8_family": m["int8_family"]}
                  if m.get("int8_family") == AMX_FAMILY else {}),
               **({"other_int8_chains_gops": {k: round(v, 1) for k, v in
                                              m["other_int8"].items()}}
                  if m.get("other_int8") else {})},
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", type=_target_arg, default=None,
                    help="JSON target or 'llvm -mcpu=... -num-cores=N' (default: this machine)")
    ap.add_argument("--write", action="store_true", help="store as a measured preset JSON")
    ap.add_argument("--name", default=None, help="preset name (default: <mcpu>-<threads>t)")
    ap.add_argument("--runs", type=int, default=RUNS,
                    help=f"runs of every probe; figures are their median (default {RUNS})")
    ap.add_argument("--int8", metavar="FAMILY", action="append", default=[],
                    choices=sorted({f for f, _ in INT8_CHAINS} | {AMX_FAMILY}),
                    help="also time this int8 chain at the target's width (e.g. vpmaddwd); "
                    "presets keep the ISA level's own family")
    ap.add_argument("--cache", metavar="PRESET", default=None,
                    help="measure only this machine's LLC size and in-LLC copy rate for "
                    "measured preset PRESET's target and store them in its extra")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error(f"--runs must be at least 1, got {args.runs}")
    if args.cache:
        return _cache_main(args.cache, args.runs, sys.argv[1:] if argv is None else list(argv))
    m = measure(args.target, runs=args.runs, int8_families=tuple(args.int8))
    fp32 = m["peak_gflops_fp32"]
    print(f"target {json.dumps(m['target'])} ({m['isa']}), median of {args.runs} runs x "
          f"{m['repeat']} calls: fp32 {fp32:.1f} GFLOP/s, int8 {m['peak_gops_int8']:.1f} GOP/s "
          f"({m['int8_instructions']}; {m['peak_gops_int8'] / fp32:.2f}x fp32), copy bandwidth "
          f"{m['bandwidth_gbs']:.1f} GB/s; 1-min load average {m['load_before']:.2f} before, "
          f"{m['load_after']:.2f} after")
    for key, values in m["runs"].items():
        print(f"  runs {key:18s} " + " ".join(f"{v:8.1f}" for v in values))
    caps = capabilities(m["target"])
    for family, gops in m["other_int8"].items():
        print(f"int8 via {int8_instructions(caps, family)}: {gops:.1f} GOP/s "
              f"({gops / fp32:.2f}x fp32)")
    if args.write:
        name = args.name or f"{m['target'].get('mcpu', m['isa'])}-{m['threads']}t"
        preset = _preset_from(m, name, sys.argv[1:] if argv is None else list(argv))
        path = Path(__file__).resolve().parent / "presets" / f"{name}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(preset.to_dict(), indent=2) + "\n")
        print(f"wrote {path}")
    return 0


def _cache_main(name: str, runs: int, argv: list[str]) -> int:
    from .presets import PRESETS

    if name not in PRESETS or not PRESETS[name].measured:
        measured = [n for n, p in PRESETS.items() if p.measured]
        raise SystemExit(f"--cache: {name!r} is not a measured preset; valid: "
                         f"{', '.join(measured)}")
    m = measure_cache(PRESETS[name].target, runs)
    print(f"{name}: LLC {m['llc_bytes'] >> 20} MiB, copy in LLC {m['per_core_gbs']:.1f} GB/s "
          f"per core ({m['cores']} cores; runs " + " ".join(f"{r:.1f}" for r in m["runs"]) + ")")
    print("load latency: " + ", ".join(f"{size / 2**20:g} MiB {ns:.1f} ns"
                                       for size, ns in m["latency_ns"].items()))
    usable = (f"{m['usable_bytes'] / 2**20:.1f} MiB" if m["usable_bytes"]
              else "not read (the listed size stays)")
    print(f"usable LLC {usable}: {m['usable_how']}")
    print(f"wrote {_store_cache(name, m, argv)}")
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    raise SystemExit(main())
