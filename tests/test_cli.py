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


@pytest.mark.parametrize("argv, message", [
    (["--test", "-9990"], "argument --test: expected an integer >= 0, got '-9990'"),
    (["--calib", "0"], "argument --calib"),
    (["--val", "-5"], "argument --val"),
])
def test_run_rejects_bad_counts_by_name(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(["run", *argv])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_run_checks_every_output_path_before_any_work(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    cases = [
        (["--out", str(tmp_path / "file" / "out")],
         f"--out {tmp_path}/file/out cannot be created: {tmp_path}/file is a file"),
        (["--out", str(tmp_path / "o"), "--markdown", str(tmp_path)],
         f"--markdown {tmp_path} is a directory"),
    ]
    for argv, message in cases:
        assert main(["run", *argv]) == 2  # immediately: no model or data is loaded
        err = capsys.readouterr().err.strip()
        assert err.startswith("aiq-tvm: error: ") and len(err.splitlines()) == 1
        assert message in err
        assert not (tmp_path / "o").exists()  # no empty --out directory left behind


STEM = "resnet20_budget_fp32-int8-w8"  # outputs are named by model, search and candidates


def plan_layers(path):
    return json.loads((path / f"{STEM}_plan.json").read_text())["layers"].values()


def test_run_on_pretrained_resnet20(tmp_path):
    """A small end-to-end run: real data, the shipped weights, budget search, JSON outputs."""
    cmd = [sys.executable, "-m", "aiq_tvm", "run", "--model", "resnet20", "--search", "budget",
           "--budget", "1.0", "--precisions", "fp32,int8,w8", "--calib", "64", "--val", "200",
           "--test", "300", "--baselines", "int8", "--out", str(tmp_path),
           "--markdown", str(tmp_path / "md" / "r.md")]  # a directory the run creates
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / f"{STEM}_summary.json").read_text())
    assert summary["val_images"] == 200 and summary["test_images"] == 300
    assert summary["ai_plan"] >= summary["ai_fp32"]
    assert summary["val_accuracy_fp32"] - summary["val_accuracy_plan"] <= 0.01 + 1e-9
    # The uniform baseline is measured on the same images; a plan that is uniform int8 must
    # agree with it exactly (same kernels, same calibration).
    base = summary["baselines"]["int8"]
    assert 0.5 < base["val_accuracy"] <= 1.0 and 0.5 < base["test_accuracy"] <= 1.0
    if all(p == "int8" for p in plan_layers(tmp_path)):
        assert base["val_accuracy"] == summary["val_accuracy_plan"]
    assert "uniform int8: validation accuracy" in proc.stdout
    plan = json.loads((tmp_path / f"{STEM}_plan.json").read_text())
    assert plan["format"] == "aiq_tvm.plan" and len(plan["layers"]) == 22
    assert "AI: fp32" in proc.stdout and "| layer |" in (tmp_path / "md" / "r.md").read_text()


def test_plan_files_resolve_from_search_output_directory(tmp_path, capsys):
    import argparse

    from aiq_tvm.commands import resolve_plan_files

    (tmp_path / "plan.json").write_text("{}")
    (tmp_path / "calibration.json").write_text("{}")
    args = argparse.Namespace(plan=str(tmp_path), calibration=None)
    resolve_plan_files(args)
    assert args.plan == str(tmp_path / "plan.json")
    assert args.calibration == str(tmp_path / "calibration.json")
    out = capsys.readouterr().out
    assert "(from the directory given to --plan)" in out and "(beside the plan;" in out
    # A calibration given on the command line is kept.
    args = argparse.Namespace(plan=str(tmp_path / "plan.json"), calibration="mine.json")
    resolve_plan_files(args)
    assert args.calibration == "mine.json"
    # Nothing beside the plan: nothing is made up (the build then says what is missing).
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "p.json").write_text("{}")
    args = argparse.Namespace(plan=str(alone / "p.json"), calibration=None)
    resolve_plan_files(args)
    assert args.calibration is None and args.plan == str(alone / "p.json")


@pytest.mark.parametrize("argv", [["run"], ["search", "m.onnx", "--data", "d", "--out", "o"],
                                  ["sweep", "m.onnx", "--data", "d", "--out", "o"]])
def test_precisions_default_to_the_targets(argv):
    """Without --precisions every searching command leaves the candidates to the target
    (BuildConfig(precisions=None): FP32 alone where int8 does not pay); given, they are kept."""
    from aiq_tvm.cli import _parser

    assert _parser().parse_args(argv).precisions is None
    given = _parser().parse_args([*argv, "--precisions", "fp32,int8"]).precisions
    assert list(given) == ["fp32", "int8"]
