"""scripts/arm/check_models.py's pure parts: the mixed plan it gives any model, and its table
(the builds and the board run are `make test-arm`'s and the script's own business)."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

_SPEC = importlib.util.spec_from_file_location(
    "check_models", Path(__file__).resolve().parents[1] / "scripts" / "arm" / "check_models.py")
check_models = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(check_models)


def row(name, precision="int8", op="conv2d"):
    return SimpleNamespace(name=name, precision=precision, op=op)


def test_mixed_plan_keeps_first_and_last_int8_and_alternates_int4_between():
    rows = [row("stem"), row("a"), row("b"), row("head_fp32", "fp32"), row("c"), row("d"),
            row("fc")]
    plan = check_models.mixed_plan(rows)
    got = {r.name: plan.precision_for(r.name) for r in rows if r.precision != "fp32"}
    assert got == {"stem": "int8", "a": "int4", "b": "int8", "c": "int4", "d": "int8",
                   "fc": "int8"}


def test_levels_come_from_target_features():
    assert check_models.arm_target("neon_i8mm")["mattr"] == ["+neon", "+dotprod", "+i8mm"]
    assert check_models.arm_target("neon")["mattr"] == ["+neon"]


def test_table_counts_depthwise_kernels_and_shows_errors():
    ok = {"model": "tv/m", "level": "neon_dotprod", "plan": "int8", "status": "ok",
          "precisions": {"int8": 5}, "integer_kernels": 5, "instructions": {"sdot": 120},
          "kernels_without_level_instructions": ["dw1 (depthwise)", "dw2 (depthwise)", "odd"],
          "bit_exact": False, "max_rel_err": 2.5e-7, "min_cos": 0.9999999, "top1_agree": 1.0,
          "build_s": 12.4}
    bad = {"model": "tv/n", "level": "neon", "plan": "mixed", "status": "error",
           "error": "ValueError: no"}
    lines = check_models.render([ok, bad]).splitlines()
    assert lines[2] == ("| tv/m | neon_dotprod | int8 | int8: 5 | 2 of 5 | sdot 120 | "
                        "2 depthwise, odd | no | 2.5e-07 | 1.000000 | 100 % | 12 |")
    assert lines[3].startswith("| tv/n | neon | mixed |") and "ValueError: no" in lines[3]


def test_kernels_are_split_from_objdump_text_dashed_layer_names_included():
    from aiq_tvm.targets.arm.disassembly import instruction_counts, split_kernels

    text = """
0000000000001000 <trunk_output_block1_block1-0_f_b_0_int8_compute_>:
    1000:	sdot	v0.4s, v1.16b, v2.16b
    1004:	sdot	v3.4s, v1.16b, v4.16b
0000000000001010 <mean_compute_>:
    1010:	fadd	v0.4s, v0.4s, v1.4s
0000000000001020 <fc_int4_compute_>:
    1020:	smull	v0.8h, v1.8b, v2.8b
    1024:	sadalp	v5.4s, v0.8h
"""
    bodies = split_kernels(text)
    dashed = "trunk_output_block1_block1-0_f_b_0_int8_compute_"
    assert sorted(bodies) == ["fc_int4_compute_", dashed]
    assert instruction_counts(bodies[dashed],
                              ("sdot", "smull")) == {"sdot": 2, "smull": 0}
    assert instruction_counts(bodies["fc_int4_compute_"], ("smull", "sadalp")) == \
        {"smull": 1, "sadalp": 1}


def test_aiq_plan_is_the_default_search():
    """Plan ``aiq`` of the Arm scripts is what a user gets by default: the greedy search over
    the target's default precisions (cross build: calibration and search run on the host);
    on plain NEON those are FP32 alone."""
    import numpy as np
    import torch
    from torch import nn

    import aiq_tvm

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 1),
                          nn.Flatten(), nn.Linear(32 * 8 * 8, 10)).eval()
    x = torch.randn(16, 8, 8, 8)
    mod, params = aiq_tvm.from_torch(model, x[:1])
    val = (x.numpy(), model(x).argmax(1).numpy().astype(np.int64))
    builds = list(check_models.plan_builds(mod, params, x.numpy(), ["neon_dotprod", "neon"],
                                           ["aiq"], 1, val))
    assert [(b[0], b[1]) for b in builds] == [("neon_dotprod", "aiq"), ("neon", "aiq")]
    dotprod, neon = (b[2] for b in builds)
    assert dotprod.plan.metadata["method"] == "greedy"
    assert {r.precision for r in dotprod.report.rows} != {"fp32"}  # lambda 0.9 quantizes
    assert {r.precision for r in neon.report.rows} == {"fp32"}
