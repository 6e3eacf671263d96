"""Small helpers over TVM 0.27's Relax IR classes (shared by the passes and the API)."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from .checks import check_positive_int

__all__ = ["is_const", "const_value", "is_op", "static_shape", "replace_main", "batch_var",
           "batch_split_problem", "specialize_batch", "input_shape", "weight_types",
           "output_types", "use_counts", "rewrite_function", "tir_children",
           "tir_substitute", "tir_blocks", "permute_axes"]


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


def permute_axes(call: relax.Call) -> tuple[int, ...]:
    """The axes of a ``relax.permute_dims`` call (``None`` means reversed)."""
    axes = call.attrs.axes
    rank = len(call.args[0].ty.shape)
    return tuple(reversed(range(rank))) if axes is None else tuple(int(a) for a in axes)


def replace_main(mod: tvm.IRModule, func: relax.Function, name: str = "main") -> tvm.IRModule:
    """A copy of ``mod`` with function ``name`` replaced."""
    new = tvm.IRModule({gv: f for gv, f in mod.functions_items()}, attrs=mod.attrs)
    new[name] = func
    return new


def rewrite_main_weights(mod: tvm.IRModule, rewriter) -> tvm.IRModule:
    """``mod`` with ``main``'s body visited by ``rewriter``, a ``PyExprMutator`` whose
    ``new_vars`` maps each weight parameter it replaced to the new one (an import-time
    rewrite that transforms weights in place, as ``aiq_tvm.transposed_conv`` does). ``main``
    keeps its parameter order; bindings the rewrite orphaned are dropped. ``mod`` itself when
    nothing changed (no weight replaced and no ``rewriter.changed`` set)."""
    func = mod["main"]
    body = rewriter.visit_expr(func.body)
    if not (rewriter.new_vars or getattr(rewriter, "changed", False)):
        return mod
    new_params = [rewriter.new_vars.get(p, p) for p in func.params]
    new_func = relax.Function(new_params, body, func.ret_ty, attrs=func.attrs)
    mod = replace_main(mod, new_func)
    return relax.transform.CanonicalizeBindings()(relax.transform.DeadCodeElimination()(mod))


def use_counts(func: relax.Function) -> dict:
    """How many times each Var is used in ``func``'s body."""
    counts: dict = {}

    def visit(e):
        if isinstance(e, relax.Var):
            counts[e] = counts.get(e, 0) + 1

    # post_order_visit reaches every use site of a Var (binding definitions are not visited).
    relax.analysis.post_order_visit(func.body, visit)
    return counts


def rewrite_function(mod: tvm.IRModule, func_name: str, make_rewriter) -> tvm.IRModule:
    """Rewrite one function with ``make_rewriter(mod, func)`` (an expression mutator), then
    remove the bindings it left dead; the module itself when nothing changed."""
    func = mod[func_name]
    new_func = make_rewriter(mod, func).visit_expr(func)
    if new_func.same_as(func):
        return mod
    mod = replace_main(mod, new_func, func_name)
    return relax.transform.DeadCodeElimination([func_name])(mod)


def batch_var(mod: tvm.IRModule) -> tvm.tirx.Var | None:
    """The symbolic batch variable of ``main``'s first input, or None when it is static."""
    shape = mod["main"].params[0].ty.shape
    dim = shape[0] if shape is not None and len(shape) else None
    return dim if isinstance(dim, tvm.tirx.Var) else None


def batch_split_problem(mod: tvm.IRModule) -> str:
    """Why ``main``'s batch cannot be cut into micro-batches ("" when it can): it needs a
    symbolic batch as the first dimension of the first input and of every output."""
    var = batch_var(mod)
    if var is None:
        return "the module has a static batch (import it with dynamic_batch=True)"
    for i, ty in enumerate(_leaf_types(mod["main"].ret_ty)):
        shape = getattr(ty, "shape", None)
        first = shape[0] if shape is not None and len(shape) else None
        if not (isinstance(first, tvm.tirx.Var) and first.same_as(var)):
            return (f"output {i} ({ty}) does not have the batch {var} as its first dimension, "
                    "so micro-batch outputs cannot be concatenated")
    return ""


def specialize_batch(mod: tvm.IRModule, batch_size: int) -> tvm.IRModule:
    """Fix the symbolic batch dimension to ``batch_size`` (no-op check for static modules).

    Raises
    ------
    ValueError
        If the module has a static batch that differs from ``batch_size``.
    """
    check_positive_int("batch_size", batch_size)
    var = batch_var(mod)
    if var is None:
        static = int(mod["main"].params[0].ty.shape[0])
        if static != batch_size:
            raise ValueError(
                f"the module has a static batch of {static}; it cannot run batch {batch_size}. "
                "Import it with a dynamic batch (aiq_tvm.from_torch(..., dynamic_batch=True))"
            )
        return mod
    # By name: partitioned composite functions carry their own copy of the variable.
    return relax.transform.BindSymbolicVars({var.name: int(batch_size)})(mod)


