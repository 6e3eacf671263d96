"""The wheel ships passes/ and targets/ under the single import root aiq_tvm."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_passes_and_targets_under_aiq_tvm(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path),
         str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    # Data folders must be declared, not picked up by accident (setuptools warns otherwise).
    assert "absent from the `packages` configuration" not in proc.stdout + proc.stderr
    (wheel,) = tmp_path.glob("aiq_tvm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for required in ("aiq_tvm/passes/annotate_precision.py",
                     "aiq_tvm/passes/quantize_annotated.py",
                     "aiq_tvm/targets/presets.py",
                     "aiq_tvm/targets/x86/conv2d.py",
                     "aiq_tvm/models/weights/resnet20_fmnist.pt",
                     "aiq_tvm/models/weights/mobilenet_v2_fmnist.pt",
                     "aiq_tvm/targets/presets/znver5-2t.json"):
        assert required in names, f"{required} missing from {wheel.name}"
    tops = {n.split("/")[0] for n in names}
    assert "passes" not in tops and "targets" not in tops
    assert not any(n.startswith(("tests/", "scripts/")) for n in names)


def test_only_benchmark_entry_points_unpin_tvm_threads():
    """``import aiq_tvm`` sets no environment variable; our benchmark entry points unpin TVM's
    pool (docs/threading.md) unless the user chose a binding."""
    env = {k: v for k, v in os.environ.items() if k != "TVM_BIND_THREADS"}
    code = "import os, aiq_tvm; print(os.environ.get('TVM_BIND_THREADS', 'unset'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "unset"
    code = ("import os; from aiq_tvm.threads import unpin_tvm_threads; unpin_tvm_threads(); "
            "print(os.environ['TVM_BIND_THREADS'])")
    for user, expected in ((None, "0"), ("1", "1")):
        run_env = env if user is None else {**env, "TVM_BIND_THREADS": user}
        out = subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True,
                             text=True, check=True)
        assert out.stdout.strip() == expected
    for entry in ("aiq_tvm/cli.py", "scripts/bench_kernels.py", "scripts/bench_models.py"):
        assert "unpin_tvm_threads()" in (ROOT / entry).read_text(), entry
