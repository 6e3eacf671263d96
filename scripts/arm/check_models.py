"""Any model's aarch64 builds: dot-product kernels, cross export, host outputs on the board.

For each model and Arm ISA level (``+i8mm``, ``+dotprod``, plain NEON) and plan (uniform
``int8``; ``mixed``: every other conv/dense layer int4 between an int8 first and last layer),
this cross-builds the model from this x86 host (calibration runs on the host, once per
model), exports the library with the cross compiler and reads its disassembly: how many
integer kernels execute the level's int8 instructions (``usmmla``/``usdot``, ``sdot``,
``smull`` + ``sadalp``; depthwise layers multiply with plain NEON vectors, no reduction over
channels to dot). Then it runs the build on an aarch64 board over TVM RPC (``--rpc
host:port``; default the emulated board of ``scripts/arm/setup_emulation.sh``, qemu-user on
127.0.0.1) and compares the outputs with the host build of the same plan and calibration
(``BuildResult.run``: the deploy target's numerics on this machine). Correctness only:
nothing is timed (under emulation times mean nothing).

Models: ``resnet20`` / ``mobilenet_v2`` (shipped, 32 x 32) or ``tv/<name>`` (torchvision,
seeded random weights, 224 x 224, as ``scripts/bench_models.py``).

    TVM_NUM_THREADS=2 python scripts/arm/check_models.py --models tv/mobilenet_v3_small \\
        tv/regnet_x_400mf --jsonl arm_models.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/: bench_models

LEVELS = ("neon_i8mm", "neon_dotprod", "neon")
PLANS = ("int8", "mixed")
MIXED_LOW = "int4"


def arm_target(level: str) -> dict:
    from aiq_tvm.targets.capabilities import capabilities

    mattr = {"neon_i8mm": ["+neon", "+dotprod", "+i8mm"], "neon_dotprod": ["+neon", "+dotprod"],
             "neon": ["+neon"]}[level]
    target = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": mattr}
    assert capabilities(target).isa == level  # the level comes from the target's features
    return target


def mixed_plan(rows):
    """int4 on every other quantized layer, int8 on the rest and on the first and last."""
    from aiq_tvm.plan import Plan

    names = [r.name for r in rows if r.precision != "fp32"]
    return Plan({n: MIXED_LOW for n in names[1:-1:2]}, default="int8")


def is_depthwise(row) -> bool:
    return row.op == "depthwise_conv2d"


def kernel_evidence(lib: str, level: str, rows) -> dict:
    """Which integer kernels of the library execute the level's int8 instructions."""
    from aiq_tvm.passes._lowering import kernel_base
    from aiq_tvm.targets.arm.disassembly import (
        LEVEL_INSTRUCTIONS,
        instruction_counts,
        kernel_bodies,
    )

    depthwise = {kernel_base(r.name) for r in rows if is_depthwise(r)}
    bodies = kernel_bodies(lib)
    without, totals = [], dict.fromkeys(LEVEL_INSTRUCTIONS[level], 0)
    for name, body in bodies.items():
        counts = instruction_counts(body, LEVEL_INSTRUCTIONS[level])
        for k, v in counts.items():
            totals[k] += v
        if not any(counts.values()):
            layer = re.sub(r"_int[48]_compute_$", "", name)
            without.append(layer + (" (depthwise)" if layer in depthwise else ""))
    return {"integer_kernels": len(bodies), "instructions": totals,
            "kernels_without_level_instructions": without}


def compare(board: np.ndarray, host: np.ndarray) -> dict:
    b, h = board.astype(np.float64), host.astype(np.float64)
    cos = (b * h).sum(1) / (np.linalg.norm(b, axis=1) * np.linalg.norm(h, axis=1) + 1e-30)
    return {"bit_exact": bool(np.array_equal(board, host)),
            "max_rel_err": float(np.abs(b - h).max() / (np.abs(h).max() + 1e-30)),
            "min_cos": float(cos.min()), "top1_agree": float((b.argmax(1) == h.argmax(1)).mean())}


def validation_data(name: str, size: int, images: int) -> tuple[np.ndarray, np.ndarray]:
    """``images`` labelled validation images of a model name: ``tv/<name>`` at ``size``
    (Fashion-MNIST resized), ours at 32 x 32."""
    from bench_models import TV_PREFIX

    if name.startswith(TV_PREFIX):
        from aiq_tvm.models import torchvision_zoo as zoo

        return zoo.validation_images(images, size)
    from aiq_tvm import datasets

    return datasets.validation_set(images)


def load_inputs(name: str, size: int, images: int, calib: int):
    """(torch model, calibration images, ``images`` validation images) of a model name:
    ``tv/<name>`` at ``size``, ours at 32 x 32."""
    from bench_models import TV_PREFIX, load_model

    size = size if name.startswith(TV_PREFIX) else 32
    model, xc = load_model(name, size)
    return model, xc[:calib], validation_data(name, size, images)[0]


def plan_builds(mod, params, xc: np.ndarray, levels, plans, batch: int, val=None):
    """``(level, plan name, BuildResult or the exception it raised, build seconds)`` per level
    and plan. Calibration runs once per model, on the host, in the first int8 build, which
    is also that level's ``int8`` build (a model's first build includes its calibration).
    Plan ``aiq`` is the plan a user gets by default: the greedy search (lambda 0.9) over the
    target's default precisions, on ``val`` (labelled images)."""
    import aiq_tvm

    calibration = rows = None
    for level in levels:
        target = arm_target(level)
        for plan_name in plans:
            t0 = time.perf_counter()
            try:
                res = None
                if calibration is None:
                    first = aiq_tvm.build(mod, target, params=params, plan="int8",
                                          calib_data=xc, batch_size=batch)
                    calibration, rows = first.calibration, first.report.rows
                    res = first if plan_name == "int8" else None
                if res is None and plan_name == "aiq":
                    res = aiq_tvm.build(mod, target, params=params, calibration=calibration,
                                        val_data=val, batch_size=batch)
                elif res is None:
                    plan = mixed_plan(rows) if plan_name == "mixed" else plan_name
                    res = aiq_tvm.build(mod, target, params=params, plan=plan,
                                        calibration=calibration, batch_size=batch)
            except Exception as exc:  # one failing build must not hide the others
                res = exc
            yield level, plan_name, res, time.perf_counter() - t0


