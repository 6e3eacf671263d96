"""MicroBatch: ``main`` built for a micro-batch of ``m`` samples runs a batch of ``B`` as
``B / m`` sequential calls, inside the module.

Why: at a large batch the activations of a memory-bound network (MobileNet's 112 x 112
layers) outgrow the last-level cache, so every layer streams them through memory; a smaller
batch keeps them cache-resident, at the price of reading the weights once per micro-batch.

The input module is compiled at batch ``m`` (its batch already specialized).  The pass renames
``main`` to the private function :data:`MICRO_FUNCTION` and adds a public ``main`` taking
batch ``B``: it splits each batched input along axis 0, calls the private function on each
part and concatenates every output along axis 0 (a tuple output field by field).  Inputs
whose first dimension is not ``m`` are passed to every call unchanged.  Callers see batch
``B`` exactly as before (``export_library``, the VM, RPC).

Run it after the layer passes and before legalization, so the per-micro-batch function is
legalized, fused and scheduled once; :func:`inline_micro_batches` then inlines it into
``main`` before lowering (``LiftWeights`` and the kernel-call listing read ``main`` alone,
and the static memory planner then reuses one micro-batch's buffers for the next).
"""

from __future__ import annotations

import tvm
from tvm import relax

from aiq_tvm.checks import check_positive_int

__all__ = ["MicroBatch", "MICRO_FUNCTION", "inline_micro_batches"]

MICRO_FUNCTION = "main_micro_batch"


def _num_input(func: relax.Function) -> int:
    return int(func.attrs["num_input"]) if func.attrs and "num_input" in func.attrs \
        else len(func.params)


def _leading(ty) -> int | None:
    """Static first dimension of a tensor type, else None."""
    if not isinstance(ty, relax.TensorType) or ty.shape is None or not len(ty.shape):
        return None
    dim = ty.shape[0]
    return int(dim) if isinstance(dim, tvm.tirx.IntImm) else None


def _with_batch(ty: relax.TensorType, batch: int) -> relax.TensorType:
    return relax.TensorType([batch, *list(ty.shape)[1:]], ty.dtype)


def _check_outputs(ty, micro: int, path: str = "output") -> None:
    if isinstance(ty, relax.TupleType):
        for i, field in enumerate(ty.fields):
            _check_outputs(field, micro, f"{path} {i}")
    elif _leading(ty) != micro:
        raise ValueError(f"MicroBatch: main's {path} ({ty}) does not have the micro-batch "
                         f"{micro} as its first dimension, so batches cannot be concatenated")


def _concat(bb: relax.BlockBuilder, outs: list, ty) -> relax.Expr:
    """The calls' outputs joined along axis 0, a tuple field by field."""
    if isinstance(ty, relax.TupleType):
        return bb.emit(relax.Tuple([
            _concat(bb, [bb.emit(relax.TupleGetItem(o, i)) for o in outs], field)
            for i, field in enumerate(ty.fields)]))
    return bb.emit(relax.op.concat(outs, axis=0))


@tvm.transform.module_pass(opt_level=0, name="MicroBatch")
class MicroBatch:
    """See the module docstring: ``main`` (at micro-batch ``micro``) runs batch ``batch``,
    which ``micro`` must divide.  ``micro == batch`` leaves the module unchanged."""

    def __init__(self, batch: int, micro: int):
        self.batch = check_positive_int("batch", batch)
        self.micro = check_positive_int("micro", micro)
        if batch % micro:
            raise ValueError(f"MicroBatch: micro-batch {micro} does not divide batch {batch}")

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        if self.micro == self.batch:
            return mod
        func = mod["main"]
        inputs = func.params[:_num_input(func)]
        split = [_leading(p.ty) == self.micro for p in inputs]
        if not any(split):
            raise ValueError(f"MicroBatch: no input of main has the micro-batch {self.micro} "
                             f"as its first dimension ({[str(p.ty) for p in inputs]})")
        _check_outputs(func.ret_ty, self.micro)
        base = tvm.IRModule({gv: f for gv, f in mod.functions_items()
                             if gv.name_hint != "main"}, attrs=mod.attrs)
        bb = relax.BlockBuilder(base)
        inner = bb.add_func(func.without_attr("global_symbol"), MICRO_FUNCTION)
        self._wrapper(bb, func, inner, split)
        return bb.finalize()

    def _wrapper(self, bb: relax.BlockBuilder, func: relax.Function, inner: relax.GlobalVar,
                 split: list) -> None:
        """Emit the public ``main``: split, ``batch / micro`` calls of ``inner``, concat."""
        parts = self.batch // self.micro
        split = split + [False] * (len(func.params) - len(split))  # weight parameters
        params = [relax.Var(p.name, _with_batch(p.ty, self.batch) if s else p.ty)
                  for p, s in zip(func.params, split, strict=True)]
        attrs = dict(func.attrs) if func.attrs else {}
        with bb.function("main", params, attrs, func.is_pure):
            pieces = [bb.emit(relax.op.split(v, parts, axis=0)) if s else None
                      for v, s in zip(params, split, strict=True)]
            outs = []
            for i in range(parts):
                args = [v if pc is None else bb.emit(relax.TupleGetItem(pc, i))
                        for v, pc in zip(params, pieces, strict=True)]
                outs.append(bb.emit(relax.Call(inner, args)))
            bb.emit_func_output(_concat(bb, outs, func.ret_ty))


def inline_micro_batches() -> tvm.transform.Pass:
    """Inline :data:`MICRO_FUNCTION` into ``main`` (TVM's ``InlinePrivateFunctions``)."""
    return relax.transform.InlinePrivateFunctions()
