"""int4 conv kernels: unpacking in the inner loop vs decoding once per call, against int8.

For every layer shape and batch, builds the int8 kernel and the int4 kernel three ways
(``decode_once`` False: nibbles unpacked per register block; True: decoded once per call into
an int8 scratch; None: the planner's choice), checks each int4 kernel's integer accumulator
against the numpy reference, then times all of them interleaved in rounds and prints medians
(ms per call) and speed-ups over int8 (int8 time / int4 time: > 1 is faster than int8).
Beside them, the cost model's int8 / int4 ratio twice: ``modelled`` with the builders' weight
term (``Kernel.info["modelled_cycles"]``) and ``floor model`` with the speed floor's, from the
target (``targets.memory``): the loop re-reads one layer's weights, so those are the weights
that stay in the last-level cache or not.
Use ``--clock cpu`` with ``TVM_NUM_THREADS=1`` on a shared machine.

Usage::

    TVM_NUM_THREADS=1 python scripts/bench_int4_decode.py --clock cpu [--batches 1 8]
        [--only SUBSTRING] [--rounds 9] [--round-ms 100] [--target JSON]
        [--models tv/resnet18 tv/resnet50 ...] [--variants int8 "int4 no-block" "int4 planner"]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

os.environ.setdefault("TVM_NUM_THREADS", "1")

import tvm  # noqa: E402

from aiq_tvm import quant  # noqa: E402
from aiq_tvm.bench import CLOCKS, Timer  # noqa: E402
from aiq_tvm.quant import ActQParams  # noqa: E402
from aiq_tvm.targets import resolve_target  # noqa: E402
from aiq_tvm.targets.memory import weight_memory  # noqa: E402
from aiq_tvm.targets.x86 import ConvSpec, conv2d_cycles, conv2d_kernel  # noqa: E402

# ResNet-50 (and its stem) and MobileNetV2's 7 x 7 and depthwise layers at 224 x 224: (name, H,
# W, C, O, K, stride, padding[, groups]).
SHAPES = [
    ("stem 7x7/2 3-64 @224", 224, 224, 3, 64, 7, 2, 3),
    ("3x3 64-64 @56", 56, 56, 64, 64, 3, 1, 1),
    ("1x1 64-256 @56", 56, 56, 64, 256, 1, 1, 0),
    ("1x1 256-64 @56", 56, 56, 256, 64, 1, 1, 0),
    ("3x3 128-128 @28", 28, 28, 128, 128, 3, 1, 1),
    ("1x1 512-128 @28", 28, 28, 512, 128, 1, 1, 0),
    ("3x3 256-256 @14", 14, 14, 256, 256, 3, 1, 1),
    ("1x1 1024-256 @14", 14, 14, 1024, 256, 1, 1, 0),
    ("3x3 512-512 @7", 7, 7, 512, 512, 3, 1, 1),
    ("1x1 2048-512 @7", 7, 7, 2048, 512, 1, 1, 0),
    ("1x1 160-960 @7", 7, 7, 160, 960, 1, 1, 0),
    ("1x1 960-160 @7", 7, 7, 960, 160, 1, 1, 0),
    ("dw 3x3/2 96 @112", 112, 112, 96, 96, 3, 2, 1, 96),
    ("dw 3x3 144 @56", 56, 56, 144, 144, 3, 1, 1, 144),
    ("dw 3x3 576 @14", 14, 14, 576, 576, 3, 1, 1, 576),
    ("dw 3x3 960 @7", 7, 7, 960, 960, 3, 1, 1, 960),
]
# name: (scheme, decode_once, AIQ_INT4_BLOCK_DECODE while planning)
VARIANTS = {"int8": ("int8", None, ""), "int4 in-loop": ("int4", False, ""),
            "int4 decode": ("int4", True, ""), "int4 planner": ("int4", None, ""),
            "int4 no-block": ("int4", None, "0")}  # fmt: skip
DEFAULT_VARIANTS = ["int8", "int4 in-loop", "int4 decode", "int4 planner"]


def model_shapes(models: list[str], size: int = 224) -> list[tuple]:
    """Every distinct conv shape of torchvision ``models`` (``tv/NAME``) at ``size``, in
    :data:`SHAPES`' form, named after the first model that has it."""
    import torch
    import torchvision

    seen = {}
    for model in models:
        name = model.removeprefix("tv/")
        net = getattr(torchvision.models, name)(weights=None).eval()
        hooks = [m.register_forward_hook(_shape_hook(seen, name)) for m in net.modules()
                 if isinstance(m, torch.nn.Conv2d)]  # fmt: skip
        with torch.no_grad():
            net(torch.zeros(1, 3, size, size))
        for h in hooks:
            h.remove()
    return list(seen.values())


