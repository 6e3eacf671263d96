"""PrefixEvaluator: every group plan through the switchable module cut into segments, with
shared prefixes, gives the search oracle's logits and accuracies bit for bit."""

import numpy as np
import pytest
import torch
import tvm
from tvm import relax

import aiq_tvm
from aiq_tvm import phases
from aiq_tvm.config import BuildConfig
from aiq_tvm.exhaustive import PrefixEvaluator
from aiq_tvm.passes import SplitAtLayers, select_vector
from aiq_tvm.runtime import run_batches

PRECISIONS = ("fp32", "int8", "int4")


@pytest.fixture(scope="module")
def setup(tiny):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((28, 3, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 28)
    mod, params = aiq_tvm.from_torch(tiny, torch.from_numpy(x[:2]))
    # val 20 at eval batch 8: the last batch is padded, as in the oracle
    cfg = BuildConfig(precisions=PRECISIONS, eval_batch_size=8)
    ctx = phases.resolve(mod, params, x[:8], (x[8:], y[8:]), cfg)
    return ctx, phases.calibrate(ctx)


def _oracle_logits(ctx, cal, assignment):
    """The search oracle's way: the whole switchable main, batch by batch."""
    choices = ctx.config.choices(ctx.cost.searchable)
    main = phases._switchable_main(ctx, cal, choices)
    sel = tvm.runtime.tensor(select_vector(list(choices), choices, assignment))
    return run_batches(lambda a: main(a, sel), ctx.val[0], ctx.eval_batch_size, tvm.cpu())


def test_every_plan_matches_the_oracle_bit_for_bit(setup):
    ctx, cal = setup
    layers = ctx.cost.searchable
    assert layers == ["stem", "dw", "head"]
    ev = PrefixEvaluator(ctx, cal, [[n] for n in layers], PRECISIONS)
    logits = ev.logits()
    assert len(logits) == 27 and ev.segment_runs == 3 * (3 + 9 + 27)  # 3 batches
    oracle = phases._accuracy_oracle(ctx, cal, ctx.config.choices(layers))
    accs = ev.subtree()
    for plan, out in logits.items():
        a = ev.assignment(plan)
        np.testing.assert_array_equal(out, _oracle_logits(ctx, cal, a))
        assert accs[plan] == oracle(a)
    assert not np.array_equal(logits[("fp32",) * 3], logits[("int4",) * 3])  # plans differ


def test_subtree_of_a_prefix_and_groups_of_several_layers(setup):
    ctx, cal = setup
    ev = PrefixEvaluator(ctx, cal, [["stem", "dw"], ["head"]], PRECISIONS)
    sub = ev.subtree(("int4",))
    assert sorted(sub) == [("int4", p) for p in sorted(PRECISIONS)]
    oracle = phases._accuracy_oracle(ctx, cal, ctx.config.choices(ctx.cost.searchable))
    for plan, acc in sub.items():
        assert ev.assignment(plan) == {"stem": "int4", "dw": "int4", "head": plan[1]}
        assert acc == oracle(ev.assignment(plan))


def test_groups_must_cover_the_layers_in_order(setup):
    ctx, cal = setup
    with pytest.raises(ValueError, match="cover the searchable layers in order"):
        PrefixEvaluator(ctx, cal, [["dw"], ["stem", "head"]], PRECISIONS)


def test_split_needs_the_switch_and_non_dataflow_main():
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((2,), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit_output(relax.op.add(x, x))
        bb.emit_func_output(y)
    mod = bb.get()
    with pytest.raises(ValueError, match="non-dataflow"):
        SplitAtLayers(["a"])(mod)
    with pytest.raises(ValueError, match="no aiq_select switch"):
        SplitAtLayers(["a"])(relax.transform.ToNonDataflow()(mod))
