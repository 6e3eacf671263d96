"""The speed floor (BuildConfig.speed_floor, aiq_tvm.floor): the kernel library's modelled
cycles decide, per target, which layer precisions are slower than the floor's."""

import numpy as np
import pytest
import torch
from torch import nn

import aiq_tvm
from aiq_tvm import BuildConfig
from aiq_tvm.floor import (
    FLOOR_TOLERANCE,
    MEASURED_FLOOR_TOLERANCE,
    floor_choices,
    floor_memory,
    floor_plan,
    layer_cycles,
)
from aiq_tvm.quant import ActQParams
from aiq_tvm.targets import resolve_target
from aiq_tvm.targets.x86 import (
    ConvSpec,
    DenseSpec,
    conv2d_cycles,
    conv2d_kernel,
    dense_cycles,
    dense_kernel,
)
from conftest import randomize_bn

TARGETS = {
    "znver4": "znver4-2t",  # AVX-512 VNNI
    "haswell": "haswell-on-znver4-2t",  # AVX2, vpmaddubsw
    "aarch64": {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon", "+dotprod"],
                "num-cores": 2},
}


def _target(key):
    return resolve_target(TARGETS[key])[0]


class FloorNet(nn.Module):
    """Layers on both sides of the int8 / int4 and fp32 / int8 lines, depending on target."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(64, 64, 3, padding=1)
        self.b = nn.Conv2d(64, 128, 3, stride=2, padding=1)
        self.dw = nn.Conv2d(128, 128, 3, padding=1, groups=128)
        self.c = nn.Conv2d(128, 256, 3, stride=2, padding=1)
        self.d = nn.Conv2d(256, 1024, 1)
        self.fc = nn.Linear(1024, 100)

    def forward(self, x):
        y = torch.relu(self.a(x))
        y = torch.relu(self.b(y))
        y = torch.relu(self.dw(y))
        y = torch.relu(self.c(y))
        return self.fc(self.d(y).mean((2, 3)))


@pytest.fixture(scope="module")
def floor_net():
    torch.manual_seed(0)
    model = FloorNet().eval()
    mod, params = aiq_tvm.from_torch(model, torch.randn(2, 64, 16, 16))
    return mod, params


@pytest.fixture(scope="module")
def floor_cost(floor_net):
    from aiq_tvm._ir import specialize_batch
    from aiq_tvm.analysis import cost_model
    from aiq_tvm.compiler import prepare

    return cost_model(specialize_batch(prepare(floor_net[0]), 1))


# The layers whose modelled kernel is slower than the floor's beyond FLOOR_TOLERANCE at batch
# 1 (scripts/floor_layers.py prints the ratios): int4 pays its decode on VNNI (the weights,
# re-read from the LLC the preset records, cost little: c and d too), on AVX2 the 16 x 16
# layer runs int8's Winograd kernel in int4 too (not slower), and on aarch64 (a preset
# without cache figures: the weights come from memory, which int4 halves) int4's unpacking
# in the loop outweighs the read on every conv against int8's 16-channel sdot blocks. The
# classifier (a GEMV at batch 1) is dominated by its weight read and stays int4. The
# depthwise layer runs int8's kernel in int4 too (its 4-bit codes are float constants).
EXCLUDED_INT4 = {
    "znver4": ["a", "b", "c", "d"],
    "haswell": [],
    "aarch64": ["a", "b", "c", "d"],
}
# The depthwise layer's FP32 kernel reads its borders inline while int8's (stride 1) makes a
# padded copy: FP32 is the faster one on every target (on this host, 144 @ 56 x 56 at batch 1:
# fp32 0.050 ms, int8 0.059 ms; docs/runs/s27/dw_border.txt).
EXCLUDED_INT8_BY_FP32 = {"znver4": ["dw"], "haswell": ["dw"], "aarch64": ["dw"]}


@pytest.mark.parametrize("key", list(TARGETS))
def test_given_plan_moves_exactly_the_slow_layers(floor_cost, key):
    cost, target = floor_cost, _target(key)
    before = {n: "int4" for n in cost.searchable}
    after, moves = floor_plan(before, cost, "int8", target)
    assert [m.layer for m in moves] == EXCLUDED_INT4[key]
    assert {n for n, p in after.items() if p == "int8"} == set(EXCLUDED_INT4[key])
    assert {n for n, p in after.items() if p == "int4"} == set(cost.searchable) - set(
        EXCLUDED_INT4[key])
    for m in moves:
        assert m.action == "moved" and m.precision == "int4" and m.floor == "int8"
        assert m.cycles > m.floor_cycles * (1 + FLOOR_TOLERANCE)
        read = floor_memory(cost, "int8", target)[1]  # the target's weight-read term
        assert m.cycles == layer_cycles(cost[m.layer], "int4", target, read)


@pytest.mark.parametrize("key", list(TARGETS))
def test_fp32_floor(floor_cost, key):
    """Issue 8: no int8 layer slower than its FP32 kernel."""
    cost, target = floor_cost, _target(key)
    after, moves = floor_plan({n: "int8" for n in cost.searchable}, cost, "fp32", target)
    assert [m.layer for m in moves] == EXCLUDED_INT8_BY_FP32[key]
    assert all(after[m.layer] == "fp32" for m in moves)


def test_search_choices_drop_slow_precisions_keep_fp32_baseline(floor_cost):
    cost = floor_cost
    choices = {n: ["fp32", "int8", "int4"] for n in cost.searchable}
    out, moves = floor_choices(choices, cost, "int8", _target("znver4"))
    assert {n: c for n, c in out.items() if c != ["fp32", "int8", "int4"]} == {
        n: ["fp32", "int8"] for n in EXCLUDED_INT4["znver4"]}
    assert all(m.action == "excluded" for m in moves)


# 128-bit float vectors: SSE2 baseline (its own pmaddwd int8, which pays) and SSSE3 Atom.
WEIGHT_ONLY_UNPAID = {"x86-64": "x86-64-on-znver4-2t",
                      "goldmont": {"kind": "llvm", "mcpu": "goldmont", "num-cores": 2}}


@pytest.mark.parametrize("key", list(WEIGHT_ONLY_UNPAID))
@pytest.mark.parametrize("floor", ["fp32", "int8"])
@pytest.mark.parametrize("scheme", ["w8", "w4"])
def test_weight_only_layers_are_above_the_floor_where_they_do_not_pay(floor_cost, key, floor,
                                                                     scheme):
    """Measured slower than FP32 on 128-bit x86 while the cycle model rates their unpacking
    too cheap: every weight-only layer moves, with the reason, not a cycle comparison."""
    cost, (target, pre) = floor_cost, resolve_target(WEIGHT_ONLY_UNPAID[key])
    after, moves = floor_plan({n: scheme for n in cost.searchable}, cost, floor, target, pre)
    assert [m.layer for m in moves] == list(cost.searchable)
    assert set(after.values()) == {floor}
    assert all("128-bit float vectors" in m.reason for m in moves)
    assert "128-bit float vectors" in moves[0].describe()
    # Weight-only against a weight-only floor: the cycle model decides, no blanket rule.
    _, moves = floor_plan({n: "w4" for n in cost.searchable}, cost, "w8", target, pre)
    assert not any(m.reason for m in moves)


@pytest.mark.parametrize("key", ["znver4", "haswell"])
def test_weight_only_layers_are_compared_by_cycles_where_they_pay(floor_cost, key):
    cost, target = floor_cost, _target(key)
    after, moves = floor_plan({n: "w8" for n in cost.searchable}, cost, "fp32", target)
    assert not any(m.reason for m in moves)
    assert all(m.cycles > m.floor_cycles * (1 + FLOOR_TOLERANCE) for m in moves)
    assert "w8" in after.values()  # some layer's smaller weight read wins at batch 1


def test_given_plan_fp32_layers_stay(floor_cost):
    cost = floor_cost
    plan = {n: "int4" for n in cost.searchable} | {"a": "fp32"}
    after, moves = floor_plan(plan, cost, "int8", _target("znver4"))
    assert after["a"] == "fp32" and "a" not in [m.layer for m in moves]


# Kernel times (us) a measured floor compares, chosen against the model's verdicts: on
# haswell the model moves only the depthwise layer to FP32 (test_fp32_floor).
MEASURED = {
    "a": {"int8": 100.0, "fp32": 90.0},  # 11 % slower: moves, though the model keeps it
    "b": {"int8": 104.0, "fp32": 100.0},  # 4 %: within the timing noise, stays
    "dw": {"int8": 80.0, "fp32": 100.0},  # faster: stays, though the model moves it
    "c": {"int8": 50.0},  # no FP32 time: left as planned
}


def test_measured_times_decide_instead_of_the_model(floor_cost):
    cost, target = floor_cost, _target("haswell")
    plan = {n: "int8" for n in cost.searchable}
    after, moves = floor_plan(plan, cost, "fp32", target, times=MEASURED)
    assert [m.layer for m in moves] == ["a"]
    assert after == plan | {"a": "fp32"}
    (m,) = moves
    assert (m.measured, m.cycles, m.floor_cycles) == (True, 100.0, 90.0)
    assert m.describe() == (f"a: int8 100.00 us > fp32 90.00 us x "
                            f"{1 + MEASURED_FLOOR_TOLERANCE:g} (int8 moved to fp32)")
    choices, moves = floor_choices({n: ["fp32", "int8"] for n in cost.searchable}, cost,
                                   "fp32", target, times=MEASURED)
    assert [m.layer for m in moves] == ["a"] and choices["a"] == ["fp32"]
    assert all(choices[n] == ["fp32", "int8"] for n in cost.searchable if n != "a")


def test_measured_weight_only_layers_are_compared_by_their_times(floor_cost):
    """The weight-only rule stands in for times the model gets wrong; measured, the times
    decide (on the SSE2 baseline the rule alone would move every w8 layer)."""
    cost, (target, pre) = floor_cost, resolve_target(WEIGHT_ONLY_UNPAID["x86-64"])
    times = {"a": {"w8": 95.0, "fp32": 100.0}, "b": {"w8": 120.0, "fp32": 100.0}}
    after, moves = floor_plan({n: "w8" for n in cost.searchable}, cost, "fp32", target, pre,
                              times=times)
    assert [(m.layer, m.reason) for m in moves] == [("b", "")]
    assert after["a"] == "w8" and after["b"] == "fp32"


def test_unsupported_layers_are_not_modelled():
    from aiq_tvm.cost import LayerCost

    lc = LayerCost("g", "conv2d", 1, 1, 1, 1, 8, supported=False, reason="no kernel")
    assert layer_cycles(lc, "int4", _target("znver4")) is None


# ------------------------------------------------------------------ cycles == the builders'
CONVS = [
    ConvSpec(1, 16, 16, 64, 64, 3, 3, padding=1),  # Winograd: fp32, and int8 / int4 on AVX2
    ConvSpec(1, 7, 7, 256, 512, 3, 3, padding=1),  # decode-once int4
    ConvSpec(2, 9, 9, 32, 64, 3, 3, stride=2, padding=1),
    ConvSpec(1, 8, 8, 64, 256, 1, 1),
    ConvSpec(1, 8, 8, 64, 64, 3, 3, padding=1, groups=64),
    ConvSpec(1, 8, 8, 64, 64, 3, 3, padding=1, groups=8),
    ConvSpec(1, 16, 16, 3, 32, 7, 7, stride=2, padding=3),  # folded stem
]


@pytest.mark.parametrize("key", list(TARGETS))
@pytest.mark.parametrize("scheme", ["fp32", "int8", "int4", "w4"])
def test_conv2d_cycles_are_the_built_kernels(key, scheme):
    """conv2d_cycles and conv2d_kernel share the planning: the same number, every format."""
    target = _target(key)
    rng = np.random.default_rng(0)
    qp = ActQParams.from_range(-1.0, 1.0)
    algos = set()
    for spec in CONVS:
        w = rng.standard_normal(spec.weight_shape).astype(np.float32) * 0.1
        k = conv2d_kernel(spec, scheme, w, None, act_qparams=qp, target=target)
        assert k.info["modelled_cycles"] == conv2d_cycles(spec, scheme, target), spec
        algos.add(k.info.get("algorithm", "direct"))
    winograd = scheme == "fp32" or (scheme in ("int8", "int4") and key == "haswell")
    assert (algos > {"direct"}) == winograd  # the Winograd choice is modelled too


@pytest.mark.parametrize("key", list(TARGETS))
def test_dense_cycles_are_the_built_kernels(key):
    target = _target(key)
    rng = np.random.default_rng(0)
    qp = ActQParams.from_range(-1.0, 1.0)
    for spec in (DenseSpec(1, 512, 1000), DenseSpec(8, 256, 64)):
        w = rng.standard_normal((spec.O, spec.K)).astype(np.float32)
        for scheme in ("fp32", "int8", "int4"):
            k = dense_kernel(spec, scheme, w, None, act_qparams=qp, target=target)
            assert k.info["modelled_cycles"] == dense_cycles(spec, scheme, target)


# ------------------------------------------------------------------ config, build, report
def test_config_validation_names_the_choices():
    assert BuildConfig(plan="int4", speed_floor="int8").speed_floor == "int8"
    with pytest.raises(ValueError, match=r"unknown speed_floor 'int3'; valid: fp32, int8"):
        BuildConfig(plan="int4", speed_floor="int3")
    with pytest.raises(ValueError, match=r"speed_floor_timing 'timed'; valid: model, measured"):
        BuildConfig(plan="int4", speed_floor="int8", speed_floor_timing="timed")
    with pytest.raises(ValueError, match=r"give speed_floor=<precision> too"):
        BuildConfig(plan="int4", speed_floor_timing="measured")
    # remote= times layer kernels: a measured floor's too, not a plain build's
    assert BuildConfig(plan="int8", speed_floor="fp32", speed_floor_timing="measured",
                       remote="127.0.0.1:9090").remote == "127.0.0.1:9090"
    with pytest.raises(ValueError, match=r"speed_floor_timing='measured'"):
        BuildConfig(plan="int8", speed_floor="fp32", remote="127.0.0.1:9090")


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(16, 64, 3, padding=1)
        self.dw = nn.Conv2d(64, 64, 3, padding=1, groups=64)
        self.b = nn.Conv2d(64, 64, 1)

    def forward(self, x):
        return self.b(torch.relu(self.dw(torch.relu(self.a(x))))).mean((2, 3))


def test_build_moves_given_plan_and_reports_it():
    """Before: the int4 plan as given; after the build with speed_floor: the moved layers run
    int8, the plan records the floor, and the report lists each layer with both times."""
    torch.manual_seed(0)
    model = randomize_bn(SmallNet())
    x = torch.randn(8, 16, 8, 8)
    mod, params = aiq_tvm.from_torch(model, x[:2])
    target = "llvm"  # this machine (the result runs); the layers moved follow its model
    plain = aiq_tvm.build(mod, target, params=params, plan="int4", calib_data=x.numpy())
    assert plain.report.speed_floor is None and set(plain.plan.resolve(["a", "dw", "b"])
                                                    .values()) == {"int4"}
    res = aiq_tvm.build(mod, target, params=params, plan="int4", calib_data=x.numpy(),
                        speed_floor="int8")
    moved = [m["layer"] for m in res.report.floor]
    _, expect = floor_plan({n: "int4" for n in ("a", "dw", "b")}, res.cost, "int8",
                           res.target)
    # the depthwise layer runs int8's kernel in int4 too: never moved
    assert moved == [m.layer for m in expect] and moved and "dw" not in moved
    assert all(res.plan.precision_for(n) == ("int8" if n in moved else "int4")
               for n in ("a", "dw", "b"))
    assert res.plan.metadata["speed_floor"] == "int8"
    assert res.plan.metadata["speed_floor_moved"] == {n: "int4" for n in moved}
    text = str(res.report)
    assert "speed floor int8" in text
    for m in res.report.floor:
        assert f"{m['layer']}: int4 {m['cycles'] / 1e3:.1f} kcycles > int8" in text
    assert "speed floor weight reads: " in text and f"({res.preset.name}" in text
    d = res.report.to_dict()
    assert d["speed_floor"] == "int8" and d["floor"][0]["floor_cycles"] > 0
    assert res.run(x.numpy()[:1]).shape == (1, 64)


def test_measured_floor_times_the_plan_against_the_floor_build(monkeypatch):
    """A given int8 plan with a measured FP32 floor: each int8 layer's kernel timed in the
    plan's build and in the all-FP32 build, the slower ones moved, the report and the plan
    saying it was measured."""
    torch.manual_seed(0)
    model = randomize_bn(SmallNet())
    x = torch.randn(8, 16, 8, 8)
    mod, params = aiq_tvm.from_torch(model, x[:2])
    from aiq_tvm import phases

    timed, real = [], phases._measured_floor_times
    monkeypatch.setattr(phases, "_measured_floor_times",
                        lambda *a: timed.append(real(*a)) or timed[-1])
    res = aiq_tvm.build(mod, "llvm", params=params, plan="int8", calib_data=x.numpy(),
                        speed_floor="fp32", speed_floor_timing="measured", batch_size=8)
    (times,) = timed
    assert set(times) == {"a", "dw", "b"}
    assert all(set(t) == {"int8", "fp32"} and min(t.values()) > 0 for t in times.values())
    slower = [n for n, t in times.items() if t["int8"] > t["fp32"] * (1 + MEASURED_FLOOR_TOLERANCE)]
    assert [m["layer"] for m in res.report.floor] == slower
    # moved, or all kept where the floored plan ran slower as a whole
    (action,) = {m["action"] for m in res.report.floor} or {"moved"}
    assert action in ("moved", "kept") and all(m["measured"] for m in res.report.floor)
    assert all(res.plan.precision_for(n) == ("fp32" if n in slower and action == "moved"
                                             else "int8") for n in ("a", "dw", "b"))
    assert res.plan.metadata["speed_floor_timing"] == "measured"
    text = str(res.report)
    assert f"speed floor fp32 (measured kernel time at most fp32's x " \
           f"{1 + MEASURED_FLOOR_TOLERANCE:g})" in text
    assert "layer kernels timed on this machine at batch 8 (the plan's build against the " \
           "build with its 3 layer(s) at fp32" in text
    assert "speed floor weight reads" not in text  # the model's assumption is not used
    # where layers moved, the whole inference is timed against the plan as given
    assert ("whole inference at batch 8" in text) == bool(slower)
    assert res.run(x.numpy()[:1]).shape == (1, 64)


@pytest.mark.parametrize("floored_ms,kept", [(1.6, False), (2.2, True)])
def test_measured_floor_keeps_the_given_plan_where_the_floored_one_runs_slower(
        monkeypatch, floored_ms, kept):
    """The layer kernels say dw is 3x slower in int8; the whole floored plan then runs faster
    (moved) or slower (the plan as given kept) than the plan as given, and the report says
    which."""
    from aiq_tvm import phases

    torch.manual_seed(0)
    model = randomize_bn(SmallNet())
    x = torch.randn(4, 16, 8, 8)
    mod, params = aiq_tvm.from_torch(model, x[:2])

    def layer_times(ctx, plan, calibration):
        ctx.floor_given = ("the given plan's build", None)
        return {"dw": {"int8": 30.0, "fp32": 10.0}, "a": {"int8": 10.0, "fp32": 10.0}}

    monkeypatch.setattr(phases, "_measured_floor_times", layer_times)
    monkeypatch.setattr(phases, "_whole_inference_ms", lambda *a: (2.0, floored_ms))
    res = aiq_tvm.build(mod, "llvm", params=params, plan="int8", calib_data=x.numpy(),
                        speed_floor="fp32", speed_floor_timing="measured")
    assert res.plan.precision_for("dw") == ("int8" if kept else "fp32")
    assert res.plan.precision_for("a") == res.plan.precision_for("b") == "int8"
    (move,) = res.report.floor
    assert (move["layer"], move["action"]) == ("dw", "kept" if kept else "moved")
    assert res.plan.metadata["speed_floor_moved"] == ({} if kept else {"dw": "int8"})
    text = str(res.report)
    assert (f"speed floor fp32: whole inference at batch 1 {floored_ms:.3f} ms floored against "
            f"2.000 ms as given ({2.0 / floored_ms:.2f}x)") in text
    assert ("the plan as given is kept" in text) == kept
    assert ("dw: int8 30.00 us > fp32 10.00 us x 1.05 (int8 kept: the plan moved to fp32 ran "
            "slower as a whole)" in text) == kept


def test_measured_floor_needs_a_machine_that_runs_the_target():
    torch.manual_seed(0)
    model = randomize_bn(SmallNet())
    x = torch.randn(4, 16, 8, 8)
    mod, params = aiq_tvm.from_torch(model, x[:2])
    with pytest.raises(Exception, match=r"measured speed floor.*remote='host:port'"):
        aiq_tvm.build(mod, TARGETS["aarch64"], params=params, plan="int8",
                      calib_data=x.numpy(), speed_floor="fp32", speed_floor_timing="measured")


def test_report_gives_a_rules_reason_once_for_all_its_layers():
    """A given w8 plan on the SSE2 baseline: every layer moves to FP32 by the weight-only rule,
    and the report says so in one line, not one per layer."""
    torch.manual_seed(0)
    model = randomize_bn(SmallNet())
    x = torch.randn(4, 16, 8, 8)
    mod, params = aiq_tvm.from_torch(model, x[:2])
    res = aiq_tvm.build(mod, {"kind": "llvm", "mcpu": "x86-64"}, params=params, plan="w8",
                        speed_floor="fp32")
    assert [m["layer"] for m in res.report.floor] == ["a", "dw", "b"]
    assert all(res.plan.precision_for(n) == "fp32" for n in ("a", "dw", "b"))
    text = str(res.report)
    assert "w8 on 3 layer(s) moved to fp32: weight-only kernels unpack weights into 128-bit" \
        in text
    assert not any(f"\n  {n}: w8" in text for n in ("a", "dw", "b"))  # no per-layer lines
    assert res.run(x.numpy()[:1]).shape == (1, 64)


BUILDING_COMMANDS = {
    "build": ["build", "resnet20", "--plan", "p.json", "-o", "m.so"],
    "run": ["run", "--model", "resnet20"],
    "search": ["search", "resnet20", "--data", "d", "--out", "o"],
    "sweep": ["sweep", "resnet20", "--data", "d", "--out", "o"],
    "bench": ["bench", "resnet20", "--plan", "p.json"],
}


@pytest.mark.parametrize("cmd", list(BUILDING_COMMANDS))
def test_cli_flag(cmd, capsys):
    from aiq_tvm.cli import _parser

    args = _parser().parse_args([*BUILDING_COMMANDS[cmd], "--speed-floor", "int8",
                                 "--speed-floor-timing", "measured"])
    assert (args.speed_floor, args.speed_floor_timing) == ("int8", "measured")
    plain = _parser().parse_args(BUILDING_COMMANDS[cmd])
    assert (plain.speed_floor, plain.speed_floor_timing) == (None, "model")
    with pytest.raises(SystemExit):
        _parser().parse_args([*BUILDING_COMMANDS[cmd], "--speed-floor", "int3"])
    err = capsys.readouterr().err
    assert "'int3'" in err and "int8" in err  # argparse names the valid choices


def test_search_does_not_offer_the_excluded_precisions():
    """An int8/int4 search with the floor: the excluded layers can only be int8, the report
    lists them as excluded and the plan records the floor."""
    torch.manual_seed(1)
    model = randomize_bn(SmallNet())
    x = torch.randn(16, 16, 8, 8)
    mod, params = aiq_tvm.from_torch(model, x[:2])
    y = model(x).argmax(1).numpy()
    res = aiq_tvm.build(mod, "llvm", params=params, calib_data=x.numpy(),
                        val_data=(x.numpy(), y), precisions=["int8", "int4"], lam=1.0,
                        speed_floor="int8")
    excluded = [m["layer"] for m in res.report.floor]
    assert excluded and all(m["action"] == "excluded" for m in res.report.floor)
    assert all(res.plan.precision_for(n) == "int8" for n in excluded)
    assert all(res.plan.precision_for(n) == "int4" for n in ("a", "dw", "b")
               if n not in excluded)  # lam=1: AI alone, int4 wherever offered
    assert res.plan.metadata["speed_floor"] == "int8"
    assert "not offered; floor int8" in str(res.report)


def test_measured_floor_in_a_search_times_uniform_builds(monkeypatch):
    """A search with a measured floor: the candidates' uniform builds are timed once, the
    layers whose int4 kernel ran slower than int8's beyond the tolerance are not offered
    int4, and the measured objective reuses the same times."""
    from aiq_tvm import phases

    torch.manual_seed(1)
    model = randomize_bn(SmallNet())
    x = torch.randn(16, 16, 8, 8)
    mod, params = aiq_tvm.from_torch(model, x[:2])
    y = model(x).argmax(1).numpy()
    calls, real = [], phases.uniform_layer_times
    monkeypatch.setattr(phases, "uniform_layer_times",
                        lambda *a, **k: calls.append(real(*a, **k)) or calls[-1])
    res = aiq_tvm.build(mod, "llvm", params=params, calib_data=x.numpy(),
                        val_data=(x.numpy(), y), precisions=["int8", "int4"], lam=1.0,
                        objective="measured", speed_floor="int8",
                        speed_floor_timing="measured", batch_size=4)
    assert len(calls) == 1  # one timing for the floor and the objective
    table = calls[0][0]
    slower = [n for n in ("a", "dw", "b")
              if table[n]["int4"] > table[n]["int8"] * (1 + MEASURED_FLOOR_TOLERANCE)]
    assert [m["layer"] for m in res.report.floor] == slower
    assert all(m["measured"] and m["action"] == "excluded" for m in res.report.floor)
    assert all(res.plan.precision_for(n) == "int8" for n in slower)
    assert "(uniform builds of fp32, int8, int4)" in str(res.report)


PLAIN_NEON = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"], "num-cores": 2}


@pytest.mark.parametrize("config,precisions", [
    (dict(), ["fp32"]),  # the target's default: int8 multiplies no faster than fmla there
    (dict(precisions=["fp32", "int8", "int4"]), ["fp32", "int8", "int4"]),  # the user's
])
def test_plain_neon_searches_fp32_unless_asked(floor_net, config, precisions):
    from aiq_tvm import phases

    mod, params = floor_net
    x = np.random.default_rng(0).standard_normal((4, 64, 16, 16)).astype("float32")
    val = (x, np.zeros(4, dtype="int64"))
    ctx = phases.resolve(mod, params, x, val, BuildConfig(target=PLAIN_NEON, **config))
    assert list(ctx.config.precisions) == precisions
    notes = " ".join(ctx.notes)
    assert ("left out int8 (neon: int8 via smull retires 4 products" in notes) == \
        (precisions == ["fp32"])
