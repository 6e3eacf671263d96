"""FuseTransposeIntoPad: a kernel that reads its input only to copy it into a padded buffer
reads a transposed float32 tensor untransposed, transposing as it copies.

A model's input arrives NCHW and the first layer's kernel reads NHWC. CancelTransposes cancels
the transposes between layer kernels, not that one; at INT8 FuseTransposeQuantize folds it
into the input's quantize kernel. A float32 first layer (an FP32 plan, or a stem the plan or
the speed floor keeps at FP32) instead ran a transpose kernel over the whole input and then
read the copy. The conv kernels of :mod:`aiq_tvm.targets.x86` copy a large-map layer's input
into a padded buffer (the ``"pad"`` block, made inside each task) before their register
blocks run, so that copy can read the untransposed tensor itself: the transpose kernel, its
output and one parallel launch go away (MobileNetV2 FP32 at batch 8: a 4.8 MB pass over the
input). The rewrite is TVM's ``transform_layout`` of the kernel's input buffer, so the kernel
loads the same values at the same points of its schedule; only the addresses change.

Only kernels whose every access to that input is a read in a ``"pad"`` block are rewritten: a
kernel that reads its input in its register blocks would read a transposed tensor with strided
loads in its hot loop. Other kernels, other layouts and dynamic shapes are left unchanged.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from aiq_tvm._ir import is_op, permute_axes, replace_main, static_shape, tir_blocks

from ._lowering import add_prim

__all__ = ["FuseTransposeIntoPad", "PAD_BLOCK", "read_untransposed", "untransposed_name"]

# Name of the padded-copy block of the conv kernels (targets/x86/conv2d.py, ``_pad_block``).
PAD_BLOCK = "pad"


def _pad_read_index(func: tvm.tirx.PrimFunc, param: int) -> int | None:
    """Index of buffer ``param`` in the reads of the kernel's ``"pad"`` block, when that block
    is the only one touching it (and reads it exactly once), else None."""
    if param >= len(func.params):
        return None
    buffer = func.params[param]  # a PrimFunc's parameters are its buffers
    index = None
    for block in tir_blocks(func.body):
        if any(w.source.same_as(buffer) for w in block.writes):
            return None
        reads = [k for k, r in enumerate(block.reads) if r.source.same_as(buffer)]
        if not reads:
            continue
        if block.name_hint != PAD_BLOCK or len(reads) != 1 or index is not None:
            return None
        index = reads[0]
    return index


def read_untransposed(func: tvm.tirx.PrimFunc, param: int, axes: tuple[int, ...]):
    """``func`` with buffer ``param`` (which holds ``permute_dims(x, axes)``) replaced by ``x``
    itself, or None when the kernel reads that buffer outside its ``"pad"`` block (or TVM
    cannot re-index the copy)."""
    read = _pad_read_index(func, param)
    if read is None:
        return None
    sch = tvm.s_tir.Schedule(func)
    # Element p of the transposed buffer is element q of x with q[axes[k]] = p[k].
    where = {axis: k for k, axis in enumerate(axes)}

    def untransposed(*p):
        return tuple(p[where[d]] for d in range(len(axes)))

    try:
        sch.transform_layout(sch.get_sblock(PAD_BLOCK), ("read", read), untransposed)
    except tvm.s_tir.ScheduleError:  # a copy TVM cannot re-index: the kernel stays as it is
        return None
    return sch.mod["main"]


def untransposed_name(name: str) -> str:
    """A layer kernel's name ends in its precision (``features_0_0_fp32``), which the
    profiler matches (:mod:`aiq_tvm.profiling`): the marker goes before it."""
    base, sep, last = name.rpartition("_")
    return f"{base}_untransposed_{last}" if sep else f"{name}_untransposed"


@mutator
class _Fuser(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, func: relax.Function):
        super().__init__(mod)
        self.mod_ = mod
        self.var2val = relax.analysis.get_var2val(func)
        self.fused = 0

    def visit_call_(self, call):
        if not is_op(call, "relax.call_tir") or not isinstance(call.args[0], relax.GlobalVar):
            return super().visit_call_(call)
        gv = call.args[0]
        args = list(call.args[1].fields)
        for k, arg in enumerate(args):
            src = self.var2val.get(arg) if isinstance(arg, relax.Var) else None
            if not is_op(src, "relax.permute_dims"):
                continue
            x = src.args[0]
            if str(x.ty.dtype) != "float32" or static_shape(x) is None:
                continue
            new = read_untransposed(self.mod_[gv], k, permute_axes(src))
            if new is None:
                continue
            # A new kernel: other layers of the same shape may run the old one on NHWC maps.
            gv = add_prim(self.builder_, new, untransposed_name(gv.name_hint))
            args[k] = x
            self.fused += 1
            return relax.call_tir(gv, [self.visit_expr(a) for a in args], out_ty=call.ty)
        return super().visit_call_(call)


@tvm.transform.module_pass(opt_level=0, name="FuseTransposeIntoPad")
class FuseTransposeIntoPad:
    """Kernels whose padded copy reads a transposed float32 tensor read it untransposed (module
    docstring).

    Parameters
    ----------
    func_name : str
        The Relax function to rewrite.
    """

    def __init__(self, func_name: str = "main"):
        self.func_name = func_name

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        func = mod[self.func_name]
        fuser = _Fuser(mod, func)
        new_func = fuser.visit_expr(func)
        if not fuser.fused:
            return mod
        out = replace_main(fuser.builder_.get(), new_func, self.func_name)
        return relax.transform.DeadCodeElimination([self.func_name])(out)
