"""Measure this CPU's roofline peaks with TVM-generated micro-kernels.

* **FP32 GFLOP/s**: each thread runs chains of ``llvm.fma.v16f32`` on ``ACC`` independent
  zmm accumulators (no memory traffic); 2 FLOPs per lane per FMA.
* **INT8 GOP/s**: the same with ``llvm.x86.avx512.vpdpbusd.512`` (64 u8 x s8 multiply-adds
  per instruction = 128 ops); skipped on CPUs without AVX512-VNNI.
* **GB/s**: ``y = 2 * x`` over a float32 array far larger than the caches, parallel and
  vectorized; bytes = read + written.

Each figure is the median of repeated ``time_evaluator`` runs.  ``--write`` stores the result
as a measured preset JSON in ``targets/presets/`` (shipped with the package)::

    TVM_NUM_THREADS=2 python -m aiq_tvm.targets.roofline --write
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
from pathlib import Path

import numpy as np
import tvm
from tvm import te
from tvm.script import tirx as T

from . import host_target
from .presets import CpuPreset

__all__ = ["measure", "fp32_peak", "int8_peak", "bandwidth"]

ACC = 12  # independent accumulators per thread: enough to cover FMA latency x throughput


def _median_s(lib, *args, repeat: int = 9, number: int = 5) -> float:
    lib["main"](*args)
    res = lib.time_evaluator("main", tvm.cpu(), number=number, repeat=repeat)(*args)
    return float(np.median(res.results))


def _fp32_kernel(threads: int, iters: int):
    @T.prim_func
    def fma_peak(out: T.Buffer((threads, ACC * 16), "float32")):
        T.func_attr({"tir.noalias": True})
        for t in T.parallel(threads):
            acc = T.alloc_buffer((ACC * 16,), "float32")
            for v in T.unroll(ACC):
                acc[T.ramp(v * 16, 1, 16)] = T.broadcast(T.float32(0.5), 16)
            for _ in T.serial(iters):
                for v in T.unroll(ACC):
                    acc[T.ramp(v * 16, 1, 16)] = T.call_llvm_pure_intrin(
                        "float32x16", "llvm.fma.v16f32", acc[T.ramp(v * 16, 1, 16)],
                        T.broadcast(T.float32(0.999), 16), T.broadcast(T.float32(1e-4), 16))
            for v in T.unroll(ACC):
                out[t, T.ramp(v * 16, 1, 16)] = acc[T.ramp(v * 16, 1, 16)]

    return fma_peak


def _int8_kernel(threads: int, iters: int):
    @T.prim_func
    def vnni_peak(out: T.Buffer((threads, ACC * 16), "int32"),
                  a: T.Buffer((64,), "int8"), b: T.Buffer((64,), "int8")):
        T.func_attr({"tir.noalias": True})
        for t in T.parallel(threads):
            acc = T.alloc_buffer((ACC * 16,), "int32")
            for v in T.unroll(ACC):
                acc[T.ramp(v * 16, 1, 16)] = T.broadcast(T.int32(0), 16)
            for _ in T.serial(iters):
                for v in T.unroll(ACC):
                    acc[T.ramp(v * 16, 1, 16)] = T.call_llvm_pure_intrin(
                        "int32x16", "llvm.x86.avx512.vpdpbusd.512", acc[T.ramp(v * 16, 1, 16)],
                        a[T.ramp(0, 1, 64)], b[T.ramp(0, 1, 64)])
            for v in T.unroll(ACC):
                out[t, T.ramp(v * 16, 1, 16)] = acc[T.ramp(v * 16, 1, 16)]

    return vnni_peak


def fp32_peak(target, threads: int, iters: int = 40000) -> float:
    """FP32 GFLOP/s of FMA chains on all threads."""
    lib = tvm.compile(tvm.IRModule({"main": _fp32_kernel(threads, iters)}), target).mod
    out = tvm.runtime.tensor(np.zeros((threads, ACC * 16), np.float32))
    return 2 * 16 * ACC * iters * threads / _median_s(lib, out) / 1e9


def int8_peak(target, threads: int, iters: int = 40000) -> float:
    """INT8 GOP/s (multiply + add = 2 ops) of vpdpbusd chains on all threads."""
    lib = tvm.compile(tvm.IRModule({"main": _int8_kernel(threads, iters)}), target).mod
    out = tvm.runtime.tensor(np.zeros((threads, ACC * 16), np.int32))
    # LLVM >= 18 declares vpdpbusd on <64 x i8> operands.
    a = tvm.runtime.tensor(np.ones(64, np.int8))
    b = tvm.runtime.tensor(np.ones(64, np.int8))
    return 2 * 64 * ACC * iters * threads / _median_s(lib, out, a, b) / 1e9


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
    return 2 * 4 * n_floats / _median_s(lib, xs, ys, number=2) / 1e9


def measure(target_dict: dict | None = None) -> dict:
    """Measure the three peaks for ``target_dict`` (default: this machine)."""
    from tvm.target import codegen

    tdict = dict(target_dict or host_target())
    target = tvm.target.Target(tdict)
    threads = int(tdict.get("num-cores", os.cpu_count() or 1))
    vnni = bool(codegen.llvm_cpu_has_features(["avx512vnni"], target))
    return {
        "target": tdict,
        "peak_gflops_fp32": fp32_peak(target, threads),
        "peak_gops_int8": int8_peak(target, threads) if vnni else None,
        "bandwidth_gbs": bandwidth(target),
        "vnni": vnni,
        "threads": threads,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="store as a measured preset JSON")
    ap.add_argument("--name", default=None, help="preset name (default: <cpu>-<n>t)")
    args = ap.parse_args(argv)
    m = measure()
    print(f"target {json.dumps(m['target'])}: fp32 {m['peak_gflops_fp32']:.1f} GFLOP/s, "
          f"int8 {m['peak_gops_int8'] or float('nan'):.1f} GOP/s, "
          f"copy bandwidth {m['bandwidth_gbs']:.1f} GB/s")
    if args.write:
        if m["peak_gops_int8"] is None:
            raise SystemExit("no VNNI: int8 peak not measured; declare this CPU by hand")
        name = args.name or f"{m['target']['mcpu']}-{m['threads']}t"
        date = datetime.date.today().isoformat()
        cpu = platform.processor() or _cpu_model()
        preset = CpuPreset(
            name=name,
            description=f"{cpu} ({m['target']['mcpu']}), {m['threads']} threads; measured here",
            target=m["target"],
            peak_gflops_fp32=round(m["peak_gflops_fp32"], 1),
            peak_gops_int8=round(m["peak_gops_int8"], 1),
            bandwidth_gbs=round(m["bandwidth_gbs"], 1),
            source=f"measured on {date} by `TVM_NUM_THREADS={m['threads']} python -m "
            "aiq_tvm.targets.roofline --write` (FMA / vpdpbusd chains, 128 MiB copy)",
            vnni=True,
        )
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
    return "unknown CPU"


if __name__ == "__main__":
    raise SystemExit(main())
