"""Executed-instruction counts of aarch64 builds (aiq_tvm.targets.arm.counting).

The parsing and attribution run everywhere on synthetic plugin output; building the qemu
plugin needs the host's C compiler (which TVM's export needs too). Counting a real build on
the emulated board runs with ``make test-arm`` (AIQ_TEST_ARM=1).
"""

import importlib.util
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from aiq_tvm.targets.arm import counting
from aiq_tvm.targets.arm.counting import Block, Listing, attribute, parse_blocks, parse_maps

LISTING = """
model.so:     file format elf64-littleaarch64

Disassembly of section .text:

0000000000001000 <conv_int8_compute_>:
    1000:\tldr\tq0, [x1]
    1004:\teor\tv0.16b, v0.16b, v1.16b
    1008:\tsdot\tv2.4s, v3.16b, v0.4b[0]
    100c:\tb.ne\t1000 <conv_int8_compute_>
    1010:\tret

0000000000001014 <helper>:
    1014:\tadd\tx0, x0, #0x1
    1018:\tret
"""
MAPS = """\
5500000000-5500001000 r--p 00000000 00:2a 11 /tmp/aiq-count-x/model.so
5500001000-5500002000 r-xp 00001000 00:2a 11 /tmp/aiq-count-x/model.so
5501000000-5501100000 r-xp 00000000 00:2a 12 /usr/local/lib/python3.11/tvm/libtvm_runtime.so
5502000000-5502100000 r-xp 00000000 00:2a 13 /usr/lib/aarch64-linux-gnu/libc.so.6
5503000000-5503001000 rw-p 00000000 00:00 0 [heap]
"""


def test_blocks_count_between_the_two_markers_only():
    text = "# marks 2\n5500001000 4 3 13\n5500001014 2 5 5\n5501000000 3 0 7\n"
    assert parse_blocks(text) == [Block(0x5500001000, 4, 10), Block(0x5501000000, 3, 7)]


@pytest.mark.parametrize("text", ["# marks 1\n5500001000 4 3\n", "", "5500001000 4 3 13\n"])
def test_counts_without_both_markers_are_an_error(text):
    with pytest.raises(ValueError, match="two markers"):
        parse_blocks(text)


def test_attribution_by_region_function_and_mnemonic():
    listing = Listing.parse(LISTING)
    assert listing.function(0x100c) == "conv_int8_compute_"
    assert listing.function(0x1018) == "helper"
    blocks = [
        Block(0x5500001000, 4, 100),   # the loop body, 100 times
        Block(0x5500001010, 1, 2),     # ret
        Block(0x5500001014, 2, 6),     # helper
        Block(0x5501000010, 5, 4),     # TVM runtime
        Block(0x5502000000, 10, 1),    # libc
        Block(0x5503000000, 3, 1),     # not file-backed: "other"
    ]
    got = attribute(blocks, parse_maps(MAPS), "model.so", listing, runs=2, batch=1)
    assert got.regions == {"model library": (400 + 2 + 12) / 2, "TVM runtime": 10.0,
                           "other": (10 + 3) / 2}
    assert got.functions == {"conv_int8_compute_": 201.0, "helper": 6.0}
    assert got.mnemonics["sdot"] == 50.0 and got.mnemonics["ret"] == 4.0
    assert got.mnemonics["add"] == 3.0
    assert got.per_image()["total"] == got.total == 207 + 10 + 6.5


def test_attribution_needs_the_library_in_the_map():
    with pytest.raises(ValueError, match="other.so is not in the guest's memory map"):
        attribute([], parse_maps(MAPS), "other.so", Listing.parse(LISTING), 1, 1)


def test_plugin_builds_with_the_host_compiler(tmp_path):
    lib = counting.plugin_path(tmp_path)
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(lib)], check=True,
                             capture_output=True, text=True).stdout
    assert "qemu_plugin_install" in symbols and "qemu_plugin_version" in symbols
    assert counting.plugin_path(tmp_path) == lib  # built once


_SPEC = importlib.util.spec_from_file_location(
    "count_instructions",
    Path(__file__).resolve().parents[1] / "scripts" / "arm" / "count_instructions.py")


def test_table_ratios_against_fp32_of_the_same_level():
    script = importlib.util.module_from_spec(_SPEC)
    _SPEC.loader.exec_module(script)
    base = {"model": "m", "level": "neon", "batch": 1, "status": "ok", "runtime": 1e5,
            "other": 1e5, "bit_exact": True, "max_rel_err": 0.0}
    rows = [{**base, "plan": "fp32", "instructions": 12e6, "library": 10e6,
             "multiplies": {"fmla": 5e6}, "bit_exact": False, "max_rel_err": 3e-7},
            {**base, "plan": "int8", "instructions": 6e6, "library": 4e6,
             "multiplies": {"smull": 1e6}},
            {**base, "level": "neon_dotprod", "plan": "int8", "instructions": 3e6,
             "library": 2e6, "multiplies": {"sdot": 1e6}},
            {"model": "m", "level": "neon", "plan": "int4", "batch": 1, "status": "error",
             "error": "RuntimeError: boom"}]
    lines = script.render(rows).splitlines()
    assert lines[2].endswith("| 1.00x | 1.00x | rel. err 3.0e-07 |")
    assert "| smull 1.00 | 2.00x | 2.50x | bit for bit |" in lines[3]
    assert "| sdot 1.00 |  |  | bit for bit |" in lines[4]  # no fp32 row on that level
    assert "RuntimeError: boom" in lines[5]


emulated = pytest.mark.skipif(
    os.environ.get("AIQ_TEST_ARM") != "1",
    reason="emulated aarch64 tests run with `make test-arm` (AIQ_TEST_ARM=1)")


@emulated
def test_counts_of_a_cross_build_are_exact_and_repeatable(tmp_path):
    import aiq_tvm

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(32, 32, 3, padding=1)).eval()
    x = np.random.default_rng(0).standard_normal((1, 16, 12, 12)).astype(np.float32)
    mod, params = aiq_tvm.from_torch(model, torch.from_numpy(x))
    target = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon", "+dotprod"]}
    counts = {}
    for plan in ("fp32", "int8"):
        res = aiq_tvm.build(mod, target, params=params, plan=plan, calib_data=x, batch_size=1)
        lib = tmp_path / f"{plan}.so"
        res.export_library(str(lib), single_file=True)
        counts[plan] = counting.count_library(lib, x, runs=2)
        host = res.run(x, 1)
        if plan == "int8":
            np.testing.assert_array_equal(counts[plan].output.reshape(host.shape), host)
    again = counting.count_library(tmp_path / "int8.so", x, runs=2)
    for region in ("model library", "TVM runtime"):  # one thread: the same every run
        assert again.regions[region] == counts["int8"].regions[region]
    assert again.functions == counts["int8"].functions
    assert counts["int8"].mnemonics.get("sdot", 0) > 0 and "sdot" not in counts["fp32"].mnemonics
    assert counts["fp32"].mnemonics["fmla"] > 0
    assert counts["int8"].regions["model library"] < counts["fp32"].regions["model library"]
