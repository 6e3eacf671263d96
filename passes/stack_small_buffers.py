"""StackSmallBuffers: small constant-size buffers of CPU kernels stay on the stack.

TVM's ``LowerTVMBuiltin`` turns every ``global`` CPU allocation of 1024 bytes or more into a
``TVMBackendAllocWorkspace`` call, and only smaller ones become stack allocas. A register
block of 16 float32x16 (or int32x16) accumulators, 4 positions x 64 channels, is exactly
1024 bytes. On the heap LLVM cannot drop the buffer: each block memsets it (its zero init,
which the register-promoted loop then ignores) and stores its 16 vectors into it after the
reduction, and a block that prefetches the next block's weights stores every accumulator
after each multiply-add (LLVM does not keep them in registers across the prefetch calls); as
an alloca the whole buffer lives in registers (SROA), with none of those memory operations.

Runs on lowered host functions, right before ``LowerTVMBuiltin`` (the ``"aiq_tvm"`` TIR
pipeline of :mod:`aiq_tvm.pipeline`): each ``global`` ``AllocBuffer`` of a constant size up
to ``max_bytes`` is annotated ``disable_lower_builtin`` (TVM's own opt-out of that lowering),
so LLVM code generation makes it an alloca in the function's entry block. The default 4096
bytes (one page) needs no stack probe and holds any register block (24 zmm accumulators are
1536 bytes); pad copies, decode scratches and other buffers that size tiles for caches are
larger and keep the workspace. Other scopes, symbolic sizes and buffers already annotated are
left unchanged, as is every statement :func:`aiq_tvm._ir.tir_children` does not descend
into (it walks sequences, loops, attribute scopes, if-then-else and while bodies, where
kernels place their blocks).
"""

from __future__ import annotations

import tvm
from tvm import tirx

from aiq_tvm._ir import tir_substitute

__all__ = ["DISABLE_LOWER_BUILTIN", "StackSmallBuffers", "constant_bytes"]

# TVM's annotation (``tirx::attr::kDisableLowerTVMBuiltin``) that keeps an allocation out of
# LowerTVMBuiltin's workspace calls.
DISABLE_LOWER_BUILTIN = "disable_lower_builtin"


def constant_bytes(buffer: tirx.Buffer) -> int | None:
    """Bytes of ``buffer`` when every dimension is a constant, else None."""
    n = 1
    for dim in buffer.shape:
        if not isinstance(dim, tirx.IntImm):
            return None
        n *= int(dim)
    dtype = tvm.runtime.DataType(str(buffer.dtype))
    return n * dtype.bits * dtype.lanes // 8


class _StackMutator:
    """Annotates the small allocations, rebuilding the statements on the path to each
    (:func:`aiq_tvm._ir.tir_substitute`)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.annotated = 0

    def visit(self, stmt):
        """``stmt`` with its small allocations annotated (the same object if none is)."""
        return tir_substitute(stmt, self._alloc)

    def _alloc(self, stmt):
        """The annotated allocation, or None (descend) for any other node."""
        if not isinstance(stmt, tirx.AllocBuffer):
            return None
        size = constant_bytes(stmt.buffer)
        if (size is None or size > self.max_bytes or stmt.buffer.scope() != "global"
                or DISABLE_LOWER_BUILTIN in stmt.annotations):  # fmt: skip
            return stmt
        annotations = dict(stmt.annotations)
        annotations[DISABLE_LOWER_BUILTIN] = tirx.IntImm("bool", 1)
        self.annotated += 1
        return tirx.AllocBuffer(stmt.buffer, annotations, stmt.span)


@tirx.transform.prim_func_pass(opt_level=0, name="StackSmallBuffers")
class StackSmallBuffers:
    """Keep ``global`` CPU buffers of at most ``max_bytes`` on the stack (see the module
    docstring). ``annotated`` counts the allocations the last run annotated.

    Parameters
    ----------
    max_bytes : int
        Largest allocation kept on the stack (default 4096).
    """

    def __init__(self, max_bytes: int = 4096):
        if not isinstance(max_bytes, int) or max_bytes < 1:
            raise ValueError(f"StackSmallBuffers: max_bytes must be a positive int, got "
                             f"{max_bytes!r}")
        self.max_bytes = max_bytes
        self.annotated = 0

    def transform_function(self, func: tirx.PrimFunc, mod: tvm.IRModule,
                           ctx: tvm.transform.PassContext) -> tirx.PrimFunc:
        mutator = _StackMutator(self.max_bytes)
        body = mutator.visit(func.body)
        self.annotated += mutator.annotated
        return func if body is func.body else func.with_body(body)
