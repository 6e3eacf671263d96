"""ResidualInPlace: a layer kernel's output written over its dead shortcut. Which calls it
rewrites (and which it must leave: a shortcut read later, a view of it, the caller's input, a
kernel that reads its output back), and ResNet-like torch models end to end at FP32 and int8,
against torch and against the same build without the pass, bit for bit."""

import re

import numpy as np
import pytest
import torch
import tvm
from torch import nn
from tvm import relax, te
from tvm.relax.backend.cpu_generic import pipeline as cpu_pipeline

import aiq_tvm
import aiq_tvm.pipeline as pipeline
from aiq_tvm.passes import ResidualInPlace
from aiq_tvm.passes.residual_in_place import residual_index

SHAPE = (1, 4, 4, 8)
T = relax.TensorType(SHAPE, "float32")


def _kernel(name: str, residual: bool = True, two_stage: bool = False) -> tvm.tirx.PrimFunc:
    """y = 2 x (+ residual): the shape of a layer kernel's epilogue. ``two_stage`` computes
    it into a buffer that a second block copies to y (y's writer does not read the
    residual: an element of it could be read after y overwrote it)."""
    x = te.placeholder(SHAPE, "float32", name="x")
    r = te.placeholder(SHAPE, "float32", name="residual") if residual else None
    y = te.compute(SHAPE, lambda *i: x(*i) * 2.0 + (r(*i) if r is not None else 0.0), name="y")
    params = [x] + ([r] if r is not None else []) + [y]
    func = te.create_prim_func(params)
    if two_stage:
        sch = tvm.s_tir.Schedule(func)
        sch.cache_write(sch.get_sblock("y"), 0, "global")
        func = sch.mod["main"]
    return func.with_attr("global_symbol", name)


def _vm_form(build_main, kernels: dict) -> tvm.IRModule:
    """A module whose ``main`` ``build_main`` writes (with ``kernels`` added), lowered to the
    form ResidualInPlace reads (explicit kernel calls into allocated outputs)."""
    bb = relax.BlockBuilder()
    gvs = {name: bb.add_func(func, name) for name, func in kernels.items()}
    x = relax.Var("x", T)
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(build_main(bb, gvs, x))
        bb.emit_func_output(out)
    seq = tvm.transform.Sequential(cpu_pipeline.dataflow_lower_passes(None))
    return seq(bb.get())


def _calls(mod: tvm.IRModule) -> list[tuple[str, list[str]]]:
    """(kernel, argument names) of every kernel call in ``main``, in order."""
    calls = []

    def visit(e):
        if isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.GlobalVar):
            calls.append((e.op.name_hint, [str(a) for a in e.args]))

    relax.analysis.post_order_visit(mod["main"].body, visit)
    return calls


def _aliases(mod: tvm.IRModule) -> dict:
    """Variable -> the allocation it names (``lv = alloc`` after CallTIRRewrite)."""
    root = {}
    for block in mod["main"].body.blocks:
        for b in block.bindings:
            if isinstance(b.value, relax.Var):
                root[str(b.var)] = root.get(str(b.value), str(b.value))
    return root


def _in_place(mod: tvm.IRModule) -> list[str]:
    """Kernels called with their output over their residual (the argument before it)."""
    root = _aliases(mod)
    return [k for k, args in _calls(mod)
            if len(args) > 2 and root.get(args[-2], args[-2]) == root.get(args[-1], args[-1])]


def _stem_then_residual(bb, gvs, x):
    s = bb.emit(relax.call_tir(gvs["stem"], [x], T))           # the shortcut: a kernel's output
    a = bb.emit(relax.call_tir(gvs["stem"], [s], T))           # the block reads it ...
    return bb.emit(relax.call_tir(gvs["block"], [a, s], T))    # ... and adds it last


def test_output_takes_the_dead_shortcut_and_chains():
    kernels = {"stem": _kernel("stem", residual=False), "block": _kernel("block")}

    def two_blocks(bb, gvs, x):
        y = _stem_then_residual(bb, gvs, x)
        a = bb.emit(relax.call_tir(gvs["stem"], [y], T))
        z = bb.emit(relax.call_tir(gvs["block"], [a, y], T))   # y: written in place itself
        # (a returned tensor keeps its own memory: the function's result is never a shortcut's)
        return bb.emit(relax.call_tir(gvs["stem"], [z], T))

    before = _vm_form(two_blocks, kernels)
    after = ResidualInPlace(min_bytes=0)(before)
    assert _in_place(before) == []
    assert _in_place(after) == ["block", "block"]
    # both blocks write over the stem's first output
    root = _aliases(after)
    outs = [root.get(args[-1], args[-1]) for k, args in _calls(after)]
    assert outs[0] == outs[2] == outs[4] != outs[5]
    assert "tirx.noalias" not in after["block"].attrs and "tirx.noalias" in after["stem"].attrs


