"""Measure a CPU target's roofline peaks with TVM-generated micro-kernels, per ISA level.

The kernels use the target's own vector width and int8 instruction family (from
:func:`aiq_tvm.targets.capabilities`), so the figures are the ones our kernels can reach on it:

* **FP32 GFLOP/s**: each thread runs ``ACC`` independent chains of ``llvm.fmuladd`` on
  ``lanes32``-wide vectors (FMA where the target has it, multiply + add otherwise) held in
  registers; 2 FLOPs per lane per step.
* **INT8 GOP/s**: the same chains with the target's int8 multiply-accumulate (see
  :data:`INT8_CHAINS`), 2 ops per int8 x int8 multiply-add:

  - ``vpdpbusd`` (AVX-512 VNNI on zmm, AVX-VNNI on ymm): one instruction, 4 MACs per lane;
  - ``vpmaddubsw`` (AVX-512BW, AVX2): ``vpmaddubsw`` + ``vpmaddwd`` (by ones) + ``vpaddd``;
  - ``none`` (SSE, generic): int8 widened and multiplied as integers, as LLVM lowers it;
  - ``sdot`` / ``smmla`` (Armv8.2 DotProd / Armv8.6 I8MM) and ``smull`` (``smull`` +
    ``smlal`` + ``sadalp``, Armv8.0).

  Each step's u8 operand is the accumulator itself reinterpreted as bytes, so no product is
  loop-invariant (LLVM would hoist it) while the timing stays that of the instruction mix.
* **GB/s**: ``y = 2 * x`` over a float32 array far larger than the caches, parallel and
  vectorized; bytes = read + written.

Each figure comes from the fastest of ``REPEAT`` timed calls (see ``_best_s``).  ``--write``
stores the result as a measured preset JSON in ``targets/presets/`` (shipped with the
package)::

    flock /work/wt/bench.lock python -m aiq_tvm.targets.roofline \\
        --target '{"kind":"llvm","mcpu":"haswell","num-cores":2}' --write

Only host-runnable targets can be measured (the probe executes the code).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tvm
from tvm import te, tirx
from tvm.script import tirx as T

from . import host_target, parse_target_string
from .capabilities import capabilities
from .presets import CpuPreset

__all__ = ["measure", "fp32_peak", "int8_peak", "bandwidth", "INT8_CHAINS", "Int8Chain",
           "probe_module"]

ACC = 12  # independent accumulators per thread: enough to cover latency x throughput
REPEAT = 200  # timed calls per figure; the fastest counts (see _best_s)


@dataclass(frozen=True)
class Int8Chain:
    """One step of an int8 probe chain on ``bits``-wide int32 accumulators.

    ``step(acc, b)`` returns the new accumulator from the old one and a loop-invariant int8
    vector ``b`` of ``b_lanes`` lanes; ``macs`` is the int8 multiply-adds one step does per
    accumulator vector; ``instructions`` names what the step compiles to (for reports).
    """

    family: str
    bits: int
    b_lanes: int
    macs: int
    instructions: str
    step: Callable


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
              _vpmaddubsw(128), _widening(128), _widening(256), _widening(512),
              _arm_dot("sdot", 16), _arm_dot("smmla", 32), _smull())
}


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


def int8_chain(caps) -> Int8Chain:
    """The probe chain of a target's int8 family at its vector width."""
    key = (caps.int8_dot, caps.vector_bits)
    if key not in INT8_CHAINS:
        raise ValueError(f"no int8 probe for {caps.int8_dot} at {caps.vector_bits} bits; known: "
                         f"{sorted(INT8_CHAINS)}")
    return INT8_CHAINS[key]


def probe_module(caps, kind: str, threads: int, iters: int) -> tvm.IRModule:
    """The ``"fp32"`` or ``"int8"`` probe kernel for a target (compiles for any target)."""
    lanes = caps.lanes32
    if kind == "fp32":
        func = _chain_kernel(threads, iters, lanes, "float32", lanes, "float32",
                             _fma_step(lanes))
    elif kind == "int8":
        chain = int8_chain(caps)
        func = _chain_kernel(threads, iters, lanes, "int32", chain.b_lanes, "int8", chain.step)
    else:
        raise ValueError(f"probe kind must be 'fp32' or 'int8', got {kind!r}")
    return tvm.IRModule({"main": func})


def _best_s(lib, *args, repeat: int) -> float:
    """Fastest of ``repeat`` single calls: a peak is an upper bound, and other processes on a
    shared machine only ever slow a call down, so the minimum time is the estimate."""
    lib["main"](*args)
    res = lib.time_evaluator("main", tvm.cpu(), number=1, repeat=repeat)(*args)
    return float(np.min(res.results))


def _run_chains(target, kind: str, threads: int, iters: int) -> float:
    caps = capabilities(target)
    lib = tvm.compile(probe_module(caps, kind, threads, iters), target).mod
    lanes = caps.lanes32
    if kind == "fp32":
        out = tvm.runtime.tensor(np.zeros((threads, ACC * lanes), np.float32))
        b = tvm.runtime.tensor(np.ones(lanes, np.float32))
        ops_per_step = 2 * lanes
    else:
        chain = int8_chain(caps)
        out = tvm.runtime.tensor(np.zeros((threads, ACC * lanes), np.int32))
        b = tvm.runtime.tensor(np.ones(chain.b_lanes, np.int8))
        ops_per_step = 2 * chain.macs
    return ops_per_step * ACC * iters * threads / _best_s(lib, out, b, repeat=REPEAT) / 1e9


