"""Session 31 experiment (not kept): int8 on vpmaddubsw targets with |q| <= QMAX codes and the m8b2 / m8b4 formats
(2 / 4 vpmaddubsw summed in int16 before one vpmaddwd). Runs bench_isa with the patch."""
import os, sys, runpy
from dataclasses import replace
QMAX = int(os.environ.get("ACC16_QMAX", "32"))
BLOCKS = int(os.environ.get("ACC16_BLOCKS", "2"))
import importlib; capm = importlib.import_module("aiq_tvm.targets.capabilities")
capm.INT8_WEIGHT_QMAX["vpmaddubsw"] = QMAX
from aiq_tvm.targets.x86 import isa
from aiq_tvm.targets.x86.common import WeightFormat
from aiq_tvm.targets.x86.pmadd import pmadd_intrin
fam = isa.DOT_FAMILIES["vpmaddubsw"]
orig = fam.formats
def formats(bits, lanes, reduction, tp):
    out = orig(bits, lanes, reduction, tp)
    if bits == 8:
        if BLOCKS == 2:
            out = out + [WeightFormat("m8b2", "v8b", 8, "int32", "uint8", 0, pmadd_intrin("u8i8b2", lanes),
                                      dot_ops=4.0, acc_latency=1.0, bcast_ops=2.0, weight_regs=2)]
        else:
            out = out + [WeightFormat("m8b4", "v8b", 16, "int32", "uint8", 0, pmadd_intrin("u8i8b4", lanes),
                                      dot_ops=7.0, acc_latency=1.0, bcast_ops=4.0, weight_regs=4)]
        if os.environ.get("ACC16_ONLY"):
            out = out[1:]
    return out
isa.register_dot_family(replace(fam, formats=formats, weight_qmax=QMAX))
# Run: cd /tmp && ACC16_QMAX=32 ACC16_BLOCKS=2 TVM_NUM_THREADS=1 python docs/runs/s31/acc16_experiment.py
#   --target skylake-avx512 JSON --models resnet20 mobilenet_v2 --batches 16 --precisions fp32 int8
#   --clock cpu --lock /work/bench.lock --out acc16_skx_b2.md
sys.argv = ["bench_isa.py"] + sys.argv[1:]
sys.path.insert(0, "/work/main/scripts")
runpy.run_path("/work/main/scripts/bench_isa.py", run_name="__main__")
