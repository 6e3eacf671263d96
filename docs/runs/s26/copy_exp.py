"""Ad-hoc (session 26): image tasks' padded copy past the L2 share, on (``1``, the rule kept in
targets/x86/conv2d.py) and off (``0``: image tasks whatever their copy's size), one
torchvision model, alternating rounds in one process (docs/runs/onoff_exp.py; the ratio is
off / on). Needs the temporary switch of ``copy_rule_switch.patch`` (beside this file) applied
to the code of ae32f0f or later (the session's runs: c691fab plus the same switch);
``AIQ_TMP_ZL2=1`` makes ``0`` the rule with the whole L2 instead; a fifth argument, a JSON
target, builds for that target (docs/runs/onoff_exp.py).

    git apply docs/runs/s26/copy_rule_switch.patch
    TVM_NUM_THREADS=2 flock /work/bench.lock \\
        python docs/runs/s26/copy_exp.py MODEL BATCH PLAN [ROUNDS [TARGET_JSON]]
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from onoff_exp import main  # noqa: E402

main("AIQ_TMP_COPY", sys.argv[1:])
