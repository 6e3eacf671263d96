"""Session 32: two scripts/profile_insitu.py outputs of one model side by side (first: flat plans on, second: off), layers whose in-situ or isolated time differs by more than THRESHOLD us::

    python docs/runs/s32/compare_insitu.py flat.txt rows.txt 150
"""
import re, sys
def load(p):
    rows=[]
    for l in open(p):
        m=re.match(r"\| (\d+) \| (\S+) \| ([\d.]+) \| ([\d.]+) \|", l)
        if m: rows.append((m.group(2), float(m.group(3)), float(m.group(4))))
    return rows
a=load(sys.argv[1]); b=load(sys.argv[2])
for (n,i1,s1),(n0,i0,s0) in zip(a,b):
    if abs(i1-i0) > float(sys.argv[3]) or abs(s1-s0)>float(sys.argv[3]):
        print(f"{n:32s} insitu flat {i1:8.1f} rows {i0:8.1f} ({i0/i1:.2f}x)   isolated flat {s1:8.1f} rows {s0:8.1f} ({s0/s1:.2f}x)")
print("sum insitu", sum(x[1] for x in a), sum(x[1] for x in b), "isolated", sum(x[2] for x in a), sum(x[2] for x in b))
