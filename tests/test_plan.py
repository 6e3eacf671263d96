"""Plans, the precision registry, and that the pure modules stay free of TVM."""

import json
import subprocess
import sys

import pytest

from aiq_tvm import PRECISIONS, Plan, get_precision
from aiq_tvm.plan import PLAN_VERSION
from aiq_tvm.schemes import PrecisionScheme

LAYERS = ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv1",
          "layer2.0.downsample.0", "fc"]


def test_registry_keys_and_bytes():
    assert list(PRECISIONS) == ["fp32", "int8", "int4", "w8", "w4"]
    assert get_precision("int4").weight_bytes == 0.5
    assert get_precision("int8").act_bytes == 1
    assert get_precision("w4").act_bytes == 4
    assert get_precision("int8").quantizes_activations
    assert not get_precision("w8").quantizes_activations


def test_unknown_precision_lists_valid_names():
    with pytest.raises(ValueError, match="fp32, int8, int4, w8, w4"):
        get_precision("int2")


@pytest.mark.parametrize("kwargs, msg", [
    (dict(name="x", weight_bits=3, act_bits=8), "weight_bits"),
    (dict(name="x", weight_bits=8, act_bits=16), "act_bits"),
    (dict(name="x", weight_bits=32, act_bits=8), "integer weights"),
    (dict(name="not valid", weight_bits=8, act_bits=8), "identifier"),
])
def test_scheme_validation(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        PrecisionScheme(description="", **kwargs)


def test_resolution_order_exact_then_pattern_then_default():
    plan = Plan({"re:layer1\\..*": "int4", "layer1.0.conv2": "w8", "re:layer.*": "int8",
                 "fc": "fp32"}, default="w4")
    got = plan.resolve(LAYERS)
    assert got == {
        "conv1": "w4",                  # default
        "layer1.0.conv1": "int4",       # first matching pattern
        "layer1.0.conv2": "w8",         # exact beats patterns
        "layer2.0.conv1": "int8",       # second pattern
        "layer2.0.downsample.0": "int8",
        "fc": "fp32",
    }


def test_unknown_layer_and_dead_pattern_are_errors():
    with pytest.raises(ValueError, match=r"layer9.*the model's layers are"):
        Plan({"layer9": "int8"}).resolve(LAYERS)
    with pytest.raises(ValueError, match="match no layer"):
        Plan({"re:block.*": "int8"}).resolve(LAYERS)


@pytest.mark.parametrize("layers, default, msg", [
    ({"fc": "int3"}, "fp32", "plan entry 'fc'.*valid precisions"),
    ({}, "bf16", "valid precisions"),
    ({"re:(": "int8"}, "fp32", "invalid regular expression"),
])
def test_bad_plans(layers, default, msg):
    with pytest.raises(ValueError, match=msg):
        Plan(layers, default=default)


def test_json_round_trip(tmp_path):
    plan = Plan({"fc": "int8", "re:layer2.*": "int4"}, default="w8", metadata={"lam": 0.9})
    path = tmp_path / "plan.json"
    plan.save(path)
    data = json.loads(path.read_text())
    assert data["format"] == "aiq_tvm.plan" and data["version"] == PLAN_VERSION
    loaded = Plan.load(path)
    assert loaded == plan
    assert loaded.metadata == {"lam": 0.9}
    assert loaded.resolve(LAYERS) == plan.resolve(LAYERS)


def test_bad_json(tmp_path):
    with pytest.raises(ValueError, match="not valid JSON"):
        Plan.from_json("{")
    with pytest.raises(ValueError, match="not an aiq_tvm plan"):
        Plan.from_json('{"layers": {}}')
    with pytest.raises(ValueError, match="unsupported plan version 99"):
        Plan.from_json('{"format": "aiq_tvm.plan", "version": 99}')
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Plan.load(tmp_path / "missing.json")
    with pytest.raises(ValueError, match=r'plan "layers" must be an object of layer -> '
                       r"precision.*got a JSON array"):
        Plan.from_json('{"format": "aiq_tvm.plan", "version": 1, "layers": ["int8"]}')
    Plan({"fc": "int8"}).save(tmp_path / "plan.json")
    with pytest.raises(IsADirectoryError, match="is a directory .it holds a plan.json"):
        Plan.load(tmp_path)


# The pure-Python modules docs/architecture.md lists.
PURE = ("schemes", "plan", "cost", "search", "objectives", "config", "checks", "calibrate",
        "batching", "report", "quant", "threads", "datasets", "datasources", "sources", "cli")


def test_pure_modules_do_not_import_tvm():
    code = ("import sys, aiq_tvm; " + "; ".join(f"import aiq_tvm.{m}" for m in PURE)
            + "; assert 'tvm' not in sys.modules, 'tvm was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
