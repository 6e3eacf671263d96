"""The per-plan comparison table of scripts/profile_layers.py: every layer of the first plan
in program order, each plan's kernel time, the first plan's time over the others'."""

import importlib.util
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "profile_layers", Path(__file__).resolve().parents[1] / "scripts" / "profile_layers.py")
profile_layers = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(profile_layers)


def test_compare_plans():
    times = {"fp32": {"per_layer": {"conv1": 300.0, "fc": 4.0}, "other_us": 50.0},
             "int8": {"per_layer": {"conv1": 200.0}, "other_us": 40.0}}
    lines = profile_layers.compare_plans(times).splitlines()
    assert lines[0] == "| layer | fp32 ms | int8 ms | fp32 / int8 |"
    assert lines[2] == "| conv1 | 0.300 | 0.200 | 1.50x |"
    assert lines[3] == "| fc | 0.004 | - | - |"  # a layer without a kernel in the other plan
    assert lines[4] == "| other kernels | 0.050 | 0.040 | 1.25x |"
    assert lines[5] == "| sum | 0.354 | 0.240 | 1.48x |"
