"""Glue kernels of the 224 models rebuilt from Relax ops (legalized and fused as the build
does), scheduled by ScheduleGlue at a git revision and by the checkout's, timed alone in the
same run; outputs compared bit for bit. Prints us, bytes read + written, and GB/s::

    TVM_NUM_THREADS=1 python scripts/bench_glue_kernels.py --before 08f0439 \\
        --cases shufflenet_maxpool densenet_concat_bn_56

Run under nice; timing takes /work/bench.lock.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_glue_schedules import schedule_glue_at  # noqa: E402


def _cases():
    from tvm import relax

    op = relax.op
    rng = np.random.default_rng(0)

    def pool(bb, xs):
        return bb.emit(op.nn.max_pool2d(xs[0], (3, 3), (2, 2), (1, 1, 1, 1), layout="NHWC"))

    def perm(axes):
        return lambda bb, xs: bb.emit(op.permute_dims(xs[0], axes))

    def concat_bn(shapes):  # DenseNet: concat + batch norm (subtract, divide, ...) + ReLU
        chans = sum(s[3] for s in shapes)

        def body(bb, xs):
            c = bb.emit(op.concat(xs, axis=3))
            mean, std = (relax.const(rng.random((1, 1, 1, chans), dtype="float32") + 0.5)
                         for _ in range(2))
            y = bb.emit(op.add(op.multiply(op.divide(op.subtract(c, mean), std), std), mean))
            return bb.emit(op.nn.relu(y))

        return shapes, body

    def relu(bb, xs):
        return bb.emit(op.nn.relu(xs[0]))

    return {
        "input_to_nhwc_b8": ([(8, 3, 224, 224)], perm([0, 2, 3, 1])),
        "input_to_nhwc_b1": ([(1, 3, 224, 224)], perm([0, 2, 3, 1])),
        "shufflenet_to_nchw_7x7x1024_b8": ([(8, 7, 7, 1024)], perm([0, 3, 1, 2])),
        "shufflenet_to_nchw_7x7x1024_b1": ([(1, 7, 7, 1024)], perm([0, 3, 1, 2])),
        "shufflenet_to_nchw_14x14x116_b8": ([(8, 14, 14, 116)], perm([0, 3, 1, 2])),
        "shufflenet_to_nchw_14x14x116_b1": ([(1, 14, 14, 116)], perm([0, 3, 1, 2])),
        "shufflenet_maxpool_b8": ([(8, 112, 112, 24)], pool),
        "shufflenet_maxpool_b1": ([(1, 112, 112, 24)], pool),
        "resnet_maxpool_b8": ([(8, 112, 112, 64)], pool),
        "densenet_concat_bn_56_b8": concat_bn([(8, 56, 56, 64)] + [(8, 56, 56, 32)] * 5),
        "densenet_concat_bn_14_b8": concat_bn([(8, 14, 14, 256)] + [(8, 14, 14, 32)] * 15),
        "densenet_concat_bn_14_b1": concat_bn([(1, 14, 14, 256)] + [(1, 14, 14, 32)] * 15),
        "copy_56x56x224_b8": ([(8, 56, 56, 224)], relu),
    }


def fused_primfunc(shapes, body):
    """The one PrimFunc FuseOps + FuseTIR make of ``body`` over float32 inputs ``shapes``."""
    import tvm
    from tvm import relax

    bb = relax.BlockBuilder()
    xs = [relax.Var(f"x{i}", relax.TensorType(s, "float32")) for i, s in enumerate(shapes)]
    with bb.function("main", xs):
        with bb.dataflow():
            out = bb.emit_output(body(bb, xs))
        bb.emit_func_output(out)
    mod = tvm.transform.Sequential([
        relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
        relax.transform.FuseOps(), relax.transform.FuseTIR()])(bb.get())
    (func,) = [f for _, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    return func


def main() -> None:
    cases = _cases()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="git revision of the 'before' ScheduleGlue")
    ap.add_argument("--cases", nargs="+", default=list(cases), choices=list(cases))
    ap.add_argument("--target", default='{"kind": "llvm", "mcpu": "znver4"}',
                    help="TVM target (JSON or string); its vector width sets the lanes")
    ap.add_argument("--lock", default="/work/bench.lock")
    args = ap.parse_args()
    import json

    import tvm

    from aiq_tvm.passes.schedule_glue import schedule_glue_func
    from aiq_tvm.targets import capabilities

    target = tvm.target.Target(json.loads(args.target) if args.target.startswith("{")
                               else args.target)
    lanes = capabilities(target).lanes32
    schedules = {"before": schedule_glue_at(args.before), "after": schedule_glue_func}
    libs = {}
    for name in args.cases:
        func = fused_primfunc(*cases[name])
        for tag, sched in schedules.items():
            scheduled = sched(func, lanes).with_attr("global_symbol", "main")
            libs[name, tag] = (tvm.tirx.build(tvm.IRModule({"main": scheduled}), target=target),
                               func)
    print(f"TVM_NUM_THREADS={os.environ.get('TVM_NUM_THREADS', 'all')}, {target}\n")
    print("| kernel | before us | after us | MB | before GB/s | after GB/s |\n"
          "|---|---|---|---|---|---|")
    with open(args.lock, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for name in args.cases:
            us, outs = {}, {}
            for tag in schedules:
                lib, func = libs[name, tag]
                rng = np.random.default_rng(0)
                arrays = [rng.standard_normal([int(d) for d in p.shape]).astype(p.dtype)
                          for p in func.params]
                tensors = [tvm.runtime.tensor(a) for a in arrays]
                lib["main"](*tensors)
                outs[tag] = tensors[-1].numpy()
                ev = lib.time_evaluator("main", tvm.cpu(), number=10, repeat=9)
                us[tag] = float(np.median(ev(*tensors).results)) * 1e6
            if not np.array_equal(outs["before"], outs["after"]):
                raise SystemExit(f"{name}: the two schedules' outputs differ")
            mb = sum(a.nbytes for a in arrays) / 1e6
            print(f"| {name} | {us['before']:.1f} | {us['after']:.1f} | {mb:.2f} | "
                  f"{mb / us['before'] * 1e3:.1f} | {mb / us['after'] * 1e3:.1f} |")


if __name__ == "__main__":
    main()
