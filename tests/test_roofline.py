"""The roofline probe compiles to each ISA level's own vector width and int8 instruction, runs
on the host, and refuses targets the host cannot execute."""

import json
import re

import pytest
import tvm

from aiq_tvm.targets import capabilities
from aiq_tvm.targets import roofline as R
from aiq_tvm.targets.presets import CpuPreset
from isa import requires_host

ARM = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "num-cores": 2}

# target -> (instructions the fp32 loop must contain, instructions the int8 loop must contain)
CASES = [
    ({"kind": "llvm", "mcpu": "x86-64", "num-cores": 2}, [r"mulps\s+%xmm", r"addps\s+%xmm"],
     [r"pmaddwd\s+%xmm", r"paddd\s+%xmm"]),
    ({"kind": "llvm", "mcpu": "haswell", "num-cores": 2}, [r"vfmadd\w+ps\s+%ymm"],
     [r"vpmaddubsw\s+%ymm", r"vpmaddwd\s+%ymm", r"vpaddd\s+%ymm"]),
    ({"kind": "llvm", "mcpu": "skylake-avx512", "num-cores": 2}, [r"vfmadd\w+ps\s+%zmm"],
     [r"vpmaddubsw\s+%zmm", r"vpmaddwd\s+%zmm", r"vpaddd\s+%zmm"]),
    ({"kind": "llvm", "mcpu": "znver4", "num-cores": 2}, [r"vfmadd\w+ps\s+%zmm"],
     [r"vpdpbusd\s+%zmm"]),
    ({"kind": "llvm", "mcpu": "alderlake", "num-cores": 2}, [r"vfmadd\w+ps\s+%ymm"],
     [r"\{vex\}\s+vpdpbusd\s+%ymm"]),
    ({**ARM, "mcpu": "cortex-a72"}, [r"fmla\s+v\d+\.4s"],
     [r"smull\s+v\d+\.8h", r"smlal\s+v\d+\.8h", r"sadalp\s+v\d+\.4s"]),
    ({**ARM, "mcpu": "cortex-a76"}, [r"fmla\s+v\d+\.4s"], [r"sdot\s+v\d+\.4s"]),
    ({**ARM, "mcpu": "neoverse-v2"}, [r"fmla\s+v\d+\.4s"], [r"smmla\s+v\d+\.4s"]),
]


def _asm(target, kind):
    tgt = tvm.target.Target(target)
    mod = R.probe_module(capabilities(tgt), kind, threads=2, iters=8)
    return tvm.compile(mod, tgt).mod.inspect_source("s")


@pytest.mark.parametrize("target,fp32,int8", CASES, ids=lambda c: c.get("mcpu")
                         if isinstance(c, dict) else None)
def test_probe_uses_the_targets_instructions(target, fp32, int8):
    for kind, patterns in (("fp32", fp32), ("int8", int8)):
        asm = _asm(target, kind)
        for pat in patterns:
            # ACC independent chains, each with its own instruction (no hoisted products)
            assert len(re.findall(pat, asm)) >= R.ACC, (kind, pat)


def test_every_int8_family_of_the_isa_levels_has_a_chain():
    from aiq_tvm.targets.capabilities import INT8_DOT_KINDS

    for target, _, _ in CASES:
        c = capabilities(target)
        assert R.int8_chain(c).family == INT8_DOT_KINDS[c.isa]
    assert {k for k, _ in R.INT8_CHAINS} == set(INT8_DOT_KINDS.values()) | {"vpmaddwd"}


