"""Buffers left on TVM workspaces (above the pass's 4 KiB), with the loops around each
allocation: one inside a serial loop is allocated and freed per iteration."""
import os, sys, numpy as np, torch, collections
sys.path.insert(0, "/work/main/scripts")
import aiq_tvm, tvm
from tvm import tirx
import aiq_tvm.passes.stack_small_buffers as ssb
from profile_layers import _model_and_calibration
name, plan, bs = sys.argv[1], sys.argv[2], int(sys.argv[3])
target = sys.argv[4] if len(sys.argv) > 4 else "llvm"
log = collections.Counter()
orig_visit = ssb._StackMutator.visit
def visit(self, stmt, _loops=[]):
    if isinstance(stmt, tirx.AllocBuffer):
        size = ssb.constant_bytes(stmt.buffer)
        if size is None or size > self.max_bytes:
            log[(stmt.buffer.name, str(stmt.buffer.dtype), size, tuple(_loops))] += 1
        return orig_visit(self, stmt)
    if isinstance(stmt, tirx.For):
        _loops.append(f"{tirx.ForKind(int(stmt.kind)).name.lower()}{stmt.extent}")
        try:
            body = visit(self, stmt.body)
        finally:
            _loops.pop()
        return stmt if body is stmt.body else tirx.For(stmt.loop_var, stmt.min, stmt.extent, stmt.kind, body, stmt.thread_binding, stmt.annotations, stmt.step, stmt.span)
    if isinstance(stmt, tirx.SeqStmt):
        seq = [visit(self, s) for s in stmt.seq]
        return stmt if all(a is b for a, b in zip(seq, stmt.seq)) else tirx.SeqStmt(seq, stmt.span)
    if isinstance(stmt, (tirx.AttrStmt, tirx.While)):
        body = visit(self, stmt.body)
        if body is stmt.body: return stmt
        return tirx.AttrStmt(stmt.node, stmt.attr_key, stmt.value, body, stmt.span) if isinstance(stmt, tirx.AttrStmt) else tirx.While(stmt.condition, body, stmt.span)
    if isinstance(stmt, tirx.IfThenElse):
        t = visit(self, stmt.then_case); e = None if stmt.else_case is None else visit(self, stmt.else_case)
        return stmt if (t is stmt.then_case and e is stmt.else_case) else tirx.IfThenElse(stmt.condition, t, e, stmt.span)
    return orig_visit(self, stmt)
ssb._StackMutator.visit = visit
model, calib = _model_and_calibration(name, 224 if name.startswith("tv/") else 32, 32)
calib = np.asarray(calib)
mod, params = aiq_tvm.from_torch(model, torch.from_numpy(calib[:2]))
log.clear()
res = aiq_tvm.build(mod, target, params=params, plan=plan, calib_data=calib, micro_batch=None, batch_size=bs)
for k, v in sorted(log.items(), key=lambda t: -t[1]): print(v, k)
