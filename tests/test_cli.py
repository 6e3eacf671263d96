"""The aiq-tvm command line."""

import json
import subprocess
import sys

import pytest

from aiq_tvm.cli import main


def test_presets_lists_peaks(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "cortex-a72" in out and "GFLOP/s" in out and "source:" in out


def test_bad_choices_are_rejected():
    with pytest.raises(SystemExit):
        main(["run", "--precisions", "int8,int3"])
    with pytest.raises(SystemExit):
        main(["run", "--search", "annealing"])
    with pytest.raises(SystemExit):
        main(["run", "--tune", "db", "--trials", "0"])


def test_run_on_pretrained_resnet20(tmp_path):
    """A small end-to-end run: real data, the shipped weights, budget search, JSON outputs."""
    cmd = [sys.executable, "-m", "aiq_tvm", "run", "--model", "resnet20", "--search", "budget",
           "--budget", "1.0", "--precisions", "fp32,int8,w8", "--calib", "64", "--val", "200",
           "--test", "300", "--out", str(tmp_path), "--markdown", str(tmp_path / "r.md")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "resnet20_budget_summary.json").read_text())
    assert summary["val_images"] == 200 and summary["test_images"] == 300
    assert summary["ai_plan"] >= summary["ai_fp32"]
    assert summary["val_accuracy_fp32"] - summary["val_accuracy_plan"] <= 0.01 + 1e-9
    plan = json.loads((tmp_path / "resnet20_budget_plan.json").read_text())
    assert plan["format"] == "aiq_tvm.plan" and len(plan["layers"]) == 22
    assert "AI: fp32" in proc.stdout and "| layer |" in (tmp_path / "r.md").read_text()