def test_probe_runs_on_the_host_and_writes_a_preset(monkeypatch):
    monkeypatch.setattr(R, "REPEAT", 3)
    monkeypatch.setattr(R, "ITERS", 2000)
    small_copy = R.bandwidth_probe
    monkeypatch.setattr(R, "bandwidth_probe", lambda t, clock="process": small_copy(t, 1 << 16,
                                                                                  clock))
    target = {"kind": "llvm", "mcpu": "x86-64", "num-cores": 1}
    if not capabilities(target).host_runnable:
        pytest.skip("this machine does not run x86-64 code")
    # CPU-time probes run one thread and scale to the cores; wall-clock ones run them all.
    cpu, wall = (R.chain_probe(target, "fp32", 4, iters=100, clock=c) for c in R.CLOCKS)
    assert (cpu.clock, cpu.scale, cpu.args[0].shape[0]) == ("cpu", 4.0, 1)
    assert (wall.clock, wall.scale, wall.args[0].shape[0]) == ("wall", 1.0, 4)
    with pytest.raises(ValueError, match="clock must be one of"):
        R.chain_probe(target, "fp32", 1, clock="tsc")
    copy = small_copy(target, 1 << 10)
    assert (copy.clock, copy.scale) == ("process", 1.0)  # num-cores 1
    with pytest.raises(ValueError, match="bandwidth clock must be"):
        small_copy(target, 1 << 10, clock="cpu")
    m = R.measure(target, runs=3, int8_families=("none",))
    for key, figure in (("fp32", "peak_gflops_fp32"), ("int8", "peak_gops_int8"),
                        ("bandwidth", "bandwidth_gbs")):
        assert len(m["runs"][key]) == 3 and min(m["runs"][key]) > 0
        assert m[figure] == sorted(m["runs"][key])[1]  # the median run
    assert m["other_int8"] == {"none": sorted(m["runs"]["int8 none"])[1]}
    assert {len(m["runs"][f"{k} wall"]) for k in ("fp32", "int8", "bandwidth")} == {3}
    p = R._preset_from(m, "t-1t", ["--target", json.dumps(target), "--write"])
    assert isinstance(p, CpuPreset) and p.measured and p.isa == "sse"
    assert p.peak_gflops_fp32 == round(m["peak_gflops_fp32"], 1)
    assert "--target '{" in p.source and "median of 3 runs, each the median of 3 calls" in p.source
    assert "one core timed by its CPU time x 1 cores" in p.source
    assert p.extra["runs"]["fp32"] == [round(v, 1) for v in m["runs"]["fp32"]]
    assert set(p.extra["other_int8_chains_gops"]) == {"none"}


def test_measuring_a_target_this_host_cannot_run_names_what_is_missing():
    with pytest.raises(ValueError, match="cannot measure .* lacks"):
        R.measure({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "num-cores": 2})
    for bad in (["--target", "{not json"], ["--runs", "0"]):
        with pytest.raises(SystemExit):
            R.main(bad)


def test_alternative_int8_chain_compiles_to_its_instructions():
    asm = tvm.compile(R.probe_module(capabilities(CASES[1][0]), "int8", 2, 8, family="vpmaddwd"),
                      tvm.target.Target(CASES[1][0])).mod.inspect_source("s")
    assert len(re.findall(r"vpmaddwd\s+%ymm", asm)) >= R.ACC
    assert "vpmaddubsw" not in asm
    with pytest.raises(ValueError, match="no int8 probe for sdot at 256 bits; known"):
        R.int8_chain(capabilities(CASES[1][0]), "sdot")


AMX_TARGET = {"kind": "llvm", "mcpu": "sapphirerapids", "num-cores": 2}


def test_amx_probe_compiles_to_four_independent_tile_multiplies():
    tgt = tvm.target.Target(AMX_TARGET)
    caps = capabilities(tgt)
    assert caps.amx
    mod = R.probe_module(caps, "int8", threads=2, iters=8, family=R.AMX_FAMILY)
    asm = tvm.compile(mod, tgt).mod.inspect_source("s")
    assert len(re.findall(r"tdpbusd\s+%tmm", asm)) >= R.AMX_TILES
    for op in ("ldtilecfg", "tilezero", "tileloadd", "tilestored", "tilerelease"):
        assert op in asm, op
    assert R.int8_instructions(caps, R.AMX_FAMILY).startswith("tdpbusd")
    with pytest.raises(ValueError, match="needs a target with amx-tile and amx-int8"):
        R.probe_module(capabilities(CASES[3][0]), "int8", 2, 8, family=R.AMX_FAMILY)


@requires_host(AMX_TARGET)
def test_amx_probe_outruns_the_vector_chain_on_an_amx_host():
    from aiq_tvm.targets import host_target

    host = host_target()
    tiles = R.chain_probe(host, "int8", 1, iters=20_000, family=R.AMX_FAMILY)
    vector = R.chain_probe(host, "int8", 1, iters=200_000)
    out = tiles.args[0]
    tiles.rate(3)
    # Every accumulator tile: 16 x 16 int32 of 64 ones x ones per step.
    assert (out.numpy() == 64 * 20_000).all()
    # Measured 15.3 against 1.95 TOP/s on a Sapphire Rapids-class vCPU (docs/presets.md).
    assert tiles.rate(5) > 3 * vector.rate(5)
