"""Import PyTorch models into Relax with PyTorch layer names and batch norm folded.

``from_torch`` goes through ``torch.export`` and TVM's
``relax.frontend.torch.from_exported_program``.  The weights stay function parameters named
by their PyTorch state-dict keys (``layer1.0.conv1.weight``), which is how the AIQ passes
name layers (``layer1.0.conv1``), and are returned separately as numpy arrays.  Batch norm
after a convolution is folded into that convolution's weight and bias *values*; the IR keeps
``conv2d -> add(bias)`` so the layer is still recognisable and named.
"""

from __future__ import annotations

import contextlib
import copy
import warnings

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from ._ir import (
    batch_var,
    const_value,
    is_const,
    is_op,
    replace_main,
    specialize_batch,
    use_counts,
)
from .regroup_convs import regroup_convs
from .transposed_conv import transposed_conv_as_conv

__all__ = ["from_torch", "from_exported", "fold_batch_norm", "batch_var", "specialize_batch"]


def from_torch(
    model,
    example_input,
    *,
    dynamic_batch: bool = True,
    fold_bn: bool = True,
) -> tuple[tvm.IRModule, dict[str, np.ndarray]]:
    """Import a PyTorch module into a Relax IRModule plus its weights.

    Parameters
    ----------
    model : torch.nn.Module
        Exported in eval mode (batch norm with running statistics, no dropout); a model in
        training mode is switched for the export only, with a warning, and left as it was.
    example_input : torch.Tensor or numpy.ndarray
        One input batch (N x ...) with the shape the model expects.
    dynamic_batch : bool
        Export the batch dimension as a symbolic variable so one module serves every batch
        size (:func:`specialize_batch` fixes it before compilation).  If ``torch.export``
        cannot keep the batch dynamic, the module is exported with the example's batch and a
        warning says so.
    fold_bn : bool
        Fold batch norm that follows a convolution into the convolution's parameters.

    Returns
    -------
    mod : tvm.IRModule
        ``main(x, *weights)``; the weights are parameters named by their state-dict keys.
    params : dict of str to numpy.ndarray
        Values of those parameters, in signature order.
    """
    import torch

    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"from_torch expects a torch.nn.Module, got {type(model).__name__}")
    x = torch.as_tensor(np.asarray(example_input)) if not isinstance(
        example_input, torch.Tensor) else example_input
    if x.dim() < 1 or x.shape[0] < 1:
        raise ValueError(f"example_input must have a batch dimension, got shape {tuple(x.shape)}")
    from . import torch_ops

    with _eval_mode(model):
        ep = _export(model, x, dynamic_batch)
        try:
            return from_exported(ep, dynamic_batch=False, fold_bn=fold_bn)
        except torch_ops.ConversionError as err:
            if exported_input_shape(ep)[0] is not None:
                raise
            static = _export(model, x, False)
            error = err
    mod, params = from_exported(static, dynamic_batch=False, fold_bn=fold_bn)
    warnings.warn(f"{error} (with a dynamic batch); imported with a static batch of "
                  f"{x.shape[0]} instead, so the module runs that batch size only", stacklevel=2)
    return mod, params


@contextlib.contextmanager
def _eval_mode(model):
    """Eval mode for the export; every submodule's own mode is restored afterwards."""
    modes = {m: m.training for m in model.modules()}
    if any(modes.values()):
        training = [n or type(model).__name__ for n, m in model.named_modules() if m.training]
        warnings.warn(
            f"the model is in training mode ({len(training)} modules, e.g. {training[0]!r}); "
            "it is imported in eval mode (batch norm uses running statistics, dropout is off) "
            "and its mode is restored afterwards", stacklevel=4)
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode


def _export(model, x, dynamic_batch: bool):
    """torch.export with a dynamic batch when possible (else the example's batch)."""
    import torch

    ep = None
    if dynamic_batch:
        # A batch of 1 would be specialized by torch.export; trace with 2 (rows are copies).
        xd = torch.cat([x, x]) if x.shape[0] == 1 else x
        try:
            with torch.no_grad():
                ep = torch.export.export(
                    model, (xd,),
                    dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=65536)},),
                )
        except Exception as err:  # noqa: BLE001 - torch raises many types here
            warnings.warn(
                f"torch.export could not keep the batch dimension dynamic ({type(err).__name__}:"
                f" {str(err).splitlines()[0]}); exporting with static batch {x.shape[0]}",
                stacklevel=3,
            )
    if ep is None:
        with torch.no_grad():
            ep = torch.export.export(model, (x,))
    return ep


