"""Build cost of an ImageNet-size model: wall and CPU time per build phase, and the memory the
built module needs to run.

Build: ``aiq_tvm.build`` of one torchvision model (``tv/<name>`` conventions of
``bench_models.py``) at one plan, with the phase timings ``BuildResult.timings`` records
(calibration, compile) and the process CPU time beside the wall time (on a shared machine the
wall time includes waiting for a core; the CPU time does not).  LLVM emits the machine code
only when the module is exported (or first run), so the export is timed too and
``build_export_*`` is the time from a Relax module to a loadable library.  Import
(``from_torch``) is reported separately.  With ``--profile N`` the build also runs under
``cProfile`` and the N most expensive functions (cumulative time) are printed.

Memory: the module is exported and loaded in a fresh process.  By default the export is
the library (code only) and its weights file beside it (``model.so`` + ``model.params``, loaded
by ``aiq_tvm.load``, which reads the weights straight into tensors); ``--single-file`` exports
one library with the weights embedded as constants (TVM copies them while loading it).  The
fresh process resets its peak-RSS counter (``/proc/self/clear_refs``), then records its
resident set before loading, after loading (with the peak so far: the load peak) and after
``--runs`` inferences, each with the anonymous / file-backed split (anonymous: tensors, heap;
file: the mapped library).  The growth is compared with the bytes of the model's weights (FP32,
as torch holds them), of the layers' weights as the plan stores them (int8 / packed int4) and
of the exported files.

    TVM_NUM_THREADS=2 flock /work/bench.lock python scripts/measure_build.py \
        --model resnet50 --plan int8 [--single-file]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {key} line")


def _rss_mb() -> float:
    return _status_mb("VmRSS")


def _peak_mb() -> float:
    # VmHWM belongs to this process image; getrusage's ru_maxrss survives exec, so in the
    # fresh process it would report the (much larger) building parent's peak.
    return _status_mb("VmHWM")


def _rss_parts_mb() -> dict:
    """Resident memory split into anonymous pages (tensors, heap) and file pages (the mapped
    library)."""
    return {"anon": _status_mb("RssAnon"), "file": _status_mb("RssFile")}


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the peak is the load's, not the
    imports'; False when the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def run_library(path: str, shape: tuple, runs: int) -> dict:
    """(In a fresh process) load the exported module, run it, report resident memory."""
    import tvm

    from aiq_tvm.weights import load

    reset = _reset_peak()
    base, base_parts = _rss_mb(), _rss_parts_mb()
    t0 = time.perf_counter()
    vm = load(path)  # the library, and its weights file when it has one
    load_s = time.perf_counter() - t0
    loaded, load_peak, loaded_parts = _rss_mb(), _peak_mb(), _rss_parts_mb()
    x = tvm.runtime.tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    for _ in range(runs):
        vm["main"](x)
    parts = _rss_parts_mb()
    return {"peak_reset_before_load": reset, "load_s": load_s, "weights": len(vm.weights),
            "rss_before_load_mb": base, "rss_loaded_mb": loaded,
            "rss_after_runs_mb": _rss_mb(), "peak_rss_mb": _peak_mb(),
            "peak_rss_after_load_mb": load_peak,
            "anon_growth_loaded_mb": loaded_parts["anon"] - base_parts["anon"],
            "file_growth_loaded_mb": loaded_parts["file"] - base_parts["file"],
            "anon_growth_after_runs_mb": parts["anon"] - base_parts["anon"],
            "file_growth_after_runs_mb": parts["file"] - base_parts["file"]}


def plan_weight_mb(res) -> float:
    """MB of the layers' weights as the plan stores them (int8 1 byte, packed int4 0.5 byte,
    FP32 4 bytes per value); biases and scales are not counted."""
    from aiq_tvm.cost import get_precision

    assignment = res.cost.full_assignment(res.plan.resolve(res.cost.searchable))
    return sum(lc.weight_elems * get_precision(assignment[lc.name]).weight_bytes
               for lc in res.cost.layers) / 2**20


def calibration_files_mb(cal, folder: Path) -> dict:
    """Size of the calibration a user saves beside a plan (``Calibration.save``: the JSON and
    GPTQ's second moments), against the moments' size in memory."""
    if cal is None:
        return {}
    cal.save(folder / "calibration.json")
    files = [folder / "calibration.json", folder / "calibration.hessians.npz"]
    return {"calibration_files_mb": sum(f.stat().st_size for f in files if f.is_file()) / 2**20,
            "hessians_in_memory_mb": sum(h.nbytes for h in cal.hessians.values()) / 2**20}


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def measure(args) -> dict:
    import torch

    import aiq_tvm
    from aiq_tvm.models import torchvision_zoo as zoo

    model = zoo.torchvision_model(args.model, size=args.size)
    calib = zoo.calibration_images(args.calib, args.size)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    out = {"model": args.model, "plan": args.plan, "size": args.size, "batch": args.batch,
           "weights_mb": weight_bytes / 2**20}
    w0, c0 = time.perf_counter(), _cpu_s()
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
    out["import_wall_s"], out["import_cpu_s"] = time.perf_counter() - w0, _cpu_s() - c0
    del model
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    w0, c0 = time.perf_counter(), _cpu_s()
    res = aiq_tvm.build(mod, params=params, plan=args.plan, calib_data=calib,
                        batch_size=args.batch, eval_batch_size=min(args.calib, 16))
    out["build_wall_s"], out["build_cpu_s"] = time.perf_counter() - w0, _cpu_s() - c0
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.profile)
    out["phases_s"] = {k: round(v, 2) for k, v in res.timings.items()}
    out["build_peak_rss_mb"] = _peak_mb()
    out["plan_weights_mb"] = plan_weight_mb(res)
    with tempfile.TemporaryDirectory() as tmp:
        out |= calibration_files_mb(res.calibration, Path(tmp))
        path = str(Path(tmp) / "model.so")
        w0, c0 = time.perf_counter(), _cpu_s()
        # machine code is emitted here (or at first JIT)
        written = res.export_library(path, args.batch, single_file=args.single_file)
        out["export_wall_s"], out["export_cpu_s"] = time.perf_counter() - w0, _cpu_s() - c0
        out["build_export_wall_s"] = out["build_wall_s"] + out["export_wall_s"]
        out["build_export_cpu_s"] = out["build_cpu_s"] + out["export_cpu_s"]
        out["layout"] = "single file" if args.single_file else "library + weights file"
        out["library_mb"] = Path(path).stat().st_size / 2**20
        out["weights_file_mb"] = sum(Path(f).stat().st_size for f in written[1:]) / 2**20
        shape = (args.batch, 3, args.size, args.size)
        cmd = [sys.executable, __file__, "--run-library", path, "--shape",
               ",".join(map(str, shape)), "--runs", str(args.runs)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out["run"] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out | growth(out["run"], out["weights_mb"], out["plan_weights_mb"],
                        out["library_mb"] + out["weights_file_mb"])


def growth(run: dict, fp32_mb: float, plan_mb: float, files_mb: float) -> dict:
    """Resident growth over the fresh process's baseline: at its peak (whole run), at the
    load peak and after the runs (steady), against the weights and the exported files."""
    base = run["rss_before_load_mb"]
    out = {"run_growth_mb": run["peak_rss_mb"] - base,
           "load_peak_growth_mb": run["peak_rss_after_load_mb"] - base,
           # after the runs: what stays resident
           "steady_growth_mb": run["rss_after_runs_mb"] - base}
    out["run_growth_vs_fp32_weights"] = out["run_growth_mb"] / fp32_mb
    out["run_growth_vs_exported_files"] = out["run_growth_mb"] / files_mb
    for key in ("run_growth", "load_peak_growth", "steady_growth"):
        out[f"{key}_vs_plan_weights"] = out[f"{key}_mb"] / plan_mb
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet50", help="torchvision model name")
    ap.add_argument("--plan", default="int8", help="precision (uniform plan)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--calib", type=int, default=32, help="calibration images")
    ap.add_argument("--runs", type=int, default=3, help="inferences in the memory check")
    ap.add_argument("--profile", type=int, default=0, help="cProfile: print the top N")
    ap.add_argument("--json", default=None, help="append the record to this JSON-lines file")
    ap.add_argument("--single-file", action="store_true",
                    help="export one library with the weights embedded (the old layout)")
    ap.add_argument("--run-library", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--shape", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ.setdefault("TVM_NUM_THREADS", "2")
    # PyTorch's spinning OpenMP workers crawl on a shared host (see scripts/train.py); set
    # before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if args.run_library:
        shape = tuple(int(s) for s in args.shape.split(","))
        print(json.dumps(run_library(args.run_library, shape, args.runs)))
        return 0
    rec = measure(args)
    words = " ".join(argv if argv is not None else sys.argv[1:])
    rec["command"] = f"TVM_NUM_THREADS={os.environ['TVM_NUM_THREADS']} python " \
                     f"scripts/measure_build.py {words}"
    print(json.dumps(rec, indent=1))
    if args.json:
        with open(args.json, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
