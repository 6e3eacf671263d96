"""The usable-LLC probe (targets/llc.py): sizes, reading the latency curve, a real run, and
its use by the weight-memory model (and so by ``micro_batch="auto"``)."""

import dataclasses
import math

import pytest

from aiq_tvm.microbatch import Traffic, choose_micro_batch
from aiq_tvm.targets import host_target, resolve_target
from aiq_tvm.targets.llc import latency_curve, probe_sizes, usable_llc
from aiq_tvm.targets.memory import weight_memory

MiB = 2**20

# A curve shaped like this project's Xeon guest (docs/performance_224.md, "Session 29"): L2
# up to 2 MiB, an LLC plateau near 38 ns, memory near 200 ns.
STEP = {1 * MiB: 5.0, 2 * MiB: 18.0, 4 * MiB: 38.0, 8 * MiB: 40.0, 16 * MiB: 50.0,
        24 * MiB: 110.0, 32 * MiB: 150.0, 64 * MiB: 200.0}


def test_probe_sizes_step_by_half_octaves_to_eight_times_the_llc():
    assert probe_sizes(4 * MiB) == [int(m * MiB) for m in (1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24,
                                                           32)]
    assert probe_sizes(480 * MiB)[-1] == 512 * MiB  # at most MAX_PROBE_BYTES
    with pytest.raises(ValueError, match="llc_bytes must be positive"):
        probe_sizes(0)


def test_usable_llc_is_a_quarter_up_the_step_on_a_log_scale():
    size, how = usable_llc(STEP, l2_bytes=2 * MiB)
    # plateau 38 ns (the lowest from 4 MiB on), memory 200 ns: level 38 + 0.25 * 162 = 78.5 ns,
    # crossed between 16 MiB (50 ns) and 24 MiB (110 ns), 28.5 / 60 of the way in log size
    assert size == round(16 * MiB * math.exp(28.5 / 60 * math.log(1.5)))
    assert 19 * MiB < size < 20 * MiB
    assert "38 ns per load to memory's 200 ns (64 MiB)" in how


def test_the_plateau_starts_above_twice_the_l2():
    # Without the L2 size the 1 MiB point (an L2 hit) counts as the plateau, and on a curve
    # whose LLC is slow the step from the L2 to the LLC is read as the LLC's end.
    slow_llc = {**STEP, 4 * MiB: 70.0, 8 * MiB: 72.0, 16 * MiB: 75.0}
    with_l2, _ = usable_llc(slow_llc, l2_bytes=2 * MiB)
    without, _ = usable_llc(slow_llc)
    assert 16 * MiB < with_l2 < 24 * MiB and without < 4 * MiB


def test_a_flat_curve_gives_no_usable_size():
    size, how = usable_llc({s: 40.0 + s / 2**30 for s in STEP}, l2_bytes=2 * MiB)
    assert size == 0 and how.startswith("no step")


def test_usable_llc_is_capped_at_the_listed_size():
    size, how = usable_llc(STEP, l2_bytes=2 * MiB, llc_bytes=8 * MiB)
    assert size == 8 * MiB and "capped at the listed 8 MiB" in how
    # A noisy curve already past the level at the plateau's first size (4 MiB, twice the L2)
    # is capped too: a probe sized for a 2 MiB LLC once read 4 MiB there.
    noisy = {**STEP, 4 * MiB: 150.0}
    size, how = usable_llc(noisy, l2_bytes=2 * MiB, llc_bytes=2 * MiB)
    assert size == 2 * MiB and "already past" in how and "capped at the listed 2 MiB" in how


def test_a_curve_needs_two_sizes():
    with pytest.raises(ValueError, match="at least two sizes"):
        usable_llc({MiB: 5.0})


def test_latency_curve_runs_here():
    curve = latency_curve(host_target(), [MiB, 2 * MiB])
    assert list(curve) == [MiB, 2 * MiB] and all(0 < ns < 1000 for ns in curve.values())


def _with_cache(preset, **extra):
    return dataclasses.replace(preset, extra={**preset.extra, "llc_bytes": 480 * MiB,
                                              "llc_copy_gbs_per_core": 25.0,
                                              "llc_source": "test", **extra})


def test_weight_memory_takes_the_usable_llc_and_says_where_from():
    tgt, preset = resolve_target("znver4-2t")
    mem = weight_memory(tgt, _with_cache(preset, llc_usable_bytes=20 * MiB,
                                         llc_usable_source="probe"))
    assert mem.llc_bytes == 20 * MiB and mem.llc_usable
    assert any("20.0 MiB usable by this process: probe" in n for n in mem.notes)
    assert not mem.resident(40 * MiB)  # weights between the usable and listed sizes: memory
    listed = weight_memory(tgt, _with_cache(preset))
    assert listed.llc_bytes == 480 * MiB and listed.resident(40 * MiB)
    assert not listed.llc_usable


def test_auto_splits_on_the_usable_llc_where_the_listed_one_would_not():
    # MobileNetV2 FP32 at 224 (6.02 MB per sample at its widest memory-bound layer, 13.9 MB of
    # weights): whole on the listed 480 MiB, calls of 2 on the guest's usable ~20 MiB (2 x
    # 6.02 = 12.0 MB fit 3/4 of it, 4 x 6.02 do not) -- the split that ran fastest there.
    traffic = Traffic((("features.2.conv.1.0", 6.02e6, True), ("other", 3.6e6, True)), 13.9e6)
    tgt, preset = resolve_target("znver4-2t")
    usable = weight_memory(tgt, _with_cache(preset, llc_usable_bytes=20 * MiB)).llc_bytes
    assert choose_micro_batch("auto", 8, traffic, 480 * MiB).micro == 8
    choice = choose_micro_batch("auto", 8, traffic, usable, llc_name="usable LLC")
    assert choice.micro == 2 and "vs 0.75 x usable LLC 20 MiB" in choice.reason