def from_exported(
    program,
    *,
    dynamic_batch: bool = True,
    fold_bn: bool = True,
) -> tuple[tvm.IRModule, dict[str, np.ndarray]]:
    """Import a ``torch.export`` program (e.g. from ``torch.export.load("model.pt2")``).

    Same naming and folding as :func:`from_torch`.  With ``dynamic_batch``, a program exported
    with a static batch is exported again from ``program.module()`` with a symbolic batch;
    when torch cannot do that, the static batch stays and a warning says so.
    """
    import torch
    from tvm.relax.frontend.torch import from_exported_program

    from . import torch_ops

    if not isinstance(program, torch.export.ExportedProgram):
        raise ValueError(f"from_exported expects a torch.export.ExportedProgram, got "
                         f"{type(program).__name__}")
    if dynamic_batch:
        program = _with_dynamic_batch(program)
    # Decompose what TVM lacks; errors name the operator and the module path.
    program = torch_ops.decompose(program)
    torch_ops.check_supported(program)
    mod = from_exported_program(program, keep_params_as_input=True,
                                unwrap_unit_return_tuple=True,
                                custom_convert_map=torch_ops.convert_map(program),
                                run_ep_decomposition=False)
    mod, params = _rename_params(mod, dict(program.graph_signature.inputs_to_parameters))
    if fold_bn:
        mod, params = fold_batch_norm(mod, params)
    return regroup_convs(*transposed_conv_as_conv(mod, params))


def _without_guards(module):
    """``program.module()`` without the shape guards ``torch.export`` baked into its graph (they
    pin the batch the program was exported with)."""
    import torch

    graph = copy.deepcopy(module.graph)
    for node in list(graph.nodes):
        if node.op == "call_module" and str(node.target).startswith("_guards") and not node.users:
            graph.erase_node(node)
    return torch.fx.GraphModule(module, graph)


def exported_input_shape(program) -> tuple:
    """Shape of an exported program's single user input (ints; symbolic dims as None)."""
    names = list(program.graph_signature.user_inputs)
    if len(names) != 1:
        raise ValueError(f"the exported program takes {len(names)} inputs ({names}); "
                         "aiq_tvm takes models with one input")
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == names[0])
    val = node.meta.get("val")
    if val is None or not hasattr(val, "shape"):
        raise ValueError(f"the exported program's input {names[0]!r} is not a tensor")
    return tuple(int(d) if isinstance(d, int) else None for d in val.shape)


def _with_dynamic_batch(program):
    import torch

    shape = exported_input_shape(program)
    if not shape or shape[0] is None or any(d is None for d in shape[1:]):
        return program
    try:
        module = _without_guards(program.module())
        x = torch.randn((shape[0], *shape[1:]), generator=torch.Generator().manual_seed(0))
        xd = torch.cat([x, x]) if shape[0] == 1 else x
        with torch.no_grad():
            dynamic = torch.export.export(
                module, (xd,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=65536)},))
            # The re-export must compute what the saved program computes.
            leaves = torch.utils._pytree.tree_leaves
            same = all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(
                leaves(dynamic.module()(x)), leaves(program.module()(x)), strict=True))
        if not same:
            raise ValueError("the re-exported program computes something else")
        return dynamic
    except Exception as err:  # noqa: BLE001 - torch raises many types here
        warnings.warn(
            f"the exported program has a static batch of {shape[0]} and torch.export could not "
            f"make it dynamic ({type(err).__name__}: {str(err).strip().splitlines()[0]}); "
            f"it runs at batch {shape[0]} only", stacklevel=3)
        return program


def _rename_params(
    mod: tvm.IRModule, placeholder_to_name: dict[str, str]
) -> tuple[tvm.IRModule, dict[str, np.ndarray]]:
    """Name weight parameters by their state-dict keys and move their values out."""
    func = mod["main"]
    num_input = int(func.attrs["num_input"])
    values = list(func.attrs["params"])
    inputs, weights = list(func.params[:num_input]), list(func.params[num_input:])
    if len(values) != len(weights):
        raise ValueError("from_exported_program returned mismatched parameters and values")
    new_vars, params = [], {}
    for var, val in zip(weights, values, strict=True):
        name = placeholder_to_name.get(var.name, var.name)
        new_vars.append(relax.Var(name, var.ty))
        params[name] = val.numpy()
    bound = func.bind_params(dict(zip(weights, new_vars, strict=True)))
    attrs = {k: v for k, v in func.attrs.items() if k != "params"}
    new_func = relax.Function(
        inputs + new_vars, bound.body, func.ret_ty, attrs=tvm.ir.make_node("ir.DictAttrs", **attrs)
    )
    return replace_main(mod, new_func), params


def _const_or_param(expr, params: dict[str, np.ndarray]) -> np.ndarray | None:
    if is_const(expr):
        return const_value(expr)
    if isinstance(expr, relax.Var) and expr.name in params:
        return params[expr.name]
    return None


@mutator
class _BatchNormFolder(PyExprMutator):
    """Replace ``batch_norm(conv)[0]`` by the (re-valued) conv, adding bias params."""

    def __init__(self, mod, plans: dict):
        super().__init__(mod)
        self.plans = plans  # id of the batch_norm tuple var -> replacement expr

    def visit_tuple_getitem_(self, op):
        tup = op.tuple_value
        if op.index == 0 and isinstance(tup, relax.Var) and tup in self.plans:
            return self.visit_expr(self.plans[tup])
        return super().visit_tuple_getitem_(op)


