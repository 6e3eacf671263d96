"""Figures of ``aiq-tvm sweep``: the Pareto front, the roofline, precision per layer (matplotlib).

* ``pareto.png``: validation accuracy against model AI (FLOP/byte) and against measured
  latency (ms), one point per lambda, uniform FP32 / int8 / int4 marked.
* ``roofline.png``: the target preset's roofline (FP32 and int8 compute roofs, memory
  bandwidth) with every layer at FP32 and at the plan's precision.
* ``layers.png``: each layer's precision at each lambda in network order, under a bar of the
  layer's weight count (wider layers are the taller bars).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["pareto_front", "pareto_png", "roofline_png", "layers_png", "PRECISION_COLORS"]

PRECISION_COLORS = {"fp32": "#4c72b0", "w8": "#8fb3de", "w4": "#c5d8ef", "int8": "#dd8452",
                    "int4": "#c44e52"}
_REF_STYLE = {"fp32": ("s", "#4c72b0"), "int8": ("D", "#dd8452"), "int4": ("^", "#c44e52")}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats in both coordinates (higher is better)."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 >= x and y2 >= y) and (x2 > x or y2 > y)
                        for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def _panel(ax, points, refs, key, front, xlabel, log=False):
    xs = [p[key] for p in points]
    ys = [100 * p["accuracy"] for p in points]
    ax.scatter(xs, ys, color="#55a868", zorder=3, label="AIQ plans (lambda)")
    # lambdas that chose the same plan sit on one point: one label naming all of them
    # (separate labels were drawn over each other and hid all but the last)
    labels: dict[tuple[float, float], list[str]] = {}
    for p, x, y in zip(points, xs, ys, strict=True):
        labels.setdefault((x, y), []).append(f"{p['lambda']:g}")
    for (x, y), lams in labels.items():
        ax.annotate(", ".join(lams), (x, y), textcoords="offset points", xytext=(4, 4),
                    fontsize=8)
    if len(front) > 1:
        ax.plot([xs[i] for i in front], [ys[i] for i in front], color="#55a868", lw=1,
                zorder=2, label="Pareto front")
    for name, r in refs.items():
        if key in r:
            marker, color = _REF_STYLE.get(name, ("o", "gray"))
            ax.scatter([r[key]], [100 * r["accuracy"]], marker=marker, s=70, color=color,
                       edgecolor="black", zorder=4, label=f"uniform {name}")
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    ax.margins(0.1)


def pareto_png(pareto: dict, path: Path, title: str) -> None:
    """Accuracy vs AI and vs latency (see the module docstring)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    pts, refs = pareto["points"], pareto["references"]
    _panel(axes[0], pts, refs, "ai", pareto["front_ai"], "model arithmetic intensity (FLOP/byte)")
    front_lat = pareto["front_latency"]
    _panel(axes[1], pts, refs, "latency_ms", front_lat,
           f"measured latency at batch {pareto['batch']} (ms, lower is better)")
    axes[0].set_title("accuracy vs arithmetic intensity")
    axes[1].set_title("accuracy vs latency on this machine")
    fig.suptitle(title)
    # one legend below both panels: inside a panel it hid reference points
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def roofline_png(cost, preset, assignment: dict, path: Path, title: str) -> None:
    """Each layer at FP32 and at its planned precision under the preset's roofline."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 6))
    bw, p32, p8 = preset.bandwidth_gbs, preset.peak_gflops_fp32, preset.peak_gops_int8
    fp32 = {n: "fp32" for n in cost.names}
    full = cost.full_assignment({k: v for k, v in assignment.items() if k in cost.names})
    ais = []
    for name in cost.names:
        for plan, filled in ((fp32, False), (full, True)):
            pt = cost.roofline(name, plan, preset)
            ais.append(pt.ai)
            perf = min(pt.peak_ops / 1e9, pt.ai * bw)
            prec = plan[name]
            color = PRECISION_COLORS.get(prec, "gray")
            ax.scatter([pt.ai], [perf], s=28, zorder=3, color=color if filled else "none",
                       edgecolor=color, linewidths=1.2)
        a0 = cost.roofline(name, fp32, preset)
        a1 = cost.roofline(name, full, preset)
        ax.annotate("", (a1.ai, min(a1.peak_ops / 1e9, a1.ai * bw)),
                    (a0.ai, min(a0.peak_ops / 1e9, a0.ai * bw)),
                    arrowprops={"arrowstyle": "-", "color": "0.7", "lw": 0.6}, zorder=1)
    lo, hi = max(min(ais) / 2, 1e-2), max(ais) * 2
    x = np.logspace(np.log10(lo), np.log10(hi), 200)
    ax.plot(x, np.minimum(x * bw, p32), color=PRECISION_COLORS["fp32"], lw=2,
            label=f"FP32 roof: {p32:.0f} GFLOP/s, {bw:.0f} GB/s")
    ax.plot(x, np.minimum(x * bw, p8), color=PRECISION_COLORS["int8"], lw=2, ls="--",
            label=f"int8 roof: {p8:.0f} GOP/s")
    for prec, color in PRECISION_COLORS.items():
        if prec in full.values():
            ax.scatter([], [], color=color, label=f"layer at {prec} (plan)")
    ax.scatter([], [], color="none", edgecolor="black", label="layer at FP32 (hollow)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("attainable performance (GFLOP/s)")
    ax.set_title(f"{title}\nroofline preset {preset.name}", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def layers_png(cost, points: list[dict], path: Path, title: str) -> None:
    """Precision of every layer at every lambda, network order left to right."""
    plt = _pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    names = cost.names
    precs = list(PRECISION_COLORS)
    grid = np.array([[precs.index(cost.full_assignment(
        {k: v for k, v in p["plan"].items() if k in cost.names})[n]) for n in names]
        for p in points])
    width = max(8.0, 0.22 * len(names) + 2)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(width, 2.2 + 0.45 * len(points) + 2),
                                      sharex=True, gridspec_kw={"height_ratios": [1.2, 1 + 0.3 *
                                                                                 len(points)]})
    top.bar(range(len(names)), [cost[n].weight_elems for n in names], color="0.55")
    top.set_yscale("log")
    top.set_ylabel("weights (elements)")
    top.set_title(title)
    top.grid(alpha=0.3, axis="y")
    bottom.imshow(grid, aspect="auto", cmap=ListedColormap(list(PRECISION_COLORS.values())),
                  vmin=-0.5, vmax=len(precs) - 0.5, interpolation="nearest")
    bottom.set_yticks(range(len(points)), [f"lambda {p['lambda']:g}" for p in points])
    bottom.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    bottom.set_xlabel("layer (network order)")
    used = sorted({precs[i] for i in grid.flat}, key=precs.index)
    top.legend(handles=[Patch(color=PRECISION_COLORS[p], label=p) for p in used],
               title="precision (below)", fontsize=8, loc="upper left",
               bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
