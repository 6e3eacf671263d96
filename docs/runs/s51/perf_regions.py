"""Share of ``perf record`` samples in each loop of an exported kernel library: the code
between two backward branches is one region; prints each region's address range, share of
the library's samples and its instruction mix (mnemonic counts).

    python docs/runs/s51/perf_regions.py PERF.data LIB.so
"""

import re
import subprocess
import sys
from collections import Counter


def main() -> None:
    data, lib = sys.argv[1], sys.argv[2]
    mmaps = subprocess.run(["perf", "script", "-i", data, "--show-mmap-events"],
                           capture_output=True, text=True).stdout
    m = re.search(r"\[(0x[0-9a-f]+)\(0x[0-9a-f]+\) @ (0x[0-9a-f]+) [^\]]*\]: r-xp " +
                  re.escape(lib), mmaps)
    base = int(m.group(1), 16) - int(m.group(2), 16)
    ips = subprocess.run(["perf", "script", "-i", data, "-F", "ip,dso"], capture_output=True,
                         text=True).stdout
    hist = Counter(int(line.split()[0], 16) - base for line in ips.splitlines()
                   if lib in line)
    total = sum(hist.values())
    dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", lib], capture_output=True,
                         text=True).stdout
    insns = []
    for line in dis.splitlines():
        mm = re.match(r"\s+([0-9a-f]+):\s+(\S+)\s*(.*)", line)
        if mm:
            insns.append((int(mm.group(1), 16), mm.group(2), mm.group(3)))
    start, count, mix = insns[0][0], 0, Counter()
    print(f"{total} samples in {lib}")
    for addr, op, rest in insns:
        count += hist.get(addr, 0)
        mix[op] += 1
        target = re.match(r"([0-9a-f]+) <", rest)
        if op.startswith("j") and target and int(target.group(1), 16) < addr:
            if count / total > 0.01:
                top = ", ".join(f"{k} {v}" for k, v in mix.most_common(8))
                print(f"{start:6x}-{addr:6x} {100 * count / total:5.1f} %  {top}")
            start, count, mix = addr, 0, Counter()


if __name__ == "__main__":
    main()
