"""CPU presets: matched to a target by ISA level and core count, scaled or estimated with the
assumptions stated, and target-aware defaults (no low-bit default where int8 does not pay)."""

import dataclasses
import json

import pytest

from aiq_tvm.cost import CostModel, LayerCost
from aiq_tvm.search import run_search
from aiq_tvm.targets import (
    PRESETS,
    CpuPreset,
    TargetCaps,
    capabilities,
    default_precisions,
    estimate_preset,
    resolve_target,
    select_preset,
)
from aiq_tvm.targets.defaults import int8_products_per_instruction
from aiq_tvm.targets.presets import ASSUMED_BANDWIDTH_GBS, ASSUMED_GHZ
from isa import ARM_TARGETS, ISA_TARGETS


def caps(isa="avx2", bits=256, dot="vpmaddubsw", cores=2, mcpu="znver3", arch="x86_64",
         source="the target's num-cores", runnable=True):
    return TargetCaps(arch=arch, isa=isa, vector_bits=bits, int8_dot=dot,
                      vector_registers=16, cores=cores, cores_source=source, mcpu=mcpu,
                      triple="", host_runnable=runnable)


# A level without an int8 dot instruction (riscv64 and other CPUs without x86 / Arm kernels).
GENERIC = dict(isa="generic", bits=128, dot="none", mcpu="", arch="riscv64")


def preset(name, isa, cores, mcpu, fp32=100.0, int8=200.0, bw=10.0, measured=True):
    return CpuPreset(name=name, description=name, isa=isa, source="test",
                     target={"kind": "llvm", "mcpu": mcpu, "num-cores": cores},
                     peak_gflops_fp32=fp32, peak_gops_int8=int8, bandwidth_gbs=bw,
                     measured=measured)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_isa_is_its_targets_isa(name):
    p = PRESETS[name]
    c = capabilities(p.target)
    assert (c.isa, c.arch, c.cores) == (p.isa, p.arch, p.cores)
    assert p.basis in ("measured", "declared") and not p.assumed
    assert p.source and p.description


def test_declared_peaks_follow_their_per_cycle_figures():
    declared = [p for p in PRESETS.values() if not p.measured]
    assert {p.isa for p in declared} >= {"avx512bw", "neon", "neon_dotprod", "neon_i8mm"}
    for p in declared:
        ghz = p.extra["ghz"]
        assert p.peak_gflops_fp32 == pytest.approx(
            p.cores * ghz * p.extra["fp32_flops_per_cycle_core"], abs=0.06)
        assert p.peak_gops_int8 == pytest.approx(
            p.cores * ghz * p.extra["int8_ops_per_cycle_core"], abs=0.06)
        assert "not measured" in p.description


def test_arm_int8_peaks_reflect_the_instruction():
    # smull/sadalp (A72) < sdot (A76, N1) < smmla (V2) in int8 ops per FP32 FLOP.
    ratio = {p.int8_dot: p.peak_gops_int8 / p.peak_gflops_fp32
             for p in PRESETS.values() if p.arch == "aarch64"}
    assert ratio["smull"] == pytest.approx(2.0)
    assert ratio["sdot"] == pytest.approx(4.0)
    assert ratio["smmla"] == pytest.approx(8.0)


def test_exact_match_is_the_preset_itself():
    pool = [preset("a-2t", "avx2", 2, "znver3"), preset("b-2t", "avx2", 2, "haswell")]
    assert select_preset(caps(mcpu="haswell"), pool) is pool[1]
    assert select_preset(caps(mcpu="znver3"), pool) is pool[0]


def test_more_cores_are_scaled_and_say_so():
    base = preset("znver5-2t", "avx512_vnni", 2, "znver5", fp32=492.0, int8=2110.7, bw=40.0)
    p = select_preset(caps("avx512_vnni", 512, "vpdpbusd", cores=16, mcpu="znver5"), [base])
    assert p.cores == 16 and p.name == "znver5-2t@16c"
    assert p.peak_gflops_fp32 == pytest.approx(8 * 492.0)
    assert p.peak_gops_int8 == pytest.approx(8 * 2110.7)
    assert p.bandwidth_gbs == 40.0 and not p.measured
    text = "\n".join(p.assumed)
    assert "scaled x8" in text and "bandwidth kept" in text
    assert "assumed: compute peaks scaled x8" in p.describe()


