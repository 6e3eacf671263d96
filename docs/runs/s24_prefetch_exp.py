"""Ad-hoc (session 24): one torchvision model built with and without the weight prefetch
(``AIQ_WEIGHT_PREFETCH``), whole inferences timed in alternating rounds in one process
(:mod:`onoff_exp`; the ratio is off / on).

    TVM_NUM_THREADS=2 flock /work/bench.lock \\
        python docs/runs/s24_prefetch_exp.py MODEL BATCH PLAN [ROUNDS]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from onoff_exp import main  # noqa: E402

main("AIQ_WEIGHT_PREFETCH", sys.argv[1:])
