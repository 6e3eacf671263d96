"""Grouped and depthwise conv shapes of torchvision models, and whether AIQ has a kernel.

For each model (``weights=None``; only the module structure is read) every ``nn.Conv2d`` with
``groups > 1`` is counted by (C, O, groups, kernel, stride); a row says whether it is depthwise
and, for grouped convs (1 < groups < C), the reason it has no kernel or the channel vector
width it gets on a 16-lane (AVX-512) target.

    python scripts/grouped_conv_shapes.py --models resnext50_32x4d regnet_x_400mf
    python scripts/grouped_conv_shapes.py --summary
"""

from __future__ import annotations

import argparse
from collections import Counter

DEFAULT_MODELS = ("resnext50_32x4d", "regnet_x_400mf", "regnet_y_400mf", "regnet_x_1_6gf",
                  "regnet_y_800mf", "shufflenet_v2_x1_0")


def grouped_rows(name: str) -> list[tuple]:
    """``(C, O, groups, k, stride, count)`` of every conv with groups > 1 in model ``name``."""
    import torch
    import torchvision

    model = torchvision.models.get_model(name, weights=None)
    shapes = Counter((m.in_channels, m.out_channels, m.groups, m.kernel_size[0], m.stride[0])
                     for m in model.modules()
                     if isinstance(m, torch.nn.Conv2d) and m.groups > 1)
    return [(*k, v) for k, v in sorted(shapes.items())]


AVX512 = {"kind": "llvm", "mcpu": "znver4"}


def kernel_note(c: int, o: int, groups: int) -> str:
    """"depthwise", the reason a grouped conv has no kernel, or its vector width on
    AVX-512 (what ``conv2d_kernel`` picks)."""
    from aiq_tvm.targets.x86 import ConvSpec, cpu_model
    from aiq_tvm.targets.x86.conv2d import group_lanes, grouped_reason

    if groups == c:
        return "depthwise"
    reason = grouped_reason(c, o, groups)
    if reason:
        return f"FP32: {reason}"
    lanes = group_lanes(ConvSpec(1, 8, 8, c, o, 3, 3, padding=1, groups=groups),
                        cpu_model(AVX512))
    return f"{lanes}-lane vectors"


def _widest_first(note: str) -> tuple:
    """Vector widths, widest first, then the FP32 reasons."""
    lanes = note.split("-")[0]
    return (0, -int(lanes), note) if lanes.isdigit() else (1, 0, note)


def summary_row(name: str, rows: list[tuple]) -> str:
    """One line per model: grouped / depthwise layer counts, channels per group, notes."""
    grouped = [r for r in rows if r[2] != r[0]]
    widths = sorted({r[0] // r[2] for r in grouped})
    notes = sorted({kernel_note(*r[:3]) for r in grouped}, key=_widest_first)
    return (f"| {name} | {sum(r[5] for r in grouped)} | "
            f"{', '.join(map(str, widths)) or '-'} | {'; '.join(notes) or '-'} | "
            f"{sum(r[5] for r in rows if r[2] == r[0])} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    ap.add_argument("--summary", action="store_true", help="one row per model")
    args = ap.parse_args(argv)
    if args.summary:
        print("| model | grouped convs | C/G | AIQ kernel (AVX-512) | depthwise convs |")
        print("|---|---|---|---|---|")
        for name in args.models:
            print(summary_row(name, grouped_rows(name)))
        return 0
    print("| model | C | O | groups | C/G | O/G | kernel | stride | layers | AIQ |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        for c, o, g, k, s, n in grouped_rows(name):
            print(f"| {name} | {c} | {o} | {g} | {c // g} | {o // g} | {k}x{k} | {s} | {n} | "
                  f"{kernel_note(c, o, g)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
