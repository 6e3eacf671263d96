"""docs/presets.md: every CPU preset with its source, and the preset example targets get.

    python -m aiq_tvm.targets.presets_doc --markdown docs/presets.md
"""

from __future__ import annotations

import json

from .presets import PRESETS

__all__ = ["presets_markdown"]


def presets_markdown(targets: dict | None = None) -> str:
    """docs/presets.md: every preset with its source, and what given targets get.

    ``targets`` maps a label to ``(target spec, CpuPreset)`` as :func:`resolve_target`
    returns them, to show matching, scaling and estimation on real targets.
    """
    out = ["# CPU presets (roofline peaks)", "",
           "Written by `python -m aiq_tvm.targets.presets_doc --markdown docs/presets.md`; every "
           "figure below is printed by that command from the presets shipped in "
           "`targets/presets.py` (declared, from data sheets) and `targets/presets/*.json` "
           "(measured by the roofline probe, command in each source).", "",
           "INT8 GOP/s count 2 ops per int8 multiply-add with the ISA level's int8 instruction; "
           "`int8/fp32` is the ratio of the two peaks. Measured presets ran the probe under "
           "`flock /work/wt/bench.lock` at `nice -n -20` (the machine is shared; each figure is "
           "the fastest of many calls) and record the 1-minute load average before the run in "
           "their `extra` field.", "",
           "| preset | ISA level | int8 instruction | cores | fp32 GFLOP/s | int8 GOP/s | "
           "int8/fp32 | GB/s | basis |",
           "|---|---|---|---|---|---|---|---|---|"]
    for p in PRESETS.values():
        out.append(f"| `{p.name}` | {p.isa} | {p.int8_dot} | {p.cores} | "
                   f"{p.peak_gflops_fp32:.1f} | {p.peak_gops_int8:.1f} | "
                   f"{p.peak_gops_int8 / p.peak_gflops_fp32:.2f} | {p.bandwidth_gbs:.1f} | "
                   f"{p.basis} |")
    out += ["", "## Sources", ""]
    out += [f"- `{p.name}`: {p.description}. Source: {p.source}." for p in PRESETS.values()]
    out += ["", "## How a target gets its preset", "",
            "`resolve_target` (and so `aiq_tvm.build`) takes the target's capabilities (ISA "
            "level, cores) and picks a preset of the same ISA level: the same core count "
            "first, then the same `mcpu`, then a measured one. A preset for another core count "
            "is scaled (compute linearly; bandwidth by the cores' share when fewer, kept when "
            "more); a target no preset covers gets peaks estimated from its vector width, int8 "
            "instruction and cores. Everything taken for granted is listed as `assumed:` in "
            "the preset, `aiq-tvm presets` and the build report."]
    for label, (spec, p) in (targets or {}).items():
        out += ["", f"### {label}: `{json.dumps(spec)}`", "", "```", p.describe(), "```"]
    return "\n".join(out) + "\n"


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


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="List the CPU presets or write docs/presets.md.")
    ap.add_argument("--markdown", metavar="PATH", help="write the presets page to PATH")
    args = ap.parse_args(argv)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(presets_markdown(_example_targets()))
        print(f"wrote {args.markdown}")
    else:
        print("\n".join(p.describe() for p in PRESETS.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