def fp32_peak(target, threads: int, iters: int = 40000) -> float:
    """FP32 GFLOP/s of multiply-add chains on all threads."""
    return _run_chains(target, "fp32", threads, iters)


def int8_peak(target, threads: int, iters: int = 40000) -> float:
    """INT8 GOP/s (multiply + add = 2 ops) of the target's int8 chains on all threads."""
    return _run_chains(target, "int8", threads, iters)


def bandwidth(target, n_floats: int = 1 << 25) -> float:
    """Copy bandwidth in GB/s (bytes read + bytes written) of ``y = 2 * x``."""
    x = te.placeholder((n_floats,), "float32", name="x")
    y = te.compute((n_floats,), lambda i: x[i] * 2.0, name="y")
    func = te.create_prim_func([x, y])
    sch = tvm.s_tir.Schedule(func)
    (loop,) = sch.get_loops(sch.get_sblock("y"))
    outer, inner = sch.split(loop, [None, 64])
    sch.parallel(outer)
    sch.vectorize(inner)
    lib = tvm.compile(sch.mod, target).mod
    xs = tvm.runtime.tensor(np.ones(n_floats, np.float32))
    ys = tvm.runtime.tensor(np.empty(n_floats, np.float32))
    return 2 * 4 * n_floats / _best_s(lib, xs, ys, repeat=REPEAT) / 1e9


def measure(target_dict: dict | None = None) -> dict:
    """Measure the three peaks of a host-runnable target (default: this machine).

    Raises
    ------
    ValueError
        If this machine cannot execute code built for the target (names the missing
        features).
    """
    tdict = dict(target_dict or host_target())
    target = tvm.target.Target(tdict)
    caps = capabilities(target)
    if not caps.host_runnable:
        why = ", ".join(caps.missing_on_host) or f"{caps.arch} code"
        raise ValueError(f"cannot measure {tdict} here: this machine lacks {why}; declare its "
                         "preset from data sheets instead (targets/presets.py)")
    tdict.setdefault("num-cores", caps.cores)
    return {
        "load_before": os.getloadavg()[0],
        "nice": os.nice(0),
        "target": tdict,
        "isa": caps.isa,
        "peak_gflops_fp32": fp32_peak(target, caps.cores),
        "peak_gops_int8": int8_peak(target, caps.cores),
        "bandwidth_gbs": bandwidth(target),
        "threads": caps.cores,
        "int8_instructions": int8_chain(caps).instructions,
        "vector_bits": caps.vector_bits,
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


def _preset_from(m: dict, name: str, argv: list[str]) -> CpuPreset:
    cpu = _cpu_model()
    nice = f"nice -n {m['nice']} " if m.get("nice") else ""
    cmd = f"TVM_NUM_THREADS={m['threads']} {nice}python -m aiq_tvm.targets.roofline " + " ".join(
        f"'{a}'" if a.startswith("{") else a for a in argv)
    mcpu = m["target"].get("mcpu", "the default CPU")
    return CpuPreset(
        name=name,
        description=f"{mcpu} code ({m['isa']}, {m['vector_bits']}-bit) on {cpu}, "
        f"{m['threads']} threads; measured",
        target=m["target"],
        isa=m["isa"],
        peak_gflops_fp32=round(m["peak_gflops_fp32"], 1),
        peak_gops_int8=round(m["peak_gops_int8"], 1),
        bandwidth_gbs=round(m["bandwidth_gbs"], 1),
        source=f"measured on {datetime.date.today().isoformat()} by `{cmd}` (fastest of "
        f"{REPEAT} calls of multiply-add chains; int8 via {m['int8_instructions']}; 128 MiB "
        "copy)",
        measured=True,
        extra={"machine": cpu, "threads": m["threads"],
               "load_average_before": round(m["load_before"], 2), "nice": m.get("nice", 0)},
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", type=_target_arg, default=None,
                    help="JSON target or 'llvm -mcpu=... -num-cores=N' (default: this machine)")
    ap.add_argument("--write", action="store_true", help="store as a measured preset JSON")
    ap.add_argument("--name", default=None, help="preset name (default: <mcpu>-<threads>t)")
    args = ap.parse_args(argv)
    m = measure(args.target)
    print(f"target {json.dumps(m['target'])} ({m['isa']}): fp32 {m['peak_gflops_fp32']:.1f} "
          f"GFLOP/s, int8 {m['peak_gops_int8']:.1f} GOP/s ({m['int8_instructions']}), copy "
          f"bandwidth {m['bandwidth_gbs']:.1f} GB/s; 1-min load average before: "
          f"{m['load_before']:.2f}")
    if args.write:
        name = args.name or f"{m['target'].get('mcpu', m['isa'])}-{m['threads']}t"
        preset = _preset_from(m, name, sys.argv[1:] if argv is None else list(argv))
        path = Path(__file__).resolve().parent / "presets" / f"{name}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(preset.to_dict(), indent=2) + "\n")
        print(f"wrote {path}")
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
