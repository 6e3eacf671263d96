"""The wheel ships passes/ and targets/ under the single import root aiq_tvm."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_passes_and_targets_under_aiq_tvm(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path),
         str(ROOT)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("aiq_tvm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for required in ("aiq_tvm/passes/annotate_precision.py",
                     "aiq_tvm/passes/quantize_annotated.py",
                     "aiq_tvm/targets/presets.py",
                     "aiq_tvm/targets/x86/conv2d.py",
                     "aiq_tvm/models/weights/resnet20_fmnist.pt"):
        assert required in names, f"{required} missing from {wheel.name}"
    tops = {n.split("/")[0] for n in names}
    assert "passes" not in tops and "targets" not in tops
    assert not any(n.startswith(("tests/", "scripts/")) for n in names)
