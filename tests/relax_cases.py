"""Relax modules and helpers shared by the per-pass tests."""

import numpy as np
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from aiq_tvm.pipeline import legalize_passes, lower_passes, schedule_passes


@I.ir_module
class ConvBiasRelu:
    @R.function
    def main(x: R.Tensor((1, 4, 8, 8), "float32"), conv1_weight: R.Tensor((8, 4, 3, 3), "float32"),
             conv1_bias: R.Tensor((1, 8, 1, 1), "float32")) -> R.Tensor((1, 8, 8, 8), "float32"):
        R.func_attr({"num_input": 1})
        with R.dataflow():
            lv = R.nn.conv2d(x, conv1_weight, padding=[1, 1, 1, 1])
            lv1 = R.add(lv, conv1_bias)
            gv = R.nn.relu(lv1)
            R.output(gv)
        return gv


@I.ir_module
class StridedConv:
    @R.function
    def main(x: R.Tensor((2, 5, 9, 9), "float32"), c_weight: R.Tensor((12, 5, 3, 3), "float32"),
             c_bias: R.Tensor((1, 12, 1, 1), "float32")) -> R.Tensor((2, 12, 5, 5), "float32"):
        R.func_attr({"num_input": 1})
        with R.dataflow():
            lv = R.nn.conv2d(x, c_weight, strides=[2, 2], padding=[1, 1, 1, 1])
            gv = R.add(lv, c_bias)
            R.output(gv)
        return gv


# A dense layer with constant weight and bias (bias add and ReLU fuse into its epilogue).
FC_W = np.linspace(-1, 1, 8 * 16, dtype="float32").reshape(8, 16)
FC_B = np.linspace(-0.5, 0.5, 8, dtype="float32")
FC_RANGE = (-2.0, 2.0)  # calibrated input range of "fc"


@I.ir_module
class DenseBiasRelu:
    @R.function
    def main(x: R.Tensor((1, 16), "float32")) -> R.Tensor((1, 8), "float32"):
        with R.dataflow():
            fc = R.matmul(x, R.permute_dims(R.const(FC_W)))
            gv = R.nn.relu(R.add(fc, R.const(FC_B)))
            R.output(gv)
        return gv


def fc_kernel(precision: str, target):
    """The kernel library's dense kernel for DenseBiasRelu's layer at ``precision``."""
    from aiq_tvm.quant import ActQParams
    from aiq_tvm.targets import x86

    qp = ActQParams.from_range(*FC_RANGE)
    return x86.dense_kernel(x86.DenseSpec(N=1, K=16, O=8), precision, FC_W, FC_B, act="relu",
                            act_qparams=qp, target=target)


def fc_quantize_kernel(target):
    from aiq_tvm.quant import ActQParams
    from aiq_tvm.targets import x86

    return x86.quantize_kernel((1, 16), ActQParams.from_range(*FC_RANGE), target=target)


def with_kernels(expected, kernels: dict):
    """``expected`` with its stub PrimFuncs replaced by real kernels (name -> PrimFunc)."""
    for name, func in kernels.items():
        if func.attrs is not None and "global_symbol" in func.attrs:
            func = func.without_attr("global_symbol")
        expected[name] = func
    return expected


def bind(mod, values):
    """Bind ``main``'s weight parameters to numpy values."""
    tensors = {k: tvm.runtime.tensor(v) for k, v in values.items()}
    return relax.transform.BindParams("main", tensors)(mod)


def compile_run(mod, target, *inputs):
    """Compile with TVM's CPU legalization, our glue schedules and lowering; run ``main``."""
    seq = tvm.transform.Sequential(
        legalize_passes(target) + schedule_passes(target) + lower_passes(target))
    ex = tvm.compile(mod, target, relax_pipeline=seq)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    return vm["main"](*[tvm.runtime.tensor(i) for i in inputs])


def op_calls(mod, func: str = "main") -> list[str]:
    """The operator calls of ``mod[func]`` in post order, a ``call_tir`` as
    ``relax.call_tir:<kernel name>``."""
    names = []

    def visit(e):
        if isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op):
            callee = e.args[0].name_hint if e.op.name == "relax.call_tir" else ""
            names.append(f"{e.op.name}{':' + callee if callee else ''}")

    relax.analysis.post_order_visit(mod[func].body, visit)
    return names