def fold_batch_norm(
    mod: tvm.IRModule, params: dict[str, np.ndarray]
) -> tuple[tvm.IRModule, dict[str, np.ndarray]]:
    """Fold inference batch norm into the preceding conv2d's weight and bias values.

    Handles ``batch_norm(conv2d(x, W))`` and ``batch_norm(conv2d(x, W) + reshape(b))`` where
    ``W`` (and ``b``) are parameters used nowhere else.  ``W`` keeps its IR position and gets
    scaled values; the bias becomes (or stays) a parameter named ``<layer>.bias``.  Batch norms
    that do not fit are left to ``relax.transform.DecomposeOpsForInference``.
    """
    func = mod["main"]
    params = dict(params)
    var2val = relax.analysis.get_var2val(func)
    uses = use_counts(func)
    plans, new_params = {}, []
    for tup_var, call in var2val.items():
        if not is_op(call, "relax.nn.batch_norm"):
            continue
        data, gamma, beta, mean, var = call.args
        if int(call.attrs.axis) != 1 or not isinstance(data, relax.Var) or uses.get(data, 0) != 1:
            continue
        producer = var2val.get(data)
        bias_var = None
        conv_var = data
        if is_op(producer, "relax.add"):
            lhs, rhs = producer.args
            reshape = var2val.get(rhs) if isinstance(rhs, relax.Var) else None
            if not (isinstance(lhs, relax.Var) and is_op(reshape, "relax.reshape")
                    and isinstance(reshape.args[0], relax.Var)
                    and reshape.args[0].name in params and uses.get(reshape.args[0], 0) == 1
                    and uses.get(lhs, 0) == 1 and uses.get(rhs, 0) == 1):
                continue
            bias_var, conv_var = reshape.args[0], lhs
            producer = var2val.get(lhs)
        if not is_op(producer, "relax.nn.conv2d"):
            continue
        if producer.attrs.kernel_layout != "OIHW" or producer.attrs.data_layout != "NCHW":
            continue
        w = producer.args[1]
        if not (isinstance(w, relax.Var) and w.name in params and uses.get(w, 0) == 1):
            continue
        m, v = _const_or_param(mean, params), _const_or_param(var, params)
        g, b = _const_or_param(gamma, params), _const_or_param(beta, params)
        if m is None or v is None or (g is None and call.attrs.scale) or (
            b is None and call.attrs.center
        ):
            continue
        o = params[w.name].shape[0]
        g = g if call.attrs.scale else np.ones(o, np.float32)
        b = b if call.attrs.center else np.zeros(o, np.float32)
        s = g.astype(np.float64) / np.sqrt(v.astype(np.float64) + float(call.attrs.epsilon))
        params[w.name] = (params[w.name] * s.reshape(-1, 1, 1, 1)).astype(np.float32)
        old_b = params[bias_var.name].astype(np.float64) if bias_var is not None else 0.0
        folded_b = ((old_b - m.astype(np.float64)) * s + b).astype(np.float32)
        if bias_var is not None:
            params[bias_var.name] = folded_b
            plans[tup_var] = data
        else:
            name = _bias_name(w.name, params)
            bvar = relax.Var(name, relax.TensorType((o,), "float32"))
            params[name] = folded_b
            new_params.append(bvar)
            plans[tup_var] = relax.op.add(conv_var, relax.op.reshape(bvar, (1, o, 1, 1)))
    if not plans:
        return mod, params
    body = _BatchNormFolder(mod, plans).visit_expr(func.body)
    new_func = relax.Function(list(func.params) + new_params, body, func.ret_ty, attrs=func.attrs)
    mod = replace_main(mod, new_func)
    mod = tvm.transform.Sequential(
        [relax.transform.DeadCodeElimination(), relax.transform.CanonicalizeBindings()]
    )(mod)
    mod = _drop_unused_params(mod)
    used = {p.name for p in mod["main"].params}
    return mod, {k: v for k, v in params.items() if k in used}


def _drop_unused_params(mod: tvm.IRModule) -> tvm.IRModule:
    func = mod["main"]
    num_input = int(func.attrs["num_input"]) if "num_input" in func.attrs else 1
    free = set(relax.analysis.free_vars(func.body))
    keep = list(func.params[:num_input]) + [p for p in func.params[num_input:] if p in free]
    if len(keep) == len(func.params):
        return mod
    return replace_main(mod, relax.Function(keep, func.body, func.ret_ty, attrs=func.attrs))


def _bias_name(weight_name: str, params: dict) -> str:
    base = weight_name[: -len(".weight")] if weight_name.endswith(".weight") else weight_name
    name = f"{base}.bias"
    k = 1
    while name in params:
        name, k = f"{base}.bias_{k}", k + 1
    return name
