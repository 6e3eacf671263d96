"""Ad-hoc (session 25): one torchvision model built with and without the AMX-INT8 kernels
(``AIQ_AMX``), whole inferences timed in alternating rounds in one process
(:mod:`onoff_exp`; the ratio is off / on).

    TVM_NUM_THREADS=2 flock /work/bench.lock \\
        python docs/runs/s25_amx_exp.py MODEL BATCH PLAN [ROUNDS]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from onoff_exp import main  # noqa: E402

main("AIQ_AMX", sys.argv[1:])