def _dims(shape) -> tuple:
    """Static dimensions as ints, symbolic ones as None."""
    return tuple(int(d) if isinstance(d, tvm.tirx.IntImm) else None for d in shape)


def input_shape(mod: tvm.IRModule) -> tuple[int, ...]:
    """Shape of one sample of ``main``'s first input (without the batch)."""
    return tuple(int(d) for d in list(mod["main"].params[0].ty.shape)[1:])


def weight_types(mod: tvm.IRModule) -> dict[str, tuple[tuple, str]]:
    """``main``'s weight parameters (after ``num_input``): name -> (shape, dtype), None for
    symbolic dimensions."""
    func = mod["main"]
    num_input = int(func.attrs["num_input"]) if func.attrs and "num_input" in func.attrs else 1
    out = {}
    for p in func.params[num_input:]:
        if isinstance(p.ty, relax.TensorType) and p.ty.shape is not None:
            out[p.name] = (_dims(p.ty.shape), str(p.ty.dtype))
    return out


def output_types(mod: tvm.IRModule) -> list | None:
    """Shapes of ``main``'s outputs, nested tuples flattened in order (the order in which
    :func:`aiq_tvm.runtime.run_batches` returns them), or None for a single tensor."""
    ret = mod["main"].ret_ty
    if not isinstance(ret, relax.TupleType):
        return None
    return [_dims(ty.shape) if getattr(ty, "shape", None) is not None else None
            for ty in _leaf_types(ret)]


def _leaf_types(ty) -> list:
    """The non-tuple types of a (nested) tuple type, in order; ``[ty]`` for a tensor."""
    if isinstance(ty, relax.TupleType):
        return [leaf for field in ty.fields for leaf in _leaf_types(field)]
    return [ty]


def tir_children(stmt) -> list:
    """The statements directly under ``stmt`` (the node kinds scheduled and lowered kernels
    are made of: block realizes, blocks (init, body), sequences, if-then-else, loops, while
    loops, attributes)."""
    from tvm import tirx
    from tvm.s_tir.stmt import SBlock, SBlockRealize

    if isinstance(stmt, SBlockRealize):
        return [stmt.block]
    if isinstance(stmt, SBlock):
        return [s for s in (stmt.init, stmt.body) if s is not None]
    if isinstance(stmt, tirx.SeqStmt):
        return list(stmt.seq)
    if isinstance(stmt, tirx.IfThenElse):
        return [s for s in (stmt.then_case, stmt.else_case) if s is not None]
    if isinstance(stmt, (tirx.For, tirx.AttrStmt, tirx.While)):  # (a LetStmt has no body)
        return [stmt.body]
    return []


def tir_blocks(stmt):
    """Every block under ``stmt`` (itself included), pre-order, through :func:`tir_children`."""
    from tvm.s_tir.stmt import SBlock

    if isinstance(stmt, SBlock):
        yield stmt
    for kid in tir_children(stmt):
        yield from tir_blocks(kid)


def tir_substitute(stmt, visit):
    """``stmt`` with nodes replaced, pre-order: ``visit(node)`` returns the node's replacement
    (not descended into) or None to descend into its :func:`tir_children`. The nodes on the
    way down to a replacement are rebuilt, every other node is kept (the same object when
    nothing was replaced)."""
    new = visit(stmt)
    if new is not None:
        return new
    kids = tir_children(stmt)
    changed = [tir_substitute(k, visit) for k in kids]
    if all(c.same_as(k) for c, k in zip(changed, kids, strict=True)):
        return stmt
    return _tir_rebuilt(stmt, changed)


def _tir_rebuilt(stmt, kids: list):
    """``stmt`` with its :func:`tir_children` replaced by ``kids``."""
    from tvm import tirx
    from tvm.s_tir.stmt import SBlock, SBlockRealize

    if isinstance(stmt, SBlockRealize):
        return SBlockRealize(list(stmt.iter_values), stmt.predicate, kids[0])
    if isinstance(stmt, SBlock):
        init = kids[0] if stmt.init is not None else None
        return SBlock(list(stmt.iter_vars), list(stmt.reads), list(stmt.writes),
                      stmt.name_hint, kids[-1], init, list(stmt.alloc_buffers),
                      list(stmt.match_buffers), stmt.annotations)  # fmt: skip
    if isinstance(stmt, tirx.SeqStmt):
        return tirx.SeqStmt(kids, stmt.span)
    if isinstance(stmt, tirx.For):
        return tirx.For(stmt.loop_var, stmt.min, stmt.extent, stmt.kind, kids[0],
                        stmt.thread_binding, stmt.annotations, stmt.step, stmt.span)
    if isinstance(stmt, tirx.AttrStmt):
        return tirx.AttrStmt(stmt.node, stmt.attr_key, stmt.value, kids[0], stmt.span)
    if isinstance(stmt, tirx.While):
        return tirx.While(stmt.condition, kids[0], stmt.span)
    return tirx.IfThenElse(stmt.condition, kids[0], kids[1] if len(kids) > 1 else None,
                           stmt.span)
