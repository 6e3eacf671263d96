"""docs/presets.md: every CPU preset with its source, and the preset example targets get.

    python -m aiq_tvm.targets.presets_doc --markdown docs/presets.md
"""

from __future__ import annotations

import json

from .presets import PRESETS

__all__ = ["presets_markdown"]


_MEASURE = ("flock /work/wt/bench.lock env TVM_NUM_THREADS=2 python -m "
            "aiq_tvm.targets.roofline --target '<target>' [--int8 vpmaddwd] --write --name <name>")


def _llc_cell(extra: dict) -> str:
    listed, usable = extra.get("llc_bytes"), extra.get("llc_usable_bytes")
    if not listed:
        return "-"
    cell = f"{listed / 2**20:g}"
    return cell + (f" / {usable / 2**20:.1f}" if usable and usable < listed else "")


def presets_markdown(targets: dict | None = None, host_lacks: dict | None = None) -> str:
    """docs/presets.md: every preset with its source, and what given targets get.

    ``targets`` maps a label to ``(target spec, CpuPreset)`` as :func:`resolve_target`
    returns them, to show matching, scaling and estimation on real targets; ``host_lacks``
    maps preset names to the ISA features the machine writing the page lacks (why their
    peaks could not be measured there).
    """
    out = ["# CPU presets (roofline peaks)", "",
           "Written by `python -m aiq_tvm.targets.presets_doc --markdown docs/presets.md`; every "
           "figure below is printed by that command from the presets shipped in "
           "`targets/presets.py` (declared, from data sheets) and `targets/presets/*.json` "
           "(measured by the roofline probe, command in each source).", "",
           "INT8 GOP/s count 2 ops per int8 multiply-add with the ISA level's int8 instruction; "
           "`int8/fp32` is the ratio of the two peaks. Measured presets ran the probe as "
           f"`{_MEASURE}` (the source of each gives its exact command inside the lock). "
           "Compute peaks time the chains on one core by the CPU time of its thread and "
           "multiply by the cores: the machine is shared, and the wall clock would count other "
           "processes' turns on the cores (`nice` does not help: the kernel groups tasks per "
           "session). Bandwidth is the copy on all cores timed by the process's CPU time per "
           "thread (a thread waiting for the other at the end of the copy still counts, so it "
           "errs low). Every probe runs "
           "several times in turn, a run's figure is the median of its timed calls and the "
           "preset takes the median of the runs (section *Measured runs*, with the all-core "
           "wall-clock figures for comparison).", "",
           "`LLC MiB` is the last-level cache sysfs listed where the preset was measured "
           "(`roofline --cache`), and after a slash the share this process could use by the "
           "pointer-chase latency probe (`targets/llc.py`), where it read one smaller than the "
           "listed size.", "",
           "| preset | ISA level | int8 instruction | cores | fp32 GFLOP/s | int8 GOP/s | "
           "int8/fp32 | GB/s | LLC MiB | basis |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for p in PRESETS.values():
        out.append(f"| `{p.name}` | {p.isa} | {p.int8_dot} | {p.cores} | "
                   f"{p.peak_gflops_fp32:.1f} | {p.peak_gops_int8:.1f} | "
                   f"{p.peak_gops_int8 / p.peak_gflops_fp32:.2f} | {p.bandwidth_gbs:.1f} | "
                   f"{_llc_cell(p.extra)} | {p.basis} |")
    out += ["", "## Sources", ""]
    out += [f"- `{p.name}`: {p.description}. Source: {p.source}." for p in PRESETS.values()]
    out += _runs_section()
    if host_lacks:
        out += ["", "## Not measurable on the machine that wrote this page", ""]
        out += [f"- `{name}`: this machine lacks {', '.join(lacks)}, so it cannot execute "
                "the probe built for it; the figures are from its source above (data sheets, "
                "or a measurement on another machine), not from this machine."
                for name, lacks in host_lacks.items()]
    out += ["", "## How a target gets its preset", "",
            "`resolve_target` (and so `aiq_tvm.build`) takes the target's capabilities (ISA "
            "level, cores) and picks a preset of the same ISA level: the same core count "
            "first, then the same `mcpu`, then a measured one. A preset for another core count "
            "is scaled (compute linearly; bandwidth by the cores' share when fewer, kept when "
            "more); a target no preset covers gets peaks estimated from its vector width, int8 "
            "instruction and cores. Everything taken for granted is listed as `assumed:` in "
            "the preset, `aiq-tvm presets` and the build report (printed, `report.json`, the "
            "CLI's `report.md` and `summary.json`).", "",
            "Default precisions follow the preset (`aiq_tvm.targets.default_precisions`): where "
            "the target has no int8 dot-product instruction, or its preset's int8 peak is not "
            "above its FP32 peak, a build tries FP32 alone (the report notes what was left "
            "out), so no default plan is slower than FP32. Where int8 pays but the target is "
            "x86 with 128-bit float vectors (SSE2, SSSE3 without AVX), the weight-only w8 / w4 "
            "are left out (they measured slower than FP32 there). The `roofline` objective "
            "times int8 "
            "and int4 layers at the preset's int8 peak and FP32 and weight-only layers at its "
            "FP32 peak.", "",
            "Int8 does not pay either where its instructions retire no more products than "
            "FP32's multiply-add (`aiq_tvm.targets.defaults.int8_products_per_instruction`): "
            "Armv8.0 NEON without `+dotprod`, whose `smull` path (two `smull`, `addp`, "
            "`sadalp`) takes four instructions per 16 products, as `fmla` does, and FP32 runs "
            "3 x 3 layers as "
            "Winograd with fewer multiplies. On the emulated board every low-bit plan of "
            "ResNet-20 and MobileNetV2 tried there executed more instructions than FP32 but "
            "one (0.98x), the default AIQ plan under the FP32 speed floor included (1.05x and "
            "1.31x; docs/arm.md). Default plans there are FP32; pass `precisions=` (CLI "
            "`--precisions`) to quantize anyway, with `speed_floor=\"fp32\"`."]
    for label, (spec, p) in (targets or {}).items():
        out += ["", f"### {label}: `{json.dumps(spec)}`", "", "```", p.describe(), "```"]
    return "\n".join(out) + "\n"


def _runs_section() -> list[str]:
    measured = [p for p in PRESETS.values() if p.extra.get("runs")]
    if not measured:
        return []
    out = ["", "## Measured runs", "",
           "Each run's figure (GFLOP/s, GOP/s or GB/s) in the order the probe ran them; the "
           "preset's figure is their median. `other int8` chains are timed for comparison "
           "only (`--int8`); presets keep the ISA level's own int8 instruction.", ""]
    for p in measured:
        ex = p.extra
        out += [f"`{p.name}` (1-minute load average {ex['load_average_before']} before, "
                f"{ex.get('load_average_after', '?')} after; nice {ex.get('nice', 0)}):", "",
                "| probe | min | median | max | runs |", "|---|---|---|---|---|"]
        for key, vals in ex["runs"].items():
            srt = sorted(vals)
            out.append(f"| {key} | {srt[0]:.1f} | {srt[len(srt) // 2]:.1f} | {srt[-1]:.1f} | "
                       + " ".join(f"{v:.1f}" for v in vals) + " |")
        for fam, gops in ex.get("other_int8_chains_gops", {}).items():
            out.append(f"\nother int8 chain `{fam}`: {gops:.1f} GOP/s = "
                       f"{gops / p.peak_gflops_fp32:.2f}x the FP32 peak "
                       f"({p.peak_gops_int8 / p.peak_gflops_fp32:.2f}x with {p.int8_dot}).")
        out.append("")
    return out[:-1]


def _example_targets() -> dict:
    from . import resolve_target

    specs = {
        "this machine": "llvm",
        "a 16-core znver5": {"kind": "llvm", "mcpu": "znver5", "num-cores": 16},
        "Skylake-SP, no core count": {"kind": "llvm", "mcpu": "skylake-avx512"},
        "SSE-only x86-64": {"kind": "llvm", "mcpu": "x86-64", "num-cores": 4},
        "an AArch64 board with dotprod": {"kind": "llvm", "mtriple": "aarch64-linux-gnu",
                                          "mattr": ["+neon", "+dotprod"]},
    }
    return {label: (spec, resolve_target(spec)[1]) for label, spec in specs.items()}


def _host_lacks() -> dict:
    from .capabilities import capabilities, host_arch

    lacks = {}
    for p in PRESETS.values():
        caps = capabilities(p.target)
        if caps.arch == host_arch() and caps.missing_on_host:
            lacks[p.name] = list(caps.missing_on_host)
    return lacks


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="List the CPU presets or write docs/presets.md.")
    ap.add_argument("--markdown", metavar="PATH", help="write the presets page to PATH")
    args = ap.parse_args(argv)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(presets_markdown(_example_targets(), _host_lacks()))
        print(f"wrote {args.markdown}")
    else:
        print("\n".join(p.describe() for p in PRESETS.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
