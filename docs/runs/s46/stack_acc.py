"""Experiment: small constant-size CPU buffers (register-block accumulators of exactly 1 KiB)
kept on the stack: AllocBuffer annotated 'disable_lower_builtin' before LowerTVMBuiltin."""
import numpy as np, tvm
from tvm import tirx
from tvm.tirx import compilation_pipeline as cp
MAX = 4096

def _size(buf):
    n = 1
    for d in buf.shape:
        if not isinstance(d, tvm.tirx.IntImm): return None
        n *= int(d)
    dt = tvm.runtime.DataType(str(buf.dtype))
    return n * dt.bits * dt.lanes // 8

def rebuild(s):
    if isinstance(s, tirx.AllocBuffer):
        size = _size(s.buffer)
        scope = s.buffer.scope()
        if size is not None and size <= MAX and scope == "global" and "disable_lower_builtin" not in s.annotations:
            ann = dict(s.annotations); ann["disable_lower_builtin"] = tvm.tirx.IntImm("bool", 1)
            return tirx.AllocBuffer(s.buffer, annotations=ann), True
        return s, False
    if isinstance(s, tirx.SeqStmt):
        out = [rebuild(c) for c in s.seq]
        if any(ch for _, ch in out): return tirx.SeqStmt([c for c, _ in out], s.span), True
        return s, False
    if isinstance(s, tirx.For):
        b, ch = rebuild(s.body)
        if ch: return tirx.For(s.loop_var, s.min, s.extent, s.kind, b, s.thread_binding, s.annotations, s.step, s.span), True
        return s, False
    if isinstance(s, tirx.AttrStmt):
        b, ch = rebuild(s.body)
        if ch: return tirx.AttrStmt(s.node, s.attr_key, s.value, b, s.span), True
        return s, False
    if isinstance(s, tirx.IfThenElse):
        t, c1 = rebuild(s.then_case)
        e, c2 = rebuild(s.else_case) if s.else_case is not None else (None, False)
        if c1 or c2: return tirx.IfThenElse(s.condition, t, e, s.span), True
        return s, False
    return s, False

@tirx.transform.prim_func_pass(opt_level=0)
def StackSmallBuffers(func, mod, ctx):
    body, ch = rebuild(func.body)
    return func.with_body(body) if ch else func

def factory(**kw):
    pipe, fh, fd = cp.get_tir_pipeline("s_tir", **kw)
    def fh2():
        return tvm.ir.transform.Sequential([StackSmallBuffers, fh()])
    return pipe, fh2, fd
cp.register_tir_pipeline("aiq_stack", factory)
