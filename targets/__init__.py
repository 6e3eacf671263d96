"""Targets: CPU presets with roofline peaks, target resolution, and the x86 kernel library.

``resolve_target`` accepts what :func:`aiq_tvm.build` accepts: ``"llvm"`` (this machine),
a preset name, a TVM JSON target dict, or a ``tvm.target.Target``.
"""

from __future__ import annotations

import os

from .presets import PRESETS, CpuPreset, get_preset, preset_names

__all__ = [
    "CpuPreset",
    "PRESETS",
    "get_preset",
    "preset_names",
    "resolve_target",
    "host_target",
    "host_preset",
]


def _num_threads() -> int:
    env = os.environ.get("TVM_NUM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return os.cpu_count() or 1


def host_target() -> dict:
    """JSON target for this machine: LLVM's host CPU name and the thread count in use."""
    from tvm.target import codegen

    return {"kind": "llvm", "mcpu": str(codegen.llvm_get_system_cpu()),
            "num-cores": _num_threads()}


def host_preset() -> CpuPreset:
    """The measured preset of this machine if one matches its CPU and core count, else a preset
    estimated from the vector width (``source`` says so)."""
    tgt = host_target()
    for p in PRESETS.values():
        if p.target.get("mcpu") == tgt["mcpu"] and p.target.get("num-cores") == tgt["num-cores"] \
                and p.target.get("mtriple") is None:
            return p
    from tvm.target import codegen

    cores = tgt["num-cores"]
    lanes = max(int(codegen.llvm_get_vector_width(_tvm_target(tgt))) // 32, 4)
    ghz = 2.5
    fp32 = cores * ghz * 2 * lanes * 2
    return CpuPreset(
        name="host-estimated",
        description=f"this machine ({tgt['mcpu']}, {cores} threads), peaks estimated",
        target=tgt,
        peak_gflops_fp32=fp32,
        peak_gops_int8=2 * fp32,
        bandwidth_gbs=20.0,
        source="estimate (no measured preset for this CPU; run python -m "
        "aiq_tvm.targets.roofline to measure one)",
    )


def _tvm_target(spec):
    import tvm

    return tvm.target.Target(spec)


def resolve_target(target) -> tuple:
    """Turn a user target into ``(tvm.target.Target, CpuPreset)``.

    Parameters
    ----------
    target : str, dict or tvm.target.Target
        ``"llvm"`` (this machine), a preset name (see :func:`preset_names`), a TVM JSON
        target dict, or a ``tvm.target.Target``.

    Raises
    ------
    ValueError
        If TVM rejects the target; the message lists the accepted forms and preset names.
    """
    import tvm

    valid = (
        f"'llvm' (this machine), a preset name ({', '.join(PRESETS)}), a JSON dict such as "
        "{'kind': 'llvm', 'mcpu': 'znver4', 'num-cores': 2}, or a tvm.target.Target"
    )
    if isinstance(target, tvm.target.Target):
        tgt = target
    elif isinstance(target, str):
        if target == "llvm":
            preset = host_preset()
            return _tvm_target(host_target()), preset
        if target in PRESETS:
            preset = PRESETS[target]
            return _tvm_target(preset.target), preset
        raise ValueError(f"unknown target {target!r}; valid targets: {valid}")
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
    for p in PRESETS.values():
        if p.target.get("mcpu") == mcpu:
            return tgt, p
    return tgt, host_preset()