def test_fewer_cores_get_their_share_of_bandwidth():
    big = preset("chip-64c", "neon_dotprod", 64, "neoverse-n1", fp32=2560.0, int8=10240.0,
                 bw=204.8, measured=False)
    p = select_preset(caps("neon_dotprod", 128, "sdot", cores=4, mcpu="neoverse-n1",
                           arch="aarch64"), [big])
    assert p.peak_gflops_fp32 == pytest.approx(160.0)
    assert p.bandwidth_gbs == pytest.approx(12.8)
    assert any("4/64" in a for a in p.assumed)


def test_same_core_count_wins_over_same_cpu_and_other_cpu_is_stated():
    pool = [preset("hsw-16t", "avx2", 16, "haswell"), preset("zen3-2t", "avx2", 2, "znver3")]
    p = select_preset(caps(mcpu="haswell", cores=2), pool)
    assert p.name == "zen3-2t"
    assert "performs like zen3-2t" in p.assumed[0]


def test_avx_only_cores_get_the_preset_measured_with_256_bit_floats():
    """ssse3 covers Atoms (128-bit floats) and AVX-only cores (256-bit floats): within the
    level the preset whose FP32 peak was measured at the target's float width wins."""
    v2 = preset("v2-2t", "ssse3", 2, "x86-64-v2", fp32=80.0, int8=186.0)
    snb = dataclasses.replace(preset("snb-2t", "ssse3", 2, "sandybridge", fp32=184.0, int8=216.0),
                              extra={"float_vector_bits": 256})
    atom = caps("ssse3", 128, "vpmaddubsw", mcpu="tremont")
    ivy = dataclasses.replace(caps("ssse3", 128, "vpmaddubsw", mcpu="ivybridge"),
                              features=frozenset({"ssse3", "avx"}))
    assert (atom.float_vector_bits, ivy.float_vector_bits) == (128, 256)
    for pool in ([v2, snb], [snb, v2]):
        assert select_preset(atom, pool).name == "v2-2t"
        assert select_preset(ivy, pool).name == "snb-2t"
    # The shipped presets: an Ivy Bridge target gets the Sandy Bridge measurement.
    ivy_target = {"kind": "llvm", "mcpu": "ivybridge", "num-cores": 2}
    assert resolve_target(ivy_target)[1].float_vector_bits == 256


def test_no_preset_of_the_isa_level_is_estimated_with_visible_assumptions():
    c = caps(**GENERIC, cores=3)
    p = select_preset(c, [preset("zen3-2t", "avx2", 2, "znver3")])
    assert p == estimate_preset(c)
    assert p.isa == "generic" and p.cores == 3 and p.basis == "estimated"
    assert p.peak_gflops_fp32 == pytest.approx(3 * ASSUMED_GHZ * 8)
    assert p.peak_gops_int8 < p.peak_gflops_fp32  # widened int8 is slower than FP32 FMAs
    assert p.bandwidth_gbs == ASSUMED_BANDWIDTH_GBS
    text = p.describe()
    assert f"assumed: clock {ASSUMED_GHZ} GHz" in text
    assert f"assumed: memory bandwidth {ASSUMED_BANDWIDTH_GBS:g} GB/s" in text
    assert "roofline --target" in p.source  # host-runnable: says how to measure it


def test_cross_target_never_gets_the_hosts_preset():
    host = resolve_target("llvm")[1]
    for spec in ({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]},
                 {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "neoverse-v2",
                  "num-cores": 8}):
        tgt, p = resolve_target(spec)
        assert p.arch == "aarch64" and p.isa == capabilities(tgt).isa
        assert p.name != host.name
    # Only x86 presets to choose from: an aarch64 target is estimated, not given one of them.
    arm = caps("neon_dotprod", 128, "sdot", cores=4, mcpu="cortex-a76", arch="aarch64",
               runnable=False)
    p = select_preset(arm, [q for q in PRESETS.values() if q.arch == "x86_64"])
    assert p.arch == "aarch64" and p.basis == "estimated"
    assert "roofline --target" not in p.source  # not runnable here: nothing to measure


