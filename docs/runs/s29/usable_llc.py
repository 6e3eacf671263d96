"""Ad-hoc (session 29): this machine's load-latency curve and usable LLC
(``aiq_tvm.targets.llc``) for the host target, without writing a preset; each run prints the
time it started, the curve and the reading. Output: usable_llc.txt::

    flock /work/bench.lock python docs/runs/s29/usable_llc.py [RUNS]
"""
import datetime
import sys

from aiq_tvm.targets import host_target
from aiq_tvm.targets.capabilities import capabilities
from aiq_tvm.targets.llc import latency_curve, probe_sizes, usable_llc
from aiq_tvm.targets.roofline import host_llc_bytes


def main():
    llc, l2 = host_llc_bytes(), capabilities(host_target()).l2_bytes
    for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 1):
        start = datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S UTC")
        curve = latency_curve(host_target(), probe_sizes(llc))
        size, how = usable_llc(curve, l2, llc)
        print(f"{start}: " + ", ".join(f"{s / 2**20:g} MiB {ns:.1f}" for s, ns in curve.items()))
        print(f"  usable LLC {size / 2**20:.1f} MiB: {how}", flush=True)


if __name__ == "__main__":
    main()
