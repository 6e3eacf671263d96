"""Run a script with aiq_tvm imported from another checkout (the editable install's mapping
pointed at ROOT): python as_checkout.py ROOT script.py args..."""
import runpy
import sys

import __editable___aiq_tvm_0_1_0_finder as finder

root = sys.argv[1]
finder.MAPPING.update({"aiq_tvm": f"{root}/aiq_tvm", "aiq_tvm.passes": f"{root}/passes",
                       "aiq_tvm.targets": f"{root}/targets"})
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
