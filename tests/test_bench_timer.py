"""aiq_tvm.bench.Timer on its two clocks."""

import time

import pytest

from aiq_tvm.bench import Timer


def test_cpu_clock_does_not_count_time_off_the_core():
    # A call that sleeps 2 ms: the wall clock sees it, the process's CPU time barely does.
    wall, cpu = Timer(lambda: time.sleep(2e-3)), Timer(lambda: time.sleep(2e-3), "cpu")
    assert wall(20) >= 1.5e-3 and cpu(20) < 0.5e-3


def test_unknown_clock_is_an_error():
    with pytest.raises(ValueError, match="unknown clock 'gpu'; valid: wall, cpu"):
        Timer(lambda: None, "gpu")