def test_real_targets_never_get_another_core_counts_peaks_unsaid():
    base = PRESETS["znver5-2t"]
    _, p = resolve_target({"kind": "llvm", "mcpu": "znver5", "num-cores": 16})
    assert p.name == "znver5-2t@16c" and p.cores == 16
    assert p.peak_gflops_fp32 == pytest.approx(8 * base.peak_gflops_fp32)
    assert any("scaled x8" in a for a in p.assumed)
    # A CPU no preset names (znver2, AVX2) performs like a measured AVX2 preset, and says so.
    _, p = resolve_target({"kind": "llvm", "mcpu": "znver2", "num-cores": 2})
    assert p.isa == "avx2" and p.measured and p.cores == 2
    assert p.assumed[0].startswith("the target's CPU (znver2) performs like")
    # An ISA level no preset has (a RISC-V core: generic): estimated, clock and bandwidth
    # stated.
    _, p = resolve_target({"kind": "llvm", "mtriple": "riscv64-linux-gnu", "num-cores": 8})
    assert p.isa == "generic" and p.basis == "estimated" and p.cores == 8
    assert any(a.startswith(f"clock {ASSUMED_GHZ} GHz") for a in p.assumed)
    assert any(a.startswith(f"memory bandwidth {ASSUMED_BANDWIDTH_GBS:g} GB/s")
               for a in p.assumed)


def test_assumed_cross_core_count_is_listed():
    tgt, p = resolve_target({"kind": "llvm", "mtriple": "aarch64-linux-gnu",
                             "mattr": ["+neon", "+dotprod"]})
    assert capabilities(tgt).cores_source.startswith("assumed")
    assert any("cross target names no num-cores" in a for a in p.assumed)


def test_preset_validation_names_the_problem():
    good = preset("x", "avx2", 2, "znver3")
    with pytest.raises(ValueError, match="num-cores"):
        dataclasses.replace(good, target={"kind": "llvm", "mcpu": "znver3"})
    with pytest.raises(ValueError, match="isa 'avx3' is not one of"):
        dataclasses.replace(good, isa="avx3")
    with pytest.raises(ValueError, match="bandwidth_gbs must be a positive"):
        dataclasses.replace(good, bandwidth_gbs=0)
    assert json.loads(json.dumps(good.to_dict()))["isa"] == "avx2"


def test_default_precisions_follow_the_int8_instruction():
    all_, none = default_precisions(caps("avx512_vnni", 512, "vpdpbusd"))
    assert none == {} and all_[0] == "fp32" and {"int8", "int4", "w8", "w4"} <= set(all_)
    fp32_only, excluded = default_precisions(caps(**GENERIC))
    assert fp32_only == ["fp32"]
    assert set(excluded) == {"int8", "int4", "w8", "w4"}
    assert "no int8 dot-product instruction" in excluded["int8"]
    assert "weight-only" in excluded["w4"]


def test_weight_only_is_left_out_where_x86_floats_are_128_bit():
    """int8 pays on SSE2 and SSSE3 targets, but their weight-only kernels (dequantizing into
    xmm floats) measured slower than FP32: left out by default, with the reason; AVX-only
    cores (ymm floats) and Arm with dot products keep them."""
    for mcpu in ("x86-64", "goldmont"):
        target = {"kind": "llvm", "mcpu": mcpu, "num-cores": 2}
        cands, excluded = default_precisions(capabilities(target), resolve_target(target)[1])
        assert cands == ["fp32", "int8", "int4"], mcpu
        assert set(excluded) == {"w8", "w4"}
        assert "128-bit float vectors" in excluded["w8"]
    for target in ({"kind": "llvm", "mcpu": "sandybridge", "num-cores": 2},
                   {"kind": "llvm", "mtriple": "aarch64-linux-gnu",
                    "mattr": ["+neon", "+dotprod"]}):
        cands, excluded = default_precisions(capabilities(target), resolve_target(target)[1])
        assert excluded == {} and {"w8", "w4"} <= set(cands)


