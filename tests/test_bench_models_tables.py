"""The throughput table of scripts/bench_models.py: GOP/s from the model's FLOPs and each
variant's time, and the share of the preset peak that matches the variant's arithmetic."""

import importlib.util
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "bench_models", Path(__file__).resolve().parents[1] / "scripts" / "bench_models.py")
bench_models = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench_models)


def _row():
    # 2 GFLOP per image at batch 4: 8 GFLOP per call.
    return {"model": "m", "batch": 4,
            "ms": {"tvm-fp32": 100.0, "tvm-int8": 20.0, "onnxruntime-int8": 40.0,
                   "tvm-aiq-plan": 16.0},
            "roofline": {"flops_per_image": 2e9, "preset": "p", "peak_fp32": 100.0,
                         "peak_int8": 400.0}}


def test_throughput_uses_the_peak_of_each_variants_arithmetic():
    table = bench_models.render_throughput([_row()])
    line = next(ln for ln in table.splitlines() if ln.startswith("| m |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:4] == ["m", "4", "2.00", "p (100 / 400)"]
    # fp32: 8 GFLOP / 0.1 s = 80 GFLOP/s = 80 % of the fp32 peak; int8 400 GOP/s = 100 % of
    # the int8 peak; ORT int8 200 = 50 %; a mixed plan gets no share.
    assert cells[4:] == ["80 (80 %)", "400 (100 %)", "200 (50 %)", "500"]


def test_runs_saved_before_the_table_render_without_it():
    row = _row()
    del row["roofline"]
    assert bench_models.render_throughput([row]) == ""


def test_ratios_pair_the_rounds_when_the_row_keeps_them():
    # Rounds 2 and 3 were slow spells of the host, the third mostly during the int8 timing:
    # per-round ratios 2.0, 2.0, 1.25 (median 2.0); the medians, 50 / 30 ms, would say 1.67.
    row = {"model": "m", "batch": 1, "cos": {},
           "ms": {"tvm-fp32": 50.0, "tvm-int8": 30.0},
           "rounds_ms": {"tvm-fp32": [20.0, 60.0, 50.0], "tvm-int8": [10.0, 30.0, 40.0]}}
    assert bench_models.speedup(row, "tvm-fp32", "tvm-int8") == 2.0
    line = next(ln for ln in bench_models.render_tables([row]).splitlines()
                if ln.startswith("| m |"))
    assert line.rstrip(" |").endswith("2.00x")
    del row["rounds_ms"]  # runs saved before the rounds were kept: the ratio of the medians
    assert bench_models.speedup(row, "tvm-fp32", "tvm-int8") == 50.0 / 30.0


def _run(row, rounds=None):
    return {"command": "c", "machine": "x", "threads": 2, "date": "d", "rounds": rounds,
            "round_ms": 150.0, "gap_ms": 100.0, "clock": "wall", "peak_rss_mb": 1.0,
            "rows": [row]}


def test_the_page_names_the_round_order_and_each_rows_round_count():
    row = {"model": "m", "batch": 1, "cos": {}, "build_s": {},
           "ms": {"tvm-fp32": 2.0, "tvm-int8": 1.0},
           "rounds_ms": {"tvm-fp32": [2.0, 2.0], "tvm-int8": [1.0, 1.0]}, "rounds": 2,
           "round_orders": [["tvm-fp32", "tvm-int8"], ["tvm-int8", "tvm-fp32"]]}
    page = bench_models.render_page([_run(row)])  # --rounds not given: the row's own count
    assert "Medians of 2 interleaved rounds" in page
    assert "in the order of a Williams design" in page
    # Runs saved before the orders were recorded rotated their order; the page says so.
    del row["round_orders"], row["rounds"]
    page = bench_models.render_page([_run(row, rounds=15)])
    assert "Medians of 15 interleaved rounds" in page
    assert "starting one variant later than the round before" in page
