"""ResidualInPlace: a layer kernel with a residual input writes its output over the residual.

A ResNet block's last conv adds the block's input (the shortcut) in its epilogue: it reads the
shortcut tensor and writes a new tensor of the same shape. Where the shortcut is dead after
that kernel (the block's other convs read it before), the output can take the shortcut's
memory instead: each output element is written right after the same element of
the shortcut is read, so the kernel streams one tensor instead of two, and the output's lines
need no read-for-ownership from memory. At batch 8 ResNet-50's 56 x 56 x 256 shortcuts are
25.7 MB, beyond the last-level cache; the 1x1 64 -> 256 conv with its residual ran 4.50 ms
with a separate output and 4.00 ms in place (cache flushed before each call,
docs/runs/s45/).

Runs on the VM's form of ``main`` (after ``CallTIRRewrite``, before
``StaticPlanBlockMemory``): a kernel call ``k(..., res, ..., out)`` whose ``out`` is a fresh
``alloc_tensor`` becomes ``k(..., res, ..., res)`` and every later use of ``out`` uses
``res``. Applied only where

* the callee is a PrimFunc with a parameter named ``residual`` (``targets.x86``'s kernels)
  of the output's shape and dtype, whose single block writing the output reads the residual
  at the element it writes and nowhere else, and no block reads the output (so no element of
  the residual is read after it was overwritten);
* ``res`` is itself a fresh ``alloc_tensor`` (not a function parameter: the caller's input
  is never written, nor a view of another tensor) that only kernel calls read, as direct
  arguments (no view of it, not returned), this call the last of them; ``out`` likewise is
  a fresh ``alloc_tensor`` that is neither viewed nor returned. A shortcut that is itself an
  output written in place names that memory (consecutive blocks share one buffer).

and where the shortcut is larger than a core's L2 (``min_bytes``; by default the target's
L2, 1 MiB where it is unknown): a shortcut the L2 holds costs no memory traffic either way,
and there the rewrite measured nothing, or a loss (ResNet-20 at batch 16, 64-1024 KB
shortcuts, skylake-avx512: FP32 0.985x the time, int8 1.014x; haswell 0.986x / 0.995x;
ResNet-50 batch 1 FP32, two threads: 1.009x; docs/runs/s45/).

The kernel's ``tirx.noalias`` attribute is dropped, since its residual and output are then
the same memory. Anything else is left unchanged.
"""

from __future__ import annotations

import tvm
from tvm import relax, tirx
from tvm.relax.expr_functor import PyExprMutator, mutator
from tvm_ffi import structural_equal

from aiq_tvm._ir import is_op, tir_blocks

__all__ = ["ResidualInPlace"]

RESIDUAL_PARAM = "residual"
# The L2 assumed where the target's is unknown.
DEFAULT_MIN_BYTES = 1 << 20


def residual_index(func) -> int | None:
    """Index of ``func``'s residual parameter where its output (the last parameter) may be
    written over it (see the module docstring), else None."""
    if not isinstance(func, tirx.PrimFunc) or len(func.params) < 2:
        return None
    names = [getattr(p, "name", None) for p in func.params]
    if names.count(RESIDUAL_PARAM) != 1:
        return None
    idx = names.index(RESIDUAL_PARAM)
    res, out = func.params[idx], func.params[-1]
    if idx == len(names) - 1 or str(res.dtype) != str(out.dtype) or \
            [int(d) for d in res.shape] != [int(d) for d in out.shape]:
        return None
    writers = []
    for block in tir_blocks(func.body):
        if any(r.source.same_as(out) for r in block.reads):
            return None  # the output is read back: an element may be read after the write
        if any(w.source.same_as(out) for w in block.writes):
            writers.append(block)
    if len(writers) != 1:
        return None
    # The writer reads the residual at the element it writes, and nowhere else.
    (block,) = writers
    written = [w.region for w in block.writes if w.source.same_as(out)]
    read = [r.region for r in block.reads if r.source.same_as(res)]
    if len(written) != 1 or len(read) != 1 or not _same_region(read[0], written[0]):
        return None
    return idx


def _nbytes(buf) -> int:
    n = tvm.DataType(str(buf.dtype)).bits // 8
    for d in buf.shape:
        n *= int(d)
    return n


def _same_region(a, b) -> bool:
    return len(a) == len(b) and all(
        structural_equal(x.min, y.min) and structural_equal(x.extent, y.extent)
        for x, y in zip(a, b, strict=True))


def _vars_in(expr) -> list:
    found = []

    def visit(e):
        if isinstance(e, relax.Var):
            found.append(e)

    relax.analysis.post_order_visit(expr, visit)
    return found


