"""scripts/speed_fuzz.py: random CNNs timed per precision against their FP32 build."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import speed_fuzz  # noqa: E402


def _row(ms, failure=""):
    return {"seed": 0, "ms": ms, "error": {k: 0.0 for k in ms}, "moved": {}, "failure": failure,
            "layers": "seed 0: input 1x3x9x9; conv3x3/s1/d1/g1 3->8"}


def test_speedups_are_fp32_time_over_each_builds_time():
    row = _row({"fp32": 2.0, "int8": 1.0, "int4": 4.0})
    assert speed_fuzz.speedups(row) == {"int8": 2.0, "int4": 0.5}


def test_slower_counts_only_builds_beyond_the_tolerance():
    # 3 % slower is within a 5 % tolerance, 10 % slower is not
    row = _row({"fp32": 1.0, "int8": 1.03, "int4": 1.10})
    assert speed_fuzz.slower(row, 0.05) == ["int4"]
    assert speed_fuzz.slower(row, 0.02) == ["int8", "int4"]
    assert speed_fuzz.slower(_row({}, failure="TVMError: x"), 0.05) == []


def test_a_build_beyond_its_bound_is_wrong():
    row = _row({"fp32": 1.0, "int8": 1.0, "int4": 1.0, "int8 floor fp32": 1.0})
    row["error"] = {"fp32": 2e-4, "int8": 0.05, "int4": 0.5, "int8 floor fp32": 0.2}
    # int4 has no bound; a floored int8 plan is held to int8's
    assert speed_fuzz.wrong(row) == ["fp32", "int8 floor fp32"]
    row["error"]["fp32"] = float("nan")
    assert "fp32" in speed_fuzz.wrong(row)


def test_summary_names_the_slow_seeds():
    rows = [_row({"fp32": 1.0, "int8": 0.5}), {**_row({"fp32": 1.0, "int8": 2.0}), "seed": 7}]
    text = "\n".join(speed_fuzz._summary(rows, ["fp32", "int8"], 0.03))
    assert "int8: 1 of 2 networks (seeds [7])" in text
    assert "min 0.50x, median 1.25x, max 2.00x" in text


def test_a_target_this_machine_cannot_run_is_refused():
    with pytest.raises(SystemExit) as err:
        speed_fuzz.main(["--target", '{"kind":"llvm","mtriple":"aarch64-linux-gnu"}'])
    assert err.value.code == 2


def test_fp32_must_be_timed():
    with pytest.raises(SystemExit) as err:
        speed_fuzz.main(["--precisions", "int8", "int4"])
    assert err.value.code == 2


def test_one_small_network_end_to_end(tmp_path):
    journal, out = tmp_path / "j.jsonl", tmp_path / "r.md"
    args = ["--profile", "small", "--seeds", "3", "--batch", "2", "--precisions", "fp32", "int8",
            "--rounds", "1", "--round-ms", "5", "--journal", str(journal), "--out", str(out)]
    speed_fuzz.main(args)
    (row,) = [json.loads(line) for line in journal.read_text().splitlines()]
    assert row["failure"] == ""
    assert set(row["ms"]) == {"fp32", "int8"} and min(row["ms"].values()) > 0
    assert row["error"]["fp32"] < 1e-4 and row["error"]["int8"] < 0.1
    assert "| 3 | seed 3: input 2x" in out.read_text()
    # a second run with the same journal re-times nothing and reports the same row
    speed_fuzz.main(args)
    assert len(journal.read_text().splitlines()) == 1