def _shape_hook(seen: dict, model: str):
    def hook(mod, inp, _out):
        h, w = inp[0].shape[2:]
        (k, _), (s, _), (p, _) = mod.kernel_size, mod.stride, mod.padding
        key = (h, w, mod.in_channels, mod.out_channels, k, s, p, mod.groups)
        kind = "dw " if mod.groups > 1 else ""
        label = (f"{model} {kind}{k}x{k}{f'/{s}' if s > 1 else ''} {mod.in_channels}-"
                 f"{mod.out_channels} @{h}")
        seen.setdefault(key, (label, *key))

    return hook


def build(spec: ConvSpec, target, rng, variants: list[str], cold_bytes: int = 0):
    """Kernels of ``variants`` (int4 accumulators checked exactly) and their input; with
    ``cold_bytes``, each call takes the next of enough copies of the kernel's constants to
    total that many bytes, so its weights come from memory rather than cache."""
    x = rng.standard_normal(spec.in_shape).astype(np.float32) + 0.3
    w = rng.standard_normal(spec.weight_shape) / np.sqrt(np.prod(spec.weight_shape[1:]))
    w = w.astype(np.float32)
    qp = ActQParams.from_range(float(x.min()), float(x.max()))
    xq = quant.quantize_act(x, qp)
    out = {}
    for name in variants:
        scheme, dec, block = VARIANTS[name]
        kw = dict(act_qparams=qp, target=target, decode_once=dec)
        os.environ["AIQ_INT4_BLOCK_DECODE"] = block
        try:
            k = conv2d_kernel(spec, scheme, w, None, **kw)
            if scheme == "int4":
                check_exact(spec, w, qp, xq, target, kw)
        finally:
            os.environ.pop("AIQ_INT4_BLOCK_DECODE")
        ex = tvm.compile(tvm.IRModule({"main": k.prim_func}), target)
        x_t = tvm.runtime.tensor(xq)
        y_t = tvm.runtime.tensor(np.zeros(k.out_shape, k.out_dtype))
        nbytes = sum(c.nbytes for c in k.consts)
        copies = max(1, -(-cold_bytes // nbytes)) if cold_bytes else 1
        sets = [[x_t, *(tvm.runtime.tensor(c) for c in k.consts), y_t] for _ in range(copies)]
        f = ex.mod["main"]
        out[name] = (k, _rotating(f, sets))
    return out


def _rotating(f, sets: list):
    """A call of ``f`` on the next argument set (round robin)."""
    state = {"i": 0}

    def call():
        f(*sets[state["i"]])
        state["i"] = (state["i"] + 1) % len(sets)

    return call


def floor_ratio(spec: ConvSpec, target, mem, scheme: str, cold_bytes: float = 0) -> float:
    """int8 / ``scheme`` modelled cycles with the speed floor's weight read, for a loop that
    re-reads this layer's weights alone (or ``cold_bytes`` of copies of them)."""
    from aiq_tvm.schemes import get_precision

    elems = int(np.prod(spec.weight_shape))

    def cycles(p):
        read = mem.reader(cold_bytes or elems * get_precision(p).weight_bytes)
        return conv2d_cycles(spec, p, target, read=read)

    return cycles("int8") / cycles(scheme)


def check_exact(spec, w, qp, xq, target, kw) -> None:
    """The int4 kernel's ``acc - corr`` equals the numpy reference's (SystemExit if not)."""
    k = conv2d_kernel(spec, "int4", w, None, debug_acc=True, **kw)
    ex = tvm.compile(tvm.IRModule({"main": k.prim_func}), target)
    y = tvm.runtime.tensor(np.zeros(k.out_shape, "int32"))
    ex.mod["main"](*[tvm.runtime.tensor(a) for a in (xq, *k.consts)], y)
    ref = quant.ref_conv2d(xq, w, None, "int4", stride=spec.stride, padding=spec.padding,
                           groups=spec.groups, act_qparams=qp)
    if not np.array_equal(y.numpy(), ref.acc):
        sys.exit(f"int4 kernel (decode_once={kw['decode_once']}) of {spec} is not exact")


def time_variants(kernels: dict, rounds: int, round_ms: float, clock: str) -> dict:
    """Median ms per call of every variant over interleaved rounds."""
    timers = {nm: Timer(fn, clock) for nm, (_, fn) in kernels.items()}
    samples = {nm: [] for nm in timers}
    for _ in range(rounds):
        for nm, t in timers.items():
            samples[nm].append(t(round_ms))
    return {nm: float(np.median(v)) * 1e3 for nm, v in samples.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--only", nargs="+", default=None,
                    help="shapes whose name contains one of these")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--round-ms", type=float, default=100.0)
    ap.add_argument("--clock", choices=list(CLOCKS), default="wall")
    ap.add_argument("--target", default="llvm",
                    help="'llvm' (this machine), a preset, a target string or JSON")
    ap.add_argument("--json", default=None, help="save the rows as JSON")
    ap.add_argument("--cold-mib", type=float, default=0.0,
                    help="rotate every kernel through copies of its constants totalling this "
                    "many MiB (above the last-level cache: weights read from memory); the "
                    "floor model then assumes a model of that size")
    ap.add_argument("--models", nargs="+", default=None, metavar="tv/NAME",
                    help="every distinct conv shape of these torchvision models at 224 x 224 "
                         "instead of the built-in ResNet-50 / MobileNetV2 list")
    ap.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS),
                    help="kernels to time; the first is the baseline of the ratios ('int4 "
                         "no-block': the planner without the per-block decode)")
    args = ap.parse_args()
    if args.variants[0] != "int8":
        ap.error(f"the first of --variants must be int8, got {args.variants[0]!r}")
    shapes = model_shapes(args.models) if args.models else SHAPES
    target, preset = resolve_target(args.target)
    mem = weight_memory(target, preset)
    print(f"target {target}  TVM_NUM_THREADS={os.environ['TVM_NUM_THREADS']}  "
          f"clock {args.clock}  medians of {args.rounds} rounds of {args.round_ms:g} ms\n"
          f"floor model: {mem.describe()}\n")
    names = args.variants
    last = names[-1]
    print("| layer | batch | " + " | ".join(f"{n} ms" for n in names) + " | "
          + " | ".join(f"{n.removeprefix('int4 ')} vs int8" for n in names[1:])
          + f" | {last} format | {last} decode | modelled {last} vs int8 | floor model |")
    print("|---|---|" + "---|" * (2 * len(names) + 3))
    rows = []
    rng = np.random.default_rng(0)
    for label, h, w, c, o, k, s, p, *groups in shapes:
        if args.only and not any(o in label for o in args.only):
            continue
        for n in args.batches:
            spec = ConvSpec(n, h, w, c, o, k, k, stride=s, padding=p, groups=(groups or [1])[0])
            kernels = build(spec, target, rng, names, int(args.cold_mib * 2**20))
            ms = time_variants(kernels, args.rounds, args.round_ms, args.clock)
            info = kernels[last][0].info
            fmt, at = info["weight_format"], info.get("decode_at", "-")
            ratios = [ms["int8"] / ms[v] for v in names[1:]]
            # the cost model's int8 / int4 speed-up (Kernel.info["modelled_cycles"])
            model = kernels["int8"][0].info["modelled_cycles"] / info["modelled_cycles"]
            floor = floor_ratio(spec, target, mem, VARIANTS[last][0], args.cold_mib * 2**20)
            print(f"| {label} | {n} | " + " | ".join(f"{ms[v]:.3f}" for v in names) + " | "
                  + " | ".join(f"{r:.2f}x" for r in ratios) + f" | {fmt} | {at} | "
                  f"{model:.2f}x | {floor:.2f}x |", flush=True)  # fmt: skip
            rows.append({"layer": label, "batch": n, "ms": ms, "planner_format": fmt,
                         "decode_at": at, "schedule": info["schedule"],
                         "modelled_speedup": model, "floor_modelled_speedup": floor})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
