"""Pair our in-situ conv kernel times with ORT's conv nodes by order (ResNet-like nets)."""
import re, sys, collections
ours = [(m.group(1), float(m.group(2))) for m in (re.match(r"\| \d+ \| (\S+_fp32|\S+_int8) \| ([\d.]+) \|", l) for l in open(sys.argv[1])) if m and not m.group(1).startswith("fc")]
ort = [(m.group(2), float(m.group(1)) * 1e3) for m in (re.match(r"\| \S+ \| Conv \| ([\d.]+) \| (.*) \|", l) for l in open(sys.argv[2])) if m]
assert len(ours) == len(ort), (len(ours), len(ort))
groups = collections.defaultdict(lambda: [0.0, 0.0, 0])
for (n, a), (s, b) in zip(ours, ort):
    g = groups[s]; g[0] += a; g[1] += b; g[2] += 1
print(f"{'shape':45s} n  ours_us  ort_us  ours/ort")
for s, (a, b, k) in groups.items():
    print(f"{s:45s} {k:2d} {a:8.1f} {b:8.1f} {a/b:6.2f}")
print("total", sum(g[0] for g in groups.values()), sum(g[1] for g in groups.values()))