# Int8 pays by default on every level whose int8 instructions retire more products than FP32's
# multiply-add; Armv8.0 NEON's smull path retires 4 per instruction per 128 bits, as fmla.
INT8_PAYS = {"avx512_vnni": True, "avx512bw": True, "avx_vnni": True, "avx2": True,
             "ssse3": True, "sse": True, "neon_i8mm": True, "neon_dotprod": True, "neon": False}


@pytest.mark.parametrize("level", list(INT8_PAYS))
def test_int8_pays_where_it_retires_more_products_than_fp32(level):
    target = {**ISA_TARGETS, **ARM_TARGETS}[level]
    c = capabilities(target)
    int8, fp32 = int8_products_per_instruction(c)
    assert (int8 > fp32) == INT8_PAYS[level]
    cands, excluded = default_precisions(c, resolve_target(target)[1])
    assert ("int8" in cands) == INT8_PAYS[level]
    if not INT8_PAYS[level]:
        assert cands == ["fp32"] and set(excluded) == {"int8", "int4", "w8", "w4"}
        assert excluded["int8"].startswith("neon: int8 via smull retires 4 products per "
                                           "instruction per 128 bits, no more than FP32's 4")


# Two synthetic targets with the same int8 instruction and FP32 peak: the int8 peak decides.
SLOW_INT8 = preset("slow-int8", "avx2", 2, "znver3", fp32=100.0, int8=50.0, bw=10.0)
FAST_INT8 = preset("fast-int8", "avx2", 2, "znver3", fp32=100.0, int8=400.0, bw=10.0)
ALL = ("fp32", "int8", "int4", "w8", "w4")
# Accuracy drop in pp per quantized layer (the oracle below).
DROP_PP = {"fp32": 0.0, "int8": 0.1, "int4": 0.3, "w8": 0.05, "w4": 0.2}


def test_default_precisions_follow_the_presets_int8_peak():
    avx2 = caps()
    assert default_precisions(avx2, FAST_INT8) == (list(ALL), {})
    cands, excluded = default_precisions(avx2, SLOW_INT8)
    assert cands == ["fp32"] and set(excluded) == {"int8", "int4", "w8", "w4"}
    assert "preset slow-int8 puts the int8 peak (50 GOP/s via vpmaddubsw) at or below the " \
        "FP32 peak (100 GFLOP/s)" in excluded["int4"]
    assert "weight-only" in excluded["w8"]


def _model(n=3, fc=False):
    # ResNet-20-like 3x3 16->16 convs at 32x32 (~34 FLOP/B fp32): compute-bound at a ridge of
    # 10 FLOP/B. fc: a 4096 -> 1000 dense at batch 1 (0.5 FLOP/B): memory-bound anywhere.
    layers = [LayerCost(f"c{i}", "conv2d", 4718592, 2304, 16384, 16384, 16) for i in range(n)]
    if fc:
        layers.append(LayerCost("fc", "dense", 2 * 4096 * 1000, 4096 * 1000, 4096, 1000, 1000))
    return CostModel(layers, requant_fusion=False)


def _roofline_plan(model, peaks, cands=("fp32", "int8", "int4")):
    from aiq_tvm.objectives import MeritInputs, get_objective

    layers = model.searchable
    merit = get_objective("roofline").merit(MeritInputs(model, peaks, tuple(cands)))

    def accuracy(assignment):
        return 0.9 - sum(DROP_PP[p] for p in assignment.values()) / 100

    return run_search("greedy", layers, {n: list(cands) for n in layers}, merit, accuracy,
                      lam=0.9).assignment


