"""The command line's MODEL argument: a shipped name, ``torchvision:<name>``, a ``.pt2`` file
from ``torch.export.save`` or an ``.onnx`` file, imported into Relax.

    model = load_model("torchvision:mobilenet_v2", input_shape=(3, 64, 64))
    model.mod, model.params          # what aiq_tvm.build takes
    model.input_shape                # (C, H, W), batch excluded
    model.num_outputs                # classes of the logits output

Every error is a :class:`SourceError` (a ``ValueError``) whose message says in one line what
is wrong and what would be accepted.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SHIPPED_MODELS", "SourceError", "LoadedModel", "load_model", "model_kind",
           "parse_shape", "torch_module"]

SHIPPED_MODELS = ("resnet20", "mobilenet_v2")
# torchvision classifiers take any spatial size; without --input-shape they get ImageNet's.
TORCHVISION_DEFAULT_SHAPE = (3, 224, 224)
_SHIPPED_SHAPE = (3, 32, 32)


class SourceError(ValueError):
    """A MODEL or DATA argument that cannot be used (the message names the problem)."""


@dataclass
class LoadedModel:
    """A model imported into Relax, and what the CLI needs to know about it."""

    spec: str
    kind: str  # "shipped" | "torchvision" | "pt2" | "onnx"
    mod: object = field(repr=False)
    params: dict = field(repr=False)
    input_shape: tuple[int, ...]
    num_outputs: int
    weights: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """A short name for file names and titles."""
        if self.kind in ("shipped", "torchvision"):
            return self.spec.split(":", 1)[-1]
        return Path(self.spec).stem

    def describe(self) -> dict:
        return {"spec": self.spec, "kind": self.kind, "input_shape": list(self.input_shape),
                "num_outputs": self.num_outputs, "weights": self.weights,
                "weight_tensors": len(self.params), "notes": list(self.notes)}


def parse_shape(text: str) -> tuple[int, ...]:
    """``"3,224,224"`` (or ``3x224x224``) -> ``(3, 224, 224)``."""
    parts = str(text).strip().replace("x", ",").split(",")
    try:  # every part an integer: "3,x" or "3,,28" are errors, not (3,) or (3, 28)
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if not dims or any(d < 1 for d in dims):
        raise SourceError(f"input shape must be positive integers like 3,224,224 (C,H,W, no "
                          f"batch), got {text!r}")
    return dims


def model_kind(spec: str) -> str:
    """Which MODEL form ``spec`` is (without loading it)."""
    if spec in SHIPPED_MODELS:
        return "shipped"
    if spec.startswith("torchvision:"):
        return "torchvision"
    suffix = Path(spec).suffix.lower()
    if suffix == ".pt2":
        return "pt2"
    if suffix == ".onnx":
        return "onnx"
    raise SourceError(
        f"unknown MODEL {spec!r}; give a shipped name ({', '.join(SHIPPED_MODELS)}), "
        "torchvision:<name>, a .pt2 file from torch.export.save or an .onnx file")


def load_model(spec: str, *, weights: str | None = None,
               input_shape: tuple[int, ...] | None = None) -> LoadedModel:
    """Import MODEL ``spec`` (see the module docstring).

    ``weights`` is a state dict (``torch.save(model.state_dict(), path)``) for a shipped or
    torchvision model; ``input_shape`` (C, H, W) fixes dimensions the model leaves open.
    """
    kind = model_kind(spec)
    if weights is not None and kind not in ("shipped", "torchvision"):
        raise SourceError(f"--weights applies to shipped and torchvision models; {spec} "
                          "carries its own weights")
    if weights is not None and not Path(weights).is_file():
        raise SourceError(f"weights file {weights!r} does not exist")
    if kind in ("shipped", "torchvision"):
        return _load_torch(spec, kind, weights, input_shape)
    if not Path(spec).is_file():
        raise SourceError(f"model file {spec!r} does not exist")
    return _load_pt2(spec, input_shape) if kind == "pt2" else _load_onnx(spec, input_shape)


def torch_module(spec: str, weights: str | None = None):
    """The PyTorch module of a shipped, torchvision or ``.pt2`` MODEL (eval mode), or None for
    an ONNX file."""
    kind = model_kind(spec)
    if kind == "onnx":
        return None
    if kind == "pt2":
        import torch

        from .frontend import _without_guards

        return _without_guards(torch.export.load(spec).module())
    return _torch_model(spec, kind, weights)[0]


# ----------------------------------------------------------------------------- loaders
def _torch_model(spec: str, kind: str, weights: str | None):
    """(module in eval mode, notes)."""
    import torch

    notes = []
    if kind == "shipped":
        from . import models

        model = models.get_model(spec, pretrained=weights is None)
        notes.append("shipped weights" if weights is None else f"weights from {weights}")
    else:
        import torchvision

        name = spec.split(":", 1)[1]
        valid = torchvision.models.list_models(module=torchvision.models)
        if name not in valid:
            raise SourceError(f"unknown torchvision classifier {name!r}; valid: "
                              f"{', '.join(valid)}")
        state = _state_dict(weights) if weights else None
        kwargs = {"num_classes": _num_classes(state)} if state else {}
        torch.manual_seed(0)  # the same random weights in every process (search, bench)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # aux-logits / init notices of some models
            model = torchvision.models.get_model(name, weights=None, **kwargs)
        notes.append("random initialization (no --weights)" if weights is None
                     else f"weights from {weights}")
    if weights is not None:
        state = _state_dict(weights)
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise SourceError(f"{weights} does not fit {spec}: "
                              f"{_state_mismatch(model.state_dict(), state, err)}") from None
    model.eval()
    return model, notes


def _state_mismatch(expected: dict, given: dict, err: Exception, show: int = 3) -> str:
    """One short line on how a state dict differs from the model's (torch lists every key)."""
    def some(keys):
        return ", ".join(repr(k) for k in keys[:show]) + (", ..." if len(keys) > show else "")

    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    resized = [k for k in expected if k in given
               and tuple(expected[k].shape) != tuple(given[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} of the model's {len(expected)} keys missing "
                     f"({some(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} keys the model does not have ({some(unexpected)})")
    parts += [f"{k!r} is {tuple(given[k].shape)} in the file but {tuple(expected[k].shape)} "
              f"in the model" for k in resized[:show]]
    if len(resized) > show:
        parts.append(f"{len(resized) - show} more keys of other shapes")
    return "; ".join(parts) if parts else _first_line(err)


def _state_dict(path: str) -> dict:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - pickle/zip errors of many kinds
        raise SourceError(f"{path} is not a PyTorch state dict ({type(err).__name__}: "
                          f"{str(err).strip().splitlines()[0] if str(err).strip() else ''})"
                          ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"],
                                                                         dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise SourceError(f"{path} is not a state dict (torch.save(model.state_dict(), path))")
    return state


def _num_classes(state: dict) -> int:
    """Classes of a classifier state dict: the rows of its last 2-D weight."""
    mats = [v for k, v in state.items() if k.endswith("weight") and getattr(v, "ndim", 0) == 2]
    if not mats:
        raise SourceError("the weights file has no classifier (no 2-D weight)")
    return int(mats[-1].shape[0])


def _load_torch(spec, kind, weights, input_shape) -> LoadedModel:
    import torch

    from .frontend import from_torch

    model, notes = _torch_model(spec, kind, weights)
    default = _SHIPPED_SHAPE if kind == "shipped" else TORCHVISION_DEFAULT_SHAPE
    shape = tuple(input_shape) if input_shape is not None else default
    if kind == "shipped" and shape != _SHIPPED_SHAPE:
        raise SourceError(f"{spec} is trained on {_fmt(_SHIPPED_SHAPE)} inputs; "
                          f"--input-shape {_fmt(shape)} does not fit it")
    x = torch.zeros((2, *shape))
    # Warnings of an import that then fails (e.g. "could not keep the batch dimension dynamic"
    # before a channel mismatch) would print above the one error line: held back until it works.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            mod, params = from_torch(model, x)
        except (RuntimeError, ValueError, AssertionError) as err:
            raise SourceError(f"{spec} cannot be imported with input shape {_fmt(shape)}: "
                              f"{_first_line(err)}") from None
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return _loaded(spec, kind, mod, params, weights, notes)


def _load_pt2(spec, input_shape) -> LoadedModel:
    import torch

    from .frontend import exported_input_shape, from_exported

    try:
        program = torch.export.load(spec)
    except Exception as err:  # noqa: BLE001 - zip/pickle/version errors
        raise SourceError(f"{spec} is not a torch.export program ({type(err).__name__}: "
                          f"{_first_line(err)})") from None
    shape = exported_input_shape(program)
    if input_shape is not None and tuple(input_shape) != tuple(shape[1:]):
        raise SourceError(f"{spec} was exported for inputs {_fmt(shape[1:])}; --input-shape "
                          f"{_fmt(input_shape)} does not match (export it again to change it)")
    mod, params = from_exported(program)
    notes = [] if _dynamic(mod) else [f"static batch {shape[0]} (the program fixes it)"]
    return _loaded(spec, "pt2", mod, params, None, notes)


def _load_onnx(spec, input_shape) -> LoadedModel:
    from .onnx_frontend import from_onnx

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mod, params = from_onnx(spec, input_shape=input_shape)
    notes = [str(w.message) for w in caught if "batch" in str(w.message)]
    return _loaded(spec, "onnx", mod, params, None, notes)


def _loaded(spec, kind, mod, params, weights, notes) -> LoadedModel:
    func = mod["main"]
    shape = tuple(int(d) for d in list(func.params[0].ty.shape)[1:])
    return LoadedModel(spec=spec, kind=kind, mod=mod, params=params, input_shape=shape,
                       num_outputs=_num_outputs(spec, func), weights=weights, notes=notes)


def _num_outputs(spec: str, func) -> int:
    from tvm import relax

    ret = func.ret_ty
    if isinstance(ret, relax.TupleType):
        raise SourceError(f"{spec} returns {len(ret.fields)} outputs; aiq-tvm needs a "
                          "classifier with one logits output")
    shape = getattr(ret, "shape", None)
    if shape is None or len(shape) != 2:
        dims = "unknown" if shape is None else _fmt(shape)
        raise SourceError(f"{spec} returns a tensor of shape {dims}; aiq-tvm needs "
                          "classifier logits of shape (batch, classes)")
    return int(shape[1])


def _dynamic(mod) -> bool:
    from .frontend import batch_var

    return batch_var(mod) is not None


def _fmt(shape) -> str:
    return "x".join(str(d) for d in shape)


def _first_line(err) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
