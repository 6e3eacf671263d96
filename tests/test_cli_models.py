"""``aiq-tvm search / sweep / build / bench`` on a CNN that is not in the repository
(1 x 28 x 28 input, .pt2 and .onnx, data as .npz) and on an image folder; bad inputs."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch
import tvm
from PIL import Image
from test_sources import FlatNet, GrayNet
from tvm import relax

import aiq_tvm
from aiq_tvm.cli import main
from aiq_tvm.datasources import load_data


def cli(*args, timeout=900):
    env = {**os.environ, "TVM_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, "-m", "aiq_tvm", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A FlatNet briefly trained on Fashion-MNIST test images 1000+ (so accuracy means
    something), saved as .pt2 and .onnx; data.npz holds other images of the test split."""
    from aiq_tvm import datasets

    d = tmp_path_factory.mktemp("cli")
    xt, yt = datasets.fashion_mnist("test")
    xt = np.ascontiguousarray(xt[:, :1, 2:30, 2:30])
    torch.manual_seed(0)
    net = FlatNet()
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    xs, ys = torch.from_numpy(xt[1000:5000]), torch.from_numpy(yt[1000:5000])
    for i in range(0, 4000, 100):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xs[i:i + 100]), ys[i:i + 100]).backward()
        opt.step()
    net.eval()
    x = torch.randn(2, 1, 28, 28)
    torch.export.save(torch.export.export(net, (x,)), d / "gray.pt2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(d / "gray.onnx"), dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "n"}})
    np.savez(d / "data.npz", x=xt[:300], y=yt[:300], x_test=xt[300:400], y_test=yt[300:400])
    return d


def _accuracy_of_so(so, x, y, batch):
    vm = aiq_tvm.load(so)  # the library and its weights (gray.params) beside it
    pad = -len(x) % batch
    xp = np.concatenate([x, np.zeros((pad, *x.shape[1:]), np.float32)])
    pred = np.concatenate([vm["main"](tvm.runtime.tensor(xp[i:i + batch])).numpy().argmax(1)
                           for i in range(0, len(xp), batch)])[:len(x)]
    return float((pred == y).mean())


def test_search_on_onnx_then_build_pt2_so_matches_summary(files, tmp_path):
    out = tmp_path / "run"
    p = cli("search", files / "gray.onnx", "--data", files / "data.npz", "--calib", 64,
            "--val", 200, "--lam", 0.9, "--precisions", "fp32,int8,int4", "--out", out,
            "--quiet")
    assert p.returncode == 0, p.stderr[-3000:]
    assert {f.name for f in out.iterdir()} == {"plan.json", "calibration.json", "report.json",
                                               "report.md", "summary.json",
                                               "search_journal.jsonl",
                                               "calibration.hessians.npz"}
    s = json.loads((out / "summary.json").read_text())
    for key in ("accuracy_fp32", "accuracy", "test_accuracy_fp32", "test_accuracy"):
        assert 0.4 < s[key] <= 1.0, (key, s[key])  # a trained model, not chance (0.1)
    assert s["ai"] >= s["ai_fp32"] > 0 and s["search_s"] > 0
    assert s["data"] == {**s["data"], "calib_images": 64, "val_images": 200, "test_images": 100}
    assert "| layer |" in (out / "report.md").read_text() and "conv2" in p.stdout
    # The .pt2 of the same network has the same layer names: build the plan from it, given
    # search's directory alone (its plan.json, and the calibration.json beside it).
    so = tmp_path / "gray.so"
    p = cli("build", files / "gray.pt2", "--plan", out, "--batch", 4, "-o", so, "--quiet")
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"plan: {out / 'plan.json'} (from the directory given to --plan)" in p.stdout
    assert f"calibration: {out / 'calibration.json'} (beside the plan" in p.stdout
    assert f"wrote {so} and {tmp_path / 'gray.params'}" in p.stdout
    d = load_data(str(files / "data.npz"), (1, 28, 28), calib=64, val=200, seed=0)
    assert _accuracy_of_so(so, *d.val, 4) == s["accuracy"]
    assert _accuracy_of_so(so, *d.test, 4) == s["test_accuracy"]


def test_build_of_an_int8_plan_without_calibration_says_what_to_give(files, tmp_path):
    from aiq_tvm import Plan

    Plan.uniform("int8").save(tmp_path / "int8.json")  # no calibration.json beside it
    p = cli("build", files / "gray.pt2", "--plan", tmp_path / "int8.json", "-o",
            tmp_path / "x.so", "--quiet")
    assert p.returncode != 0 and not (tmp_path / "x.so").exists()
    assert (f"plan {tmp_path / 'int8.json'} quantizes activations, which needs their ranges: "
            "give --calibration calibration.json") in p.stderr


def test_build_single_file_embeds_the_weights(files, tmp_path):
    from aiq_tvm import Plan

    Plan.uniform("fp32").save(tmp_path / "fp32.json")
    so = tmp_path / "one.so"
    p = cli("build", files / "gray.pt2", "--plan", tmp_path / "fp32.json", "--batch", 2,
            "-o", so, "--single-file", "--quiet")
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"wrote {so} (batch 2" in p.stdout and not (tmp_path / "one.params").exists()
    x = np.load(files / "data.npz")["x"][:2]
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(so)), tvm.cpu())  # TVM alone
    with torch.no_grad():
        want = torch.export.load(files / "gray.pt2").module()(torch.from_numpy(x)).numpy()
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_build_in_micro_batches_reports_them_and_runs_the_whole_batch(files, tmp_path):
    from aiq_tvm import Plan

    Plan.uniform("fp32").save(tmp_path / "fp32.json")
    so = tmp_path / "mb.so"
    p = cli("build", files / "gray.pt2", "--plan", tmp_path / "fp32.json", "--batch", 2,
            "--micro-batch", 1, "-o", so, "--single-file", "--quiet")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "micro-batch 1 at batch 2 (2 call(s) of 1): micro_batch=1 as configured" in p.stdout
    x = np.load(files / "data.npz")["x"][:2]
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(so)), tvm.cpu())
    with torch.no_grad():
        want = torch.export.load(files / "gray.pt2").module()(torch.from_numpy(x)).numpy()
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_micro_batch_that_does_not_divide_the_batch_is_one_line(files, tmp_path, capsys):
    from aiq_tvm import Plan

    Plan.uniform("fp32").save(tmp_path / "fp32.json")
    assert main(["build", str(files / "gray.pt2"), "--plan", str(tmp_path / "fp32.json"),
                 "--batch", "4", "--micro-batch", "3", "-o", str(tmp_path / "m.so"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("aiq-tvm: error: micro_batch=3 does not divide the batch size 4; valid "
                   "micro-batches for batch 4: [1, 2, 4] (or 'auto', or None for off)")


def test_interrupted_search_resumes_from_its_journal_to_the_same_plan(files, tmp_path,
                                                                       monkeypatch, capsys):
    from aiq_tvm import phases

    def search(out, *extra):
        return main(["search", str(files / "gray.onnx"), "--data", str(files / "data.npz"),
                     "--calib", "32", "--val", "100", "--test", "0", "--precisions",
                     "fp32,int8", "--out", str(out), "--quiet", *extra])

    assert search(tmp_path / "whole") == 0
    whole = json.loads((tmp_path / "whole" / "summary.json").read_text())
    total = whole["search_evaluations"]
    assert total >= 4 and whole["resumed_evaluations"] == 0
    oracle = phases._accuracy_oracle
    calls, stop_at = [], [total // 2 + 1]

    def interrupted(*args):
        acc_fn = oracle(*args)

        def fn(assignment):
            calls.append(1)
            if len(calls) == stop_at[0]:
                raise KeyboardInterrupt  # Ctrl-C in the middle of an evaluation
            return acc_fn(assignment)

        return fn

    out = tmp_path / "resumed"
    with monkeypatch.context() as m:
        m.setattr(phases, "_accuracy_oracle", interrupted)
        assert search(out) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "aiq-tvm: interrupted"
    journal = out / "search_journal.jsonl"
    assert [f.name for f in out.iterdir()] == [journal.name]  # finished work is kept
    assert len(journal.read_text().splitlines()) == 1 + total // 2
    assert search(out) == 2  # never overwritten without --resume
    assert "holds" in capsys.readouterr().err and not (out / "plan.json").exists()
    calls.clear()
    stop_at[0] = None
    with monkeypatch.context() as m:
        m.setattr(phases, "_accuracy_oracle", interrupted)  # counts, interrupts no more
        assert search(out, "--resume") == 0
    resumed = json.loads((out / "summary.json").read_text())
    assert len(calls) == total - total // 2  # only what the journal did not hold
    assert resumed["resumed_evaluations"] == total // 2
    assert resumed["search_evaluations"] == total and resumed["accuracy"] == whole["accuracy"]
    assert json.loads((out / "plan.json").read_text())["layers"] == json.loads(
        (tmp_path / "whole" / "plan.json").read_text())["layers"]


def test_sweep_writes_pareto_and_pngs(files, tmp_path):
    out = tmp_path / "sweep"
    p = cli("sweep", files / "gray.pt2", "--data", files / "data.npz", "--calib", 32, "--val",
            100, "--test", 0, "--lams", "0.5,0.99", "--precisions", "fp32,int8,int4", "--out",
            out, "--quiet")
    assert p.returncode == 0, p.stderr[-3000:]
    par = json.loads((out / "pareto.json").read_text())
    assert [pt["lambda"] for pt in par["points"]] == [0.5, 0.99]
    assert set(par["references"]) == {"fp32", "int8", "int4"}
    latency = {}
    for entry in [*par["points"], *par["references"].values()]:
        assert entry["latency_ms"] > 0 and 0 <= entry["accuracy"] <= 1
        # one build and one figure per distinct plan (timed in interleaved rounds)
        key = json.dumps(entry["plan"], sort_keys=True)
        assert latency.setdefault(key, entry["latency_ms"]) == entry["latency_ms"]
    assert par["references"]["int4"]["ai"] > par["references"]["int8"]["ai"] > par["ai_fp32"]
    assert par["warnings"] == []  # 10 outputs, 10 classes
    # Both lambdas share one journal: every plan was evaluated once.
    records = [json.loads(line) for line in
               (out / "search_journal.jsonl").read_text().splitlines()[1:]]
    plans = [json.dumps(r["plan"], sort_keys=True) for r in records]
    assert len(plans) == len(set(plans)) >= par["points"][0]["search_evaluations"]
    for name in ("pareto.png", "roofline.png", "layers.png"):
        img = Image.open(out / name)
        assert img.format == "PNG" and min(img.size) > 300


def test_bench_tvm_beside_torch_and_onnxruntime(files, tmp_path):
    p = cli("bench", files / "gray.pt2", "--batch", "1,4", "--data", files / "data.npz",
            "--calib", 32, "--val", 32, "--rounds", 3, "--round-ms", 20, "--gap-ms", 5,
            "--json", tmp_path / "b.json", "--quiet")
    assert p.returncode == 0, p.stderr[-3000:]
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    variants = {r["variant"] for r in rows}
    assert variants == {"tvm-fp32", "tvm-int8", "torch", "onnxruntime-fp32",
                        "onnxruntime-int8"}, p.stdout
    assert {r["batch"] for r in rows} == {1, 4} and all(r["median_ms"] > 0 for r in rows)
    assert "| batch |" in p.stdout


def test_bench_plan_under_the_speed_floor_per_batch(files, tmp_path):
    """--speed-floor on bench: the plan is also built floored at each --batch and timed only
    at that batch."""
    from aiq_tvm import Plan

    Plan.uniform("int4").save(tmp_path / "p.json")
    p = cli("bench", files / "gray.pt2", "--batch", "1,4", "--data", files / "data.npz",
            "--calib", 32, "--val", 32, "--plan", tmp_path / "p.json", "--speed-floor", "int8",
            "--compare", "", "--rounds", 2, "--round-ms", 10, "--gap-ms", 5,
            "--json", tmp_path / "b.json", "--quiet")
    assert p.returncode == 0, p.stderr[-3000:]
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    by_batch = {bs: {r["variant"] for r in rows if r["batch"] == bs} for bs in (1, 4)}
    assert by_batch[1] == {"tvm-fp32", "tvm-int8", "tvm-plan", "tvm-plan-floor-b1"}
    assert by_batch[4] == {"tvm-fp32", "tvm-int8", "tvm-plan", "tvm-plan-floor-b4"}


def test_image_folder_with_onnx_model(files, tmp_path):
    """PNG files in class folders, resized and normalized with --mean/--std (the torchvision
    MODEL form is covered in test_sources; its import takes minutes on 2 cores)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 2)):
        for c in ("a", "b"):
            (tmp_path / "imgs" / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (40, 40)).astype(np.uint8)).save(
                    tmp_path / "imgs" / split / c / f"{i}.png")
    out = tmp_path / "run"
    p = cli("search", files / "gray.onnx", "--data", tmp_path / "imgs", "--mean", "0.3",
            "--std", "0.35", "--calib", 4, "--val", 8, "--precisions", "fp32,int8",
            "--out", out, "--quiet")
    assert p.returncode == 0, p.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["data"]["test_images"] == 4 and s["data"]["val_images"] == 8
    assert "mean (0.3,) std (0.35,)" in s["data"]["notes"][0]
    # the Fashion-MNIST network has 10 outputs, the folder 2 classes
    assert s["warnings"][0].startswith(f"the model has 10 outputs but {tmp_path / 'imgs'} has 2 "
                                       "classes")


def test_more_model_outputs_than_data_classes_is_warned_and_recorded(files, tmp_path, capsys):
    """A random-init 20-output model on 10-class data: the 0 % is explained, not silent."""
    torch.manual_seed(0)
    torch.export.save(torch.export.export(GrayNet(classes=20).eval(),
                                          (torch.randn(2, 1, 28, 28),)), tmp_path / "g20.pt2")
    out = tmp_path / "run"
    assert main(["search", str(tmp_path / "g20.pt2"), "--data", str(files / "data.npz"),
                 "--calib", "16", "--val", "32", "--test", "0", "--precisions", "fp32,int8",
                 "--out", str(out), "--quiet"]) == 0
    std = capsys.readouterr()
    s = json.loads((out / "summary.json").read_text())
    (warning,) = s["warnings"]
    assert s["data"]["warnings"] == s["warnings"] and s["data"]["classes"] == 10
    assert warning.startswith("the model has 20 outputs but the labels of ")
    assert "up to 9 (10 classes)" in warning and "--weights file.pt" in warning
    assert f"aiq-tvm: warning: {warning}" in std.err  # before the search starts
    assert f"warning: {warning}" in std.out and f"warning: {warning}" in (
        out / "report.md").read_text()


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("argv, message", [
    (["search", "resnet99", "--data", "fashion-mnist", "--out", "{tmp}/o"],
     "unknown MODEL 'resnet99'"),
    (["search", "resnet20", "--data", "{tmp}/none.npz", "--out", "{tmp}/o"],
     "data file '{tmp}/none.npz' does not exist"),
    (["search", "resnet20", "--data", "{npz}", "--out", "{tmp}/o"],
     r"has shape (400, 1, 28, 28) but the model takes (N, 3, 32, 32)"),
    (["search", "{tmp}/file/sub.pt2", "--data", "fashion-mnist", "--out", "{tmp}/file/out"],
     "--out {tmp}/file/out cannot be created: {tmp}/file is a file"),
    (["build", "resnet20", "--plan", "{tmp}", "-o", "{tmp}/m.so"], "plan file"),
    (["build", "resnet20", "--plan", "p.json", "-o", "{tmp}"], "-o {tmp} is a directory"),
])
def test_bad_inputs_one_line_exit_2(tmp_path, capsys, files, argv, message):
    (tmp_path / "file").write_text("x")
    npz = tmp_path / "d.npz"
    np.savez(npz, x=np.random.default_rng(0).standard_normal((400, 1, 28, 28)).astype(
        np.float32), y=np.zeros(400, np.int64))
    fill = {"tmp": str(tmp_path), "npz": str(npz)}
    assert main([a.format(**fill) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("aiq-tvm: error: ")
    assert message.format(**fill) in err
    assert not (tmp_path / "o").exists()  # no empty --out directory left behind


def test_argument_errors():
    for argv in (["search", "resnet20", "--data", "fashion-mnist", "--out", "o", "--test",
                  "-9990"],
                 ["sweep", "resnet20", "--data", "fashion-mnist", "--out", "o", "--lams",
                  "0.5,1.5"],
                 ["bench", "resnet20", "--compare", "tensorflow"],
                 ["build", "resnet20", "--plan", "p.json", "-o", "m.so", "--micro-batch",
                  "half"],
                 ["search", "resnet20", "--data", "fashion-mnist", "--out", "o", "--lam",
                  "2"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2


def test_ctrl_c_prints_one_line_and_exits_130(files, tmp_path):
    env = {**os.environ, "TVM_NUM_THREADS": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "aiq_tvm", "search", "resnet20", "--data",
                             "fashion-mnist", "--out", str(tmp_path / "o"), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(12)  # inside model import / calibration compile
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "aiq-tvm: interrupted"
    assert "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_bench_on_an_rpc_server(files, tmp_path):
    from aiq_tvm.targets.arm import RPCServer

    with RPCServer() as server:
        address = server.address
        p = cli("bench", files / "gray.pt2", "--batch", 2, "--rounds", 3, "--rpc",
                address, "--compare", "torch", "--json",
                tmp_path / "b.json", "--quiet")
    assert p.returncode == 0, p.stderr[-3000:]
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert {r["variant"] for r in rows} == {"tvm-fp32", "tvm-int8"}
    assert all(r["median_ms"] > 0 and r["device"] == address for r in rows)
    assert "--rpc: torch not run" in p.stdout
