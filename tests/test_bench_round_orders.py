"""aiq_tvm.bench.round_orders: the order each timing round runs its variants in.

A variant's time depends on the one timed right before it, so over whole designs every variant
must follow every other one equally often (a rotated fixed order does not: B always follows A).
"""

from collections import Counter

import pytest

from aiq_tvm.bench import balanced_rounds, round_orders


def _adjacent_pairs(orders):
    return Counter((o[i], o[i + 1]) for o in orders for i in range(len(o) - 1))


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7])
def test_whole_designs_balance_predecessors_and_positions(n):
    keys = [f"v{i}" for i in range(n)]
    orders = round_orders(keys, balanced_rounds(n, 1))
    assert all(sorted(o) == keys for o in orders)
    pairs = _adjacent_pairs(orders)
    assert len(pairs) == n * (n - 1)  # every ordered pair occurs ...
    assert len(set(pairs.values())) == 1  # ... equally often
    positions = Counter((k, i) for o in orders for i, k in enumerate(o))
    assert len(positions) == n * n and len(set(positions.values())) == 1


def test_a_rotation_would_not_balance_them():
    # What the benchmarks did before: round r starts r variants later.
    keys = ["pytorch", "ort", "ort-int8", "tvm-fp32", "tvm-int8"]
    rotated = [keys[r % 5:] + keys[:r % 5] for r in range(20)]
    assert _adjacent_pairs(rotated)[("ort-int8", "tvm-fp32")] == 16
    assert _adjacent_pairs(rotated)[("tvm-int8", "tvm-fp32")] == 0
    balanced = _adjacent_pairs(round_orders(keys, 20))
    # 20 rounds: two designs of 10 rows, each ordered pair twice in each
    assert balanced[("ort-int8", "tvm-fp32")] == balanced[("tvm-int8", "tvm-fp32")] == 4


@pytest.mark.parametrize("n,at_least,expected", [(5, 15, 20), (4, 15, 16), (3, 15, 18),
                                                  (2, 15, 16), (1, 15, 15), (6, 6, 6)])
def test_balanced_rounds_are_whole_designs(n, at_least, expected):
    assert balanced_rounds(n, at_least) == expected


def test_rounds_cycle_the_design_and_one_variant_repeats():
    orders = round_orders("abcd", 6)
    assert orders[4] == orders[0] and orders[5] == orders[1]
    assert round_orders(["only"], 3) == [["only"]] * 3
