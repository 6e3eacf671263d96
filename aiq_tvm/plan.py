"""Per-layer precision plans, serialized as versioned JSON.

A plan maps layer names to precision names.  Keys are an exact layer name
(``"layer1.0.conv1"``), a regular expression prefixed with ``re:`` (``"re:layer3\\..*"``,
matched with :func:`re.fullmatch`), or nothing at all: the plan's ``default`` applies to
every layer no key matches.  Exact names win over patterns; patterns are tried in the order
they were given.  This follows torchao's ``FqnToConfig``.

Pure Python (no TVM import).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .schemes import get_precision

__all__ = ["Plan", "as_plan", "PLAN_FORMAT", "PLAN_VERSION"]

PLAN_FORMAT = "aiq_tvm.plan"
PLAN_VERSION = 1


@dataclass
class Plan:
    """Layer name / ``re:`` pattern -> precision, with a default.

    Parameters
    ----------
    layers : Mapping[str, str]
        Rules.  Keys are exact layer names or ``re:<pattern>``; values precision names.
    default : str
        Precision for layers no rule matches.
    metadata : dict
        Free-form provenance (search settings, AI, accuracy) kept in the JSON file.
    """

    layers: dict[str, str] = field(default_factory=dict)
    default: str = "fp32"
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.layers, Mapping):
            raise ValueError(f"Plan.layers must be a mapping, got {type(self.layers).__name__}")
        self.layers = dict(self.layers)
        get_precision(self.default)
        self._patterns: list[tuple[str, re.Pattern, str]] = []
        for key, prec in self.layers.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"plan keys must be non-empty strings, got {key!r}")
            try:
                get_precision(prec)
            except ValueError as err:
                raise ValueError(f"plan entry {key!r}: {err}") from None
            if key.startswith("re:"):
                try:
                    self._patterns.append((key, re.compile(key[3:]), prec))
                except re.error as err:
                    raise ValueError(
                        f"plan entry {key!r}: invalid regular expression: {err}") from None

    # ------------------------------------------------------------------ queries
    def precision_for(self, layer: str) -> str:
        """Precision of one layer: exact rule, else first matching pattern, else default."""
        prec = self.layers.get(layer)
        if prec is not None and not layer.startswith("re:"):
            return prec
        for _, pat, prec in self._patterns:
            if pat.fullmatch(layer):
                return prec
        return self.default

    def resolve(self, layer_names: Iterable[str]) -> dict[str, str]:
        """Concrete precision for every layer of a model.

        Raises
        ------
        ValueError
            If an exact key names a layer the model does not have, or a ``re:`` pattern
            matches none of its layers (almost always a typo); the message lists the
            model's layers.
        """
        names = list(layer_names)
        known = set(names)
        unknown = [k for k in self.layers if not k.startswith("re:") and k not in known]
        dead = [k for k, pat, _ in self._patterns if not any(pat.fullmatch(n) for n in names)]
        if unknown or dead:
            parts = []
            if unknown:
                parts.append(f"names layers the model does not have: {unknown}")
            if dead:
                parts.append(f"has patterns that match no layer: {dead}")
            raise ValueError(
                f"plan {' and '.join(parts)}; the model's layers are: {names}"
            )
        return {n: self.precision_for(n) for n in names}

    # ------------------------------------------------------------------ construction
    @classmethod
    def uniform(cls, precision: str) -> Plan:
        """Every layer at one precision."""
        return cls({}, default=precision)

    @classmethod
    def from_assignment(cls, assignment: Mapping[str, str], **metadata) -> Plan:
        """An explicit per-layer plan (what the search returns)."""
        return cls(dict(assignment), default="fp32", metadata=dict(metadata))

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        return {
            "format": PLAN_FORMAT,
            "version": PLAN_VERSION,
            "default": self.default,
            "layers": dict(self.layers),
            "metadata": self.metadata,
        }

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping) -> Plan:
        if not isinstance(data, Mapping) or data.get("format") != PLAN_FORMAT:
            raise ValueError(
                f"not an aiq_tvm plan: expected a JSON object with \"format\": \"{PLAN_FORMAT}\""
            )
        version = data.get("version")
        if version != PLAN_VERSION:
            raise ValueError(
                f"unsupported plan version {version!r}; this aiq_tvm reads version {PLAN_VERSION}"
            )
        for key, kind in (("layers", 'an object of layer -> precision, e.g. {"conv1": "int8"}'),
                          ("metadata", "an object")):
            if not isinstance(data.get(key, {}), Mapping):
                raise ValueError(f'plan "{key}" must be {kind}; got a JSON '
                                 f"{_json_kind(data[key])}")
        return cls(
            dict(data.get("layers", {})),
            default=data.get("default", "fp32"),
            metadata=dict(data.get("metadata", {})),
        )

    @classmethod
    def from_json(cls, text: str) -> Plan:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"plan is not valid JSON: {err}") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        p = Path(path)
        if p.is_dir():
            inside = " (it holds a plan.json: pass that file)" if (p / "plan.json").is_file() \
                else ""
            raise IsADirectoryError(f"plan file {str(p)!r} is a directory{inside}")
        if not p.is_file():
            raise FileNotFoundError(f"plan file {str(p)!r} does not exist")
        try:
            return cls.from_json(p.read_text())
        except ValueError as err:
            raise ValueError(f"{p}: {err}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Plan):
            return NotImplemented
        return self.layers == other.layers and self.default == other.default


def _json_kind(value) -> str:
    names = {list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number" if isinstance(value, (int, float)) else
                     type(value).__name__)


def as_plan(plan) -> Plan:
    """A :class:`Plan` from a Plan, a precision name (every layer) or a dict of plan rules."""
    if isinstance(plan, Plan):
        return plan
    if isinstance(plan, str):
        return Plan.uniform(plan)
    if isinstance(plan, Mapping):
        return Plan(dict(plan))
    raise ValueError(
        f"plan must be an aiq_tvm.Plan, a precision name or a dict, got {type(plan).__name__}"
    )
