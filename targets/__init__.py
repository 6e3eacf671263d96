"""Targets: CPU presets with roofline peaks, target resolution, and the x86 kernel library.

``resolve_target`` accepts what :func:`aiq_tvm.build` accepts: ``"llvm"`` (this machine),
a preset name, a TVM JSON target dict, or a ``tvm.target.Target``.
"""

from __future__ import annotations

from .capabilities import TargetCaps, capabilities, host_features, thread_count
from .defaults import default_precisions, int8_pays
from .presets import (
    PRESETS,
    CpuPreset,
    estimate_preset,
    get_preset,
    preset_names,
    select_preset,
)

__all__ = [
    "TargetCaps",
    "capabilities",
    "host_features",
    "parse_target_string",
    "CpuPreset",
    "PRESETS",
    "get_preset",
    "preset_names",
    "resolve_target",
    "current_target",
    "host_target",
    "host_preset",
    "select_preset",
    "estimate_preset",
    "default_precisions",
    "int8_pays",
]


def _num_threads() -> int:
    return thread_count()[0]


# Features host_target() adds where LLVM's name for this machine's CPU lacks them.
HOST_ONLY_FEATURES = ("amx-tile", "amx-int8")


def host_target() -> dict:
    """JSON target for this machine: LLVM's host CPU name and the thread count in use.

    Features LLVM's CPU model has but this machine does not execute (masked by a hypervisor)
    are switched off with ``mattr``, so code built for "this machine" runs on it.
    """
    import tvm
    from tvm.target import codegen

    spec = {"kind": "llvm", "mcpu": str(codegen.llvm_get_system_cpu()),
            "num-cores": _num_threads()}
    caps = capabilities(tvm.target.Target(spec))
    # LLVM names a virtual machine's CPU from its CPUID model, which may lack features the
    # machine executes: AMX on a Sapphire Rapids guest that LLVM calls "rocketlake". Those
    # with a kernel of their own are switched on; features the host lacks are switched off.
    extra = [f for f in HOST_ONLY_FEATURES if f in host_features() and f not in caps.features]
    mattr = [f"-{f}" for f in caps.missing_on_host] + [f"+{f}" for f in extra]
    if mattr:
        spec["mattr"] = mattr
    return spec


def parse_target_string(text: str) -> dict:
    """Turn TVM's classic target string (``"llvm -mtriple=aarch64-linux-gnu -mattr=+neon"``)
    into the JSON dict TVM 0.27 takes.

    Raises
    ------
    ValueError
        For a kind other than ``llvm`` or an option that is not ``-key=value``.
    """
    words = text.split()
    if not words or words[0] != "llvm":
        raise ValueError(f"target string {text!r} must start with 'llvm' (aiq_tvm builds for "
                         "CPUs)")
    spec: dict = {"kind": "llvm"}
    for word in words[1:]:
        key, eq, value = word.lstrip("-").partition("=")
        if not word.startswith("-") or not eq or not key or not value:
            raise ValueError(f"target string {text!r}: option {word!r} is not of the form "
                             "-key=value (e.g. -mcpu=haswell, -mattr=+neon,+dotprod)")
        if key == "mattr":
            spec[key] = value.split(",")
        elif key == "num-cores":
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"target string {text!r}: num-cores must be a positive "
                                 f"integer, got {value!r}")
            spec[key] = int(value)
        else:
            spec[key] = value
    return spec


def host_preset() -> CpuPreset:
    """The preset that fits this machine (see :func:`select_preset`)."""
    return select_preset(capabilities(_tvm_target(host_target())))


def _tvm_target(spec):
    import tvm

    return tvm.target.Target(spec)


def _json_target(text: str, valid: str) -> dict:
    import json

    try:
        spec = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"target {text!r} is not valid JSON ({err}); valid targets: {valid}"
                         ) from None
    return spec


def resolve_target(target) -> tuple:
    """Turn a user target into ``(tvm.target.Target, CpuPreset)``.

    A preset name gives that preset; any other target gets :func:`select_preset` of its
    capabilities (same ISA level, core count scaled, or estimated with its assumptions listed).

    Parameters
    ----------
    target : str, dict or tvm.target.Target
        ``"llvm"`` (this machine), a preset name (see :func:`preset_names`), a TVM JSON
        target dict (or its JSON text, as the CLI's ``--target`` passes it), a classic target
        string (``"llvm -mtriple=aarch64-linux-gnu -mattr=+neon,+dotprod"``), or a
        ``tvm.target.Target``.

    Raises
    ------
    ValueError
        If TVM rejects the target; the message lists the accepted forms and preset names.
    """
    import tvm

    valid = (
        f"'llvm' (this machine), a preset name ({', '.join(PRESETS)}), a JSON dict such as "
        "{'kind': 'llvm', 'mcpu': 'znver4', 'num-cores': 2} (or its JSON text), a target "
        "string such as 'llvm -mcpu=haswell -num-cores=4', or a tvm.target.Target"
    )
    if isinstance(target, str):
        if target == "llvm":
            tgt = _tvm_target(host_target())
            return tgt, select_preset(capabilities(tgt))
        if target in PRESETS:
            preset = PRESETS[target]
            return _tvm_target(preset.target), preset
        if target.lstrip().startswith("{"):  # a JSON dict as text (the CLI's --target)
            return resolve_target(_json_target(target, valid))
        if not target.startswith("llvm "):
            raise ValueError(f"unknown target {target!r}; valid targets: {valid}")
        target = parse_target_string(target)
    if isinstance(target, tvm.target.Target):
        tgt = target
    elif isinstance(target, dict):
        try:
            tgt = _tvm_target(target)
        except Exception as err:  # noqa: BLE001 - TVM raises several error types
            raise ValueError(f"TVM rejected target {target!r}: {err}; valid targets: {valid}"
                             ) from None
    else:
        raise ValueError(f"target must be a str, dict or tvm.target.Target, got "
                         f"{type(target).__name__}; valid targets: {valid}")
    if tgt.kind.name != "llvm":
        raise ValueError(f"aiq_tvm builds for CPU (kind 'llvm'), got kind {tgt.kind.name!r}")
    mcpu = str(tgt.attrs.get("mcpu", "")) if hasattr(tgt, "attrs") else ""
    if mcpu:
        # TVM accepts any mcpu string and LLVM silently falls back to a generic CPU.
        from tvm.target import codegen

        triple = str(tgt.attrs.get("mtriple", "")) or str(codegen.llvm_get_system_triple())
        if not codegen.llvm_is_valid_cpu(mcpu, triple):
            raise ValueError(f"LLVM does not know mcpu {mcpu!r} for {triple}; valid targets: "
                             f"{valid}")
    return tgt, select_preset(capabilities(tgt))


def current_target(target=None):
    """The ``tvm.target.Target`` a pass compiles for: ``target`` resolved like
    :func:`resolve_target`, else the target ``tvm.compile`` (or ``with target:``) put in scope.

    Raises
    ------
    ValueError
        When neither is given.
    """
    import tvm

    if target is not None:
        return resolve_target(target)[0]
    cur = tvm.target.Target.current(allow_none=True)
    if cur is None:
        raise ValueError(
            "no target: pass target= to the pass or run it inside tvm.compile / `with target:`"
        )
    return cur
