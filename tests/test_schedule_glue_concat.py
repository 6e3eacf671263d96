"""ScheduleGlue on concatenations: the concat axis partitioned per input (the if_then_else
chain TOPI's concatenate selects inputs with is gone from each part; channels-last inside one
parallel pixel loop), numerically equal to numpy, for channels-last and channels-first
concats with the elementwise ops fused after them."""

import warnings

import numpy as np
import pytest
import tvm
from tvm import relax

from aiq_tvm import pipeline

TARGET = tvm.target.Target({"kind": "llvm", "mcpu": "haswell"})  # runs on any x86-64 CI


def _concat_bn_relu(chans: list[int], axis: int, batch: int = 2, hw: int = 5):
    """``relu(concat(xs, axis) * scale + shift)``, DenseNet's concat + batch norm + ReLU."""
    rng = np.random.default_rng(0)
    shape = (lambda c: (batch, hw, hw, c)) if axis == 3 else (lambda c: (batch, c, hw, hw))
    xs = [relax.Var(f"x{i}", relax.TensorType(shape(c), "float32")) for i, c in enumerate(chans)]
    bshape = (1, 1, 1, sum(chans)) if axis == 3 else (1, sum(chans), 1, 1)
    scale, shift = (rng.standard_normal(bshape).astype("float32") for _ in range(2))
    bb = relax.BlockBuilder()
    with bb.function("main", xs):
        with bb.dataflow():
            y = bb.emit(relax.op.concat(xs, axis=axis))
            y = bb.emit(relax.op.add(relax.op.multiply(y, relax.const(scale)),
                                     relax.const(shift)))
            y = bb.emit_output(relax.op.nn.relu(y))
        bb.emit_func_output(y)
    inputs = [rng.standard_normal(shape(c)).astype("float32") for c in chans]
    ref = np.maximum(np.concatenate(inputs, axis) * scale + shift, 0)
    return bb.get(), inputs, ref


def _scheduled(mod):
    with TARGET:
        return tvm.transform.Sequential(pipeline.legalize_passes(TARGET)
                                        + pipeline.schedule_passes(TARGET))(mod)


CASES = [([64, 32, 32, 32], 3), ([16, 3, 8], 3), ([24, 32, 40], 1), ([8, 8], 1)]


def _scheduled_script(chans: list[int], axis: int, hw: int) -> str:
    mod, _, _ = _concat_bn_relu(chans, axis, hw=hw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither pass may give up on the function
        scheduled = _scheduled(mod)
    (func,) = [f for f in scheduled.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    return func.script()


@pytest.mark.parametrize("chans, axis", CASES)
def test_one_loop_nest_per_input(chans, axis):
    assert _scheduled_script(chans, axis, hw=5).count('_partition")') == len(chans)


def test_every_part_of_a_large_channels_first_concat_runs_in_parallel():
    chans = [64, 32, 32, 32]  # a DenseNet block's input: 2 x 160 x 16 x 16
    assert _scheduled_script(chans, 1, hw=16).count("T.parallel(") == len(chans)


def test_a_channels_last_concat_partitions_channels_inside_one_parallel_pixel_loop():
    """Each pixel copies its inputs' channels in turn, so the output is written as one stream
    (one nest per input over all pixels ran 4x slower at DenseNet's 8 x 56 x 56 x 224)."""
    chans = [64, 32, 32, 32]  # a DenseNet block's input: 2 x 16 x 16 x 160
    script = _scheduled_script(chans, 3, hw=16)
    assert script.count("T.parallel(") == 1
    parallel_at = script.index("T.parallel(")
    assert all(m > parallel_at for m in _find_all(script, '_partition")'))


def _find_all(text: str, sub: str) -> list[int]:
    out, at = [], text.find(sub)
    while at >= 0:
        out.append(at)
        at = text.find(sub, at + 1)
    return out


@pytest.mark.parametrize("chans, axis", CASES)
def test_matches_numpy(chans, axis):
    mod, inputs, ref = _concat_bn_relu(chans, axis)
    with TARGET:
        lowered = tvm.transform.Sequential(pipeline.lower_passes(TARGET))(_scheduled(mod))
    vm = relax.VirtualMachine(relax.build(lowered, target=TARGET), tvm.cpu())
    out = vm["main"](*[tvm.runtime.tensor(x) for x in inputs]).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
