"""The roofline probe compiles to each ISA level's own vector width and int8 instruction, runs
on the host, and refuses targets the host cannot execute."""

import json
import re

import pytest
import tvm

from aiq_tvm.targets import capabilities
from aiq_tvm.targets import roofline as R
from aiq_tvm.targets.presets import CpuPreset

ARM = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "num-cores": 2}

# target -> (instructions the fp32 loop must contain, instructions the int8 loop must contain)
CASES = [
    ({"kind": "llvm", "mcpu": "x86-64", "num-cores": 2}, [r"mulps\s+%xmm", r"addps\s+%xmm"],
     [r"pmullw"]),
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
    assert {k for k, _ in R.INT8_CHAINS} == set(INT8_DOT_KINDS.values())


def test_probe_runs_on_the_host_and_writes_a_preset(monkeypatch):
    monkeypatch.setattr(R, "REPEAT", 3)
    target = {"kind": "llvm", "mcpu": "x86-64", "num-cores": 1}
    if not capabilities(target).host_runnable:
        pytest.skip("this machine does not run x86-64 code")
    tgt = tvm.target.Target(target)
    assert R.fp32_peak(tgt, 1, iters=50) > 0
    assert R.int8_peak(tgt, 1, iters=50) > 0
    m = {"target": target, "isa": "sse", "peak_gflops_fp32": 10.04, "peak_gops_int8": 5.0,
         "bandwidth_gbs": 3.0, "threads": 1, "int8_instructions": "x", "vector_bits": 128,
         "load_before": 0.5}
    p = R._preset_from(m, "t-1t", ["--target", json.dumps(target), "--write"])
    assert isinstance(p, CpuPreset) and p.measured and p.peak_gflops_fp32 == 10.0
    assert "--target '{" in p.source and p.extra["load_average_before"] == 0.5


def test_measuring_a_target_this_host_cannot_run_names_what_is_missing():
    with pytest.raises(ValueError, match="cannot measure .* lacks"):
        R.measure({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "num-cores": 2})
    with pytest.raises(SystemExit):
        R.main(["--target", "{not json"])