def _is_kernel_call(value) -> bool:
    return isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.GlobalVar)


def _uses(bindings: list, result) -> tuple[dict, dict, set]:
    """(var -> the variable it is an alias of, root var -> positions of the bindings using it,
    root vars used otherwise than as a direct argument of a kernel call or by ``result``).
    ``CallTIRRewrite`` binds each kernel's output to a new variable (``lv = alloc``): such
    aliases are followed to the allocation they name."""
    root: dict = {}
    for b in bindings:
        if isinstance(b, relax.VarBinding) and isinstance(b.value, relax.Var):
            root[b.var] = root.get(b.value, b.value)
    where: dict = {}
    other = {root.get(v, v) for v in _vars_in(result)}
    for i, b in enumerate(bindings):
        if isinstance(b.value, relax.Var):
            continue  # an alias, not a use
        direct = set(b.value.args) if _is_kernel_call(b.value) else set()
        for var in _vars_in(b.value):
            where.setdefault(root.get(var, var), []).append(i)
            if var not in direct:
                other.add(root.get(var, var))
    return root, where, other


def _rewrite(func: relax.Function, eligible: dict) -> tuple[relax.Function, set]:
    """``func`` with the eligible kernel calls' outputs written over their residuals, and
    the kernels so called."""
    if not isinstance(func.body, relax.SeqExpr):
        return func, set()
    bindings = [b for block in func.body.blocks for b in block.bindings]
    root, where, other = _uses(bindings, func.body.body)
    allocs = {b.var for b in bindings
              if isinstance(b, relax.VarBinding) and is_op(b.value, "relax.builtin.alloc_tensor")}
    replace: dict = {}  # output allocation -> the residual's
    used = set()
    for i, b in enumerate(bindings):
        call = b.value
        if not (_is_kernel_call(call) and call.op in eligible):
            continue
        idx = eligible[call.op]
        args = list(call.args)
        if len(args) <= idx + 1 or not all(isinstance(a, relax.Var) for a in (args[idx], args[-1])):
            continue
        res, out = root.get(args[idx], args[idx]), root.get(args[-1], args[-1])
        if res not in allocs or out not in allocs or res in other or out in other:
            continue
        # read by kernels alone (no view of it), the last of them this one, once
        if max(where[res]) != i or [root.get(a, a) for a in args].count(res) != 1:
            continue
        # a shortcut that is itself a kernel's output written in place: that memory
        replace[out] = replace.get(res, res)
        used.add(call.op)
    if not replace:
        return func, set()
    blocks = []
    for block in func.body.blocks:
        kept = [b for b in block.bindings if b.var not in replace]
        kind = relax.DataflowBlock if isinstance(block, relax.DataflowBlock) else relax.BindingBlock
        blocks.append(kind(kept))
    new = relax.Function(func.params, relax.SeqExpr(blocks, func.body.body), func.ret_ty,
                         func.is_pure, func.attrs, func.span)
    return _Substitute(replace).visit_expr(new), used


@mutator
class _Substitute(PyExprMutator):
    """Every use of a variable in ``replace`` reads its replacement."""

    def __init__(self, replace: dict):
        super().__init__()
        self.replace = replace

    def visit_var_(self, var):
        return self.replace.get(var, var)


@tvm.transform.module_pass(opt_level=0, name="ResidualInPlace")
class ResidualInPlace:
    """See the module docstring. ``target``: the target whose L2 sets ``min_bytes`` (default:
    the target in scope); ``min_bytes``: only shortcuts larger than this are written over."""

    def __init__(self, target=None, min_bytes: int | None = None):
        self.target = target
        self.min_bytes = min_bytes

    def _min_bytes(self) -> int:
        if self.min_bytes is not None:
            return self.min_bytes
        from aiq_tvm.targets import current_target
        from aiq_tvm.targets.capabilities import capabilities

        try:
            target = current_target(self.target)
        except ValueError:  # no target in scope
            return DEFAULT_MIN_BYTES
        return capabilities(target).l2_bytes or DEFAULT_MIN_BYTES

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        floor = self._min_bytes()
        eligible = {gv: idx for gv, f in mod.functions_items()
                    if (idx := residual_index(f)) is not None
                    and _nbytes(f.params[idx]) > floor}
        if not eligible:
            return mod
        updates, kernels = {}, set()
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                new, used = _rewrite(func, eligible)
                if used:
                    updates[gv] = new
                    kernels |= used
        for gv in kernels:
            updates[gv] = mod[gv].without_attr("tirx.noalias")
        if not updates:
            return mod
        out = mod.clone()  # the module's attributes and global infos too
        for gv, func in updates.items():
            out.update_func(gv, func)
        return out