@pytest.mark.parametrize("case", ["read_later", "returned", "input", "view", "two_stage"])
def test_shortcuts_still_read_are_left_alone(case):
    kernels = {"stem": _kernel("stem", residual=False),
               "block": _kernel("block", two_stage=case == "two_stage")}

    def main(bb, gvs, x):
        if case == "input":  # the caller's tensor is never written
            a = bb.emit(relax.call_tir(gvs["stem"], [x], T))
            return bb.emit(relax.call_tir(gvs["block"], [a, x], T))
        s = bb.emit(relax.call_tir(gvs["stem"], [x], T))
        if case == "view":  # a reshape of the shortcut is read after the block
            v = bb.emit(relax.op.reshape(s, (1, 128)))
            a = bb.emit(relax.call_tir(gvs["stem"], [s], T))
            y = bb.emit(relax.call_tir(gvs["block"], [a, s], T))
            return bb.emit(relax.Tuple([y, v]))
        y = bb.emit(relax.call_tir(gvs["block"], [bb.emit(relax.call_tir(gvs["stem"], [s], T)),
                                                  s], T))
        if case == "read_later":
            z = bb.emit(relax.call_tir(gvs["block"], [y, s], T))
            return bb.emit(relax.call_tir(gvs["stem"], [z], T))
        if case == "returned":
            return bb.emit(relax.Tuple([y, s]))
        return y  # two_stage: the kernel is not eligible

    before = _vm_form(main, kernels)
    after = ResidualInPlace(min_bytes=0)(before)
    expect = ["block"] if case == "read_later" else []  # only its last reader may write over s
    assert _in_place(after) == expect
    if not expect:
        tvm.ir.assert_structural_equal(after, before)


def test_shortcuts_the_l2_holds_are_left_alone():
    kernels = {"stem": _kernel("stem", residual=False), "block": _kernel("block")}
    before = _vm_form(lambda bb, gvs, x: bb.emit(relax.call_tir(
        gvs["stem"], [_stem_then_residual(bb, gvs, x)], T)), kernels)
    nbytes = int(np.prod(SHAPE)) * 4
    assert _in_place(ResidualInPlace(min_bytes=nbytes - 1)(before)) == ["block"]
    assert _in_place(ResidualInPlace(min_bytes=nbytes)(before)) == []
    with tvm.target.Target({"kind": "llvm", "mcpu": "haswell"}):  # any L2 holds 512 bytes
        assert _in_place(ResidualInPlace()(before)) == []


def test_eligible_kernels():
    assert residual_index(_kernel("k")) == 1
    assert residual_index(_kernel("k", residual=False)) is None
    assert residual_index(_kernel("k", two_stage=True)) is None


class _Blocks(nn.Module):
    """Two identity-shortcut blocks after a stem, then a block whose shortcut is read again
    after it (the sum of both), then a classifier."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU())
        self.a = nn.ModuleList(nn.Conv2d(16, 16, 3, padding=1) for _ in range(3))
        self.b = nn.ModuleList(nn.Conv2d(16, 16, 1) for _ in range(3))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        for i in range(2):
            x = torch.relu(self.b[i](torch.relu(self.a[i](x))) + x)
        y = torch.relu(self.b[2](torch.relu(self.a[2](x))) + x)
        return self.fc((y + x).mean((2, 3)))


def _kernel_calls_in_place(res, batch: int) -> int:
    n = 0
    for line in res.run_executable(batch).as_text().splitlines():
        m = re.search(r"call\s+(\S+)\s+in: (.*) dst", line)
        if m:
            regs = [a.strip() for a in m.group(2).split(",")]
            n += len(regs) > 2 and regs[-1] == regs[-2]
    return n


# int8: the second block's output is float32 (the third block's sum reads it), its shortcut
# a uint8 code: different dtypes, no in-place write.
@pytest.mark.parametrize("plan,in_place", [("fp32", 2), ("int8", 1)])
def test_resnet_blocks_match_the_build_without_the_pass(plan, in_place, monkeypatch):
    torch.manual_seed(0)
    model = _Blocks().eval()
    x = torch.randn(8, 3, 12, 12)
    mod, params = aiq_tvm.from_torch(model, x[:2])
    kw = dict(params=params, plan=plan, batch_size=4)
    if plan == "int8":
        kw["calib_data"] = x.numpy()
    # these shortcuts (36 KB) stay in any L2: rewritten only with the size floor lowered
    assert _kernel_calls_in_place(aiq_tvm.build(mod, "llvm", **kw), 4) == 0
    monkeypatch.setattr(pipeline, "ResidualInPlace", lambda *a: ResidualInPlace(min_bytes=0))
    res = aiq_tvm.build(mod, "llvm", **kw)
    got = res.run(x[:4].numpy())
    assert _kernel_calls_in_place(res, 4) == in_place  # not the third: its shortcut is read after
    monkeypatch.setattr(pipeline, "ResidualInPlace",
                        lambda *a: tvm.transform.module_pass(lambda m, _: m, opt_level=0))
    plain = aiq_tvm.build(mod, "llvm", **kw)
    assert _kernel_calls_in_place(plain, 4) == 0
    np.testing.assert_array_equal(got, plain.run(x[:4].numpy()))
    if plan == "fp32":
        with torch.no_grad():
            np.testing.assert_allclose(got, model(x[:4]).numpy(), rtol=1e-4, atol=1e-4)
