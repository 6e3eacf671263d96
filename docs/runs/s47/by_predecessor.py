"""Median time of each variant by the variant timed right before it in the same round
(bench_models.py --json runs that record round_orders). Usage: by_predecessor.py RUN.json"""
import json
import sys
from collections import defaultdict

import numpy as np

run = json.load(open(sys.argv[1]))
for row in run["rows"]:
    times, orders = row["rounds_ms"], row["round_orders"]
    seen = defaultdict(int)
    by = defaultdict(lambda: defaultdict(list))
    for order in orders:
        for i, k in enumerate(order):
            t = times[k][seen[k]]
            seen[k] += 1
            by[k]["(first)" if i == 0 else order[i - 1]].append(t)
    print(f"{row['model']} batch {row['batch']}: median ms by predecessor (n rounds)")
    keys = list(times)
    print(f"{'variant':18}" + "".join(f"{p:>20}" for p in ["(first)", *keys]))
    for k in keys:
        cells = [by[k].get(p) for p in ["(first)", *keys]]
        print(f"{k:18}" + "".join(
            f"{np.median(c):>15.3f} ({len(c):>2})" if c else f"{'':>20}" for c in cells))