def test_roofline_plan_on_a_synthetic_target_where_int8_does_not_pay():
    # Convs: int8/int4 compute at 50 GOP/s (2x slower), w8/w4 at the FP32 peak (no faster,
    # compute-bound) -> fp32. The memory-bound fc moves fewest bytes in int4 -> int4.
    plan = _roofline_plan(_model(fc=True), SLOW_INT8, ALL)
    assert plan == {"c0": "fp32", "c1": "fp32", "c2": "fp32", "fc": "int4"}
    assert _roofline_plan(_model(), SLOW_INT8, ALL) == {"c0": "fp32", "c1": "fp32",
                                                         "c2": "fp32"}


def test_roofline_plan_on_a_synthetic_target_where_int8_pays():
    # Convs: int8 and int4 both reach the 400 GOP/s int8 peak (4x) -> the same time, and int8
    # loses less accuracy -> int8. fc: int4 moves fewest bytes -> int4.
    plan = _roofline_plan(_model(fc=True), FAST_INT8, ALL)
    assert plan == {"c0": "int8", "c1": "int8", "c2": "int8", "fc": "int4"}


def test_roofline_objective_keeps_fp32_where_int8_does_not_pay():
    model = _model(4)
    riscv = {"kind": "llvm", "mtriple": "riscv64-linux-gnu", "num-cores": 2}
    for slow in (resolve_target(riscv)[1], estimate_preset(caps(**GENERIC)), SLOW_INT8):
        assert slow.peak_gops_int8 < slow.peak_gflops_fp32
        assert set(_roofline_plan(model, slow).values()) == {"fp32"}, slow.name
    vnni = select_preset(caps("avx512_vnni", 512, "vpdpbusd", mcpu="znver5"))
    assert set(_roofline_plan(model, vnni).values()) == {"int8"}


def test_sse2_baseline_int8_pays_by_its_measured_preset():
    """x86-64 (SSE2) multiplies int8 with pmaddwd on int16: its measured preset puts int8
    above FP32, so default plans may quantize there."""
    sse_target = {"kind": "llvm", "mcpu": "x86-64", "num-cores": 2}
    sse = resolve_target(sse_target)[1]
    assert sse.measured and sse.int8_dot == "vpmaddwd"
    assert sse.peak_gops_int8 > sse.peak_gflops_fp32
    candidates, excluded = default_precisions(capabilities(sse_target), sse)
    assert {"int8", "int4"} <= set(candidates) and "int8" not in excluded


def test_cli_presets_shows_what_a_target_gets_and_assumes(capsys):
    from aiq_tvm.cli import main

    riscv = '{"kind":"llvm","mtriple":"riscv64-linux-gnu","num-cores":4}'
    assert main(["presets", "--target", riscv]) == 0
    out = capsys.readouterr().out
    assert "rpi4-cortex-a72" in out and "source:" in out
    tail = out.split("gets:")[-1]
    assert "generic (no int8 dot instruction), 4 cores" in tail
    assert "assumed:" in tail
    assert "default precisions: fp32\n  left out int8: generic has no int8 dot-product" in tail


def test_docs_presets_page_is_current():
    """docs/presets.md is regenerated whenever a preset changes (command at its top)."""
    from pathlib import Path

    from aiq_tvm.targets.presets_doc import presets_markdown

    page = (Path(__file__).resolve().parents[1] / "docs" / "presets.md").read_text()
    table = presets_markdown().split("## Sources")[0]
    assert table in page
    for p in PRESETS.values():
        assert f"- `{p.name}`: {p.description}. Source: {p.source}." in page


def test_report_prints_what_the_preset_assumes():
    from aiq_tvm.report import make_report

    model = _model(1)
    est = estimate_preset(caps(**GENERIC, cores=3))
    rep = make_report(model, {"c0": "fp32"}, est, "riscv64")
    assert rep.preset_assumed == list(est.assumed)
    assert f"assumed: clock {ASSUMED_GHZ} GHz" in str(rep)
    assert rep.to_dict()["preset_assumed"] == list(est.assumed)
    # The CLI's report.md carries the same lines as the printed report.
    from types import SimpleNamespace

    from aiq_tvm.commands import _report_md
    from aiq_tvm.plan import Plan

    summary = {"model": {"spec": "m.pt2"}, "data": {"spec": "d.npz"}, "command": "aiq-tvm x",
               "date": "today", "target": "riscv64", "preset": est.name}
    md = _report_md(summary, ["AI: ..."], SimpleNamespace(report=rep, plan=Plan.uniform("fp32")))
    for line in est.assumed:
        assert f"assumed: {line}" in md