def precision_counts(rows) -> dict[str, int]:
    """Layers per precision of a build's report rows."""
    return dict(sorted({p: sum(r.precision == p for r in rows)
                        for p in {r.precision for r in rows}}.items()))


def emit(rec: dict, jsonl: str | None) -> None:
    """Print a record and append it to ``jsonl``."""
    print(json.dumps(rec), flush=True)
    if jsonl:
        with open(jsonl, "a") as f:
            f.write(json.dumps(rec) + "\n")


def error_record(exc: BaseException) -> dict:
    return {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:2000]}


def check_model(name: str, args, session) -> list[dict]:
    import torch

    import aiq_tvm

    model, xc, xv = load_inputs(name, args.size, args.images, args.calib)
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(xv[:1]))
    size = xv.shape[-1]
    records = []
    for level, plan_name, res, build_s in plan_builds(mod, params, xc, args.levels, args.plans,
                                                     args.batch):
        rec = {"model": name, "level": level, "plan": plan_name, "size": size,
               "images": len(xv), "batch": args.batch}
        try:
            if isinstance(res, Exception):
                raise res
            rec["build_s"] = build_s
            rec["precisions"] = precision_counts(res.report.rows)
            with tempfile.TemporaryDirectory(prefix="aiq-arm-") as tmp:
                lib = os.path.join(tmp, "model.so")
                res.export_library(lib)  # the cross compiler: aarch64-linux-gnu-g++
                rec["library_mb"] = os.path.getsize(lib) / 2**20
                rec.update(kernel_evidence(lib, level, res.report.rows))
            host = res.run(xv, args.batch)
            t1 = time.perf_counter()
            board = res.on_remote(session, args.batch).run(xv, args.batch)
            rec["board_s"] = time.perf_counter() - t1
            rec.update(compare(board, host))
            rec["status"] = "ok"
        except Exception as exc:  # one failing build must not hide the others
            rec.update(error_record(exc))
        emit(rec, args.jsonl)
        records.append(rec)
    return records


def render(records: list[dict]) -> str:
    head = ("| model | level | plan | layers (precision: count) | integer kernels with the "
            "level's int8 instructions | instructions | without (layer) | board = host | "
            "max rel. err | min cos | top-1 agree | build s (a model's first: with calibration) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in records:
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | {r['level']} | {r['plan']} | | | | | "
                         f"{r['error'][:200]} | | | | |")
            continue
        n, without = r["integer_kernels"], r["kernels_without_level_instructions"]
        others = [k for k in without if not k.endswith(" (depthwise)")]
        depthwise = len(without) - len(others)
        listed = ([f"{depthwise} depthwise"] if depthwise else []) + others
        precisions = ", ".join(f"{k}: {v}" for k, v in r["precisions"].items())
        instr = ", ".join(f"{k} {v}" for k, v in r["instructions"].items())
        lines.append(
            f"| {r['model']} | {r['level']} | {r['plan']} | {precisions} | {n - len(without)} "
            f"of {n} | {instr} | {', '.join(listed) or 'none'} | "
            f"{'bit for bit' if r['bit_exact'] else 'no'} | {r['max_rel_err']:.1e} | "
            f"{r['min_cos']:.6f} | {100 * r['top1_agree']:.0f} % | {r['build_s']:.0f} |")
    return "\n".join(lines)


def model_arguments(doc: str, plans) -> argparse.ArgumentParser:
    """The options both Arm model scripts take (models, levels, plans, inputs, records)."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=[], help="resnet20, mobilenet_v2, tv/NAME")
    ap.add_argument("--levels", nargs="+", default=list(LEVELS), choices=LEVELS)
    ap.add_argument("--plans", nargs="+", default=list(plans), choices=plans)
    ap.add_argument("--size", type=int, default=224, help="input resolution of tv/ models")
    ap.add_argument("--calib", type=int, default=32, help="calibration images (host)")
    ap.add_argument("--jsonl", default=None, help="append each record here")
    ap.add_argument("--render", nargs="+", default=None, metavar="JSONL",
                    help="only print the table of these records")
    return ap


def main(argv=None) -> int:
    ap = model_arguments(__doc__, PLANS)
    ap.add_argument("--images", type=int, default=2, help="images run on board and host")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rpc", default=None, metavar="HOST:PORT",
                    help="an aarch64 board's TVM RPC server (default: the emulated board)")
    args = ap.parse_args(argv)
    if args.render:
        print(render([json.loads(line) for p in args.render for line in open(p)]))
        return 0
    if not args.models:
        ap.error("give --models (or --render)")

    from aiq_tvm.deploy import connect
    from aiq_tvm.targets.arm import RPCServer

    records = []
    if args.rpc:
        session = connect(args.rpc)
        for name in args.models:
            records += check_model(name, args, session)
    else:
        with RPCServer.emulated_aarch64() as server:
            session = server.connect()
            for name in args.models:
                records += check_model(name, args, session)
    print(render(records))
    bad = [r for r in records if r["status"] != "ok"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
