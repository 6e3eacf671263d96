"""Run a script with aiq_tvm imported from the checkout in $AIQ_ROOT (not the venv's)."""
import importlib.abc
import importlib.util
import os
import runpy
import sys

ROOT = os.environ["AIQ_ROOT"]
MAP = {"aiq_tvm": f"{ROOT}/aiq_tvm", "aiq_tvm.passes": f"{ROOT}/passes",
       "aiq_tvm.targets": f"{ROOT}/targets"}


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name in MAP:
            return importlib.util.spec_from_file_location(
                name, MAP[name] + "/__init__.py", submodule_search_locations=[MAP[name]])
        return None


sys.meta_path.insert(0, _Finder())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