def test_default_build_where_the_measured_int8_peak_does_not_pay_stays_fp32(tiny, monkeypatch):
    """End to end on a target this host runs: were the SSE2 preset's int8 peak measured below
    its FP32 peak (another CPU), the default plan stays FP32 and the report says why."""
    import numpy as np
    import torch

    import aiq_tvm

    sse2 = next(p for p in PRESETS.values() if p.isa == "sse")
    monkeypatch.setitem(PRESETS, sse2.name, dataclasses.replace(
        sse2, peak_gops_int8=0.5 * sse2.peak_gflops_fp32))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    mod, params = aiq_tvm.from_torch(tiny, torch.from_numpy(x[:2]))
    # 3 cores: no preset has them, so the report must say what the peaks assume.
    sse = {"kind": "llvm", "mcpu": "x86-64", "num-cores": 3}
    res = aiq_tvm.build(mod, sse, params=params, val_data=(x, y), eval_batch_size=16)
    assert set(res.plan.layers.values()) == {"fp32"}
    note = next(n for n in res.report.notes if n.startswith("default precisions"))
    assert "left out int8" in note and "at or below the FP32 peak" in note
    assert "w4 (weight-only" in note
    assert res.preset.cores == 3 and res.preset.basis == "estimated"
    assert res.report.preset_assumed == list(res.preset.assumed)
    assert "\nassumed: compute peaks scaled x1.5 from" in str(res.report)


def test_host_gets_its_measured_preset_when_one_fits():
    tgt, p = resolve_target("llvm")
    c = capabilities(tgt)
    exact = [q for q in PRESETS.values()
             if (q.isa, q.cores, q.mcpu) == (c.isa, c.cores, c.mcpu)]
    if not exact:
        pytest.skip(f"no preset measured for this host ({c.mcpu}, {c.isa}, {c.cores} cores)")
    assert p in exact and not p.assumed and p.basis == "measured"


def _amx_preset(name="xeon-amx-2t", mcpu="sapphirerapids"):
    p = preset(name, "avx512_vnni", 2, mcpu, fp32=400.0, int8=15000.0)
    return dataclasses.replace(p, extra={"int8_family": "tdpbusd"})


def test_int8_unit_of_the_preset_matches_the_targets_amx():
    """An AMX preset's int8 peak is the tiles' (several times the vectors'): targets with
    amx-int8 get it before a vector preset of the same level and core count, others never
    before a vector one; a preset of the other unit says so in ``assumed``."""
    vector, tiles = preset("zen4-2t", "avx512_vnni", 2, "znver4"), _amx_preset()
    assert (vector.amx, tiles.amx) == (False, True) and tiles.int8_dot == "tdpbusd"
    amx_caps = dataclasses.replace(caps("avx512_vnni", 512, "vpdpbusd", mcpu="znver4"),
                                   features=frozenset({"amx-tile", "amx-int8"}))
    plain = caps("avx512_vnni", 512, "vpdpbusd", mcpu="sapphirerapids")
    for pool in ([vector, tiles], [tiles, vector]):
        assert select_preset(amx_caps, pool).name == "xeon-amx-2t"  # not the same-mcpu one
        assert select_preset(plain, pool).name == "zen4-2t"
    only_vector = select_preset(amx_caps, [vector])
    assert "run on AMX tiles" in only_vector.assumed[0]
    only_tiles = select_preset(plain, [tiles])
    assert "which the target does not have" in only_tiles.assumed[0]
    assert "int8 via tdpbusd" in tiles.describe()
