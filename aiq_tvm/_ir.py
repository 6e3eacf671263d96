"""Small helpers over TVM 0.27's Relax IR classes (shared by the passes and the API)."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

__all__ = ["is_const", "const_value", "is_op", "static_shape", "replace_main"]


def is_const(expr) -> bool:
    """True for a Relax constant (``tvm.ir.expr.Constant`` in 0.27)."""
    return isinstance(expr, tvm.ir.expr.Constant)


def const_value(expr) -> np.ndarray:
    """The numpy value of a Relax constant."""
    return expr.value.numpy()


def is_op(expr, name: str | tuple[str, ...]) -> bool:
    """True when ``expr`` is a call of the Relax operator ``name`` (e.g. ``"relax.add"``), or
    of any of the operators in a tuple of names."""
    names = (name,) if isinstance(name, str) else name
    return (
        isinstance(expr, relax.Call)
        and isinstance(expr.op, tvm.ir.Op)
        and expr.op.name in names
    )


def static_shape(expr) -> tuple[int, ...] | None:
    """Integer shape of a tensor-typed expression, or None if unknown or symbolic."""
    ty = expr.ty
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        return None
    dims = []
    for d in ty.shape:
        if not isinstance(d, tvm.tirx.IntImm):
            return None
        dims.append(int(d))
    return tuple(dims)


def replace_main(mod: tvm.IRModule, func: relax.Function, name: str = "main") -> tvm.IRModule:
    """A copy of ``mod`` with function ``name`` replaced."""
    new = tvm.IRModule({gv: f for gv, f in mod.functions_items()}, attrs=mod.attrs)
    new[name] = func
    return new
