"""Run an exported .so on the validation and test images a search used; compare summary.json.

    python scripts/check_so_accuracy.py model.so RUN_DIR

RUN_DIR is the --out of `aiq-tvm search`; the .so is `aiq-tvm build ... --batch 1` of its plan
(its weights, model.params, beside it; a --single-file library loads alone).
"""

import json
import sys

import numpy as np
import tvm

import aiq_tvm
from aiq_tvm.datasources import load_data

so, run_dir = sys.argv[1], sys.argv[2]
s = json.load(open(f"{run_dir}/summary.json"))
d = load_data(s["data"]["spec"], tuple(s["model"]["input_shape"]), **s["data"]["load_args"])
main = aiq_tvm.load(so)["main"]
parts = [("validation", d.val, "accuracy")]
parts += [("test", d.test, "test_accuracy")] if d.test else []
for name, (x, y), key in parts:
    pred = np.array([main(tvm.runtime.tensor(x[i:i + 1])).numpy().argmax() for i in range(len(x))])
    print(f"{name}: .so {100 * (pred == y).mean():.2f}% ({len(x)} images), summary.json "
          f"{100 * s[key]:.2f}%")
