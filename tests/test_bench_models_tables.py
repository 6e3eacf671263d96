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
