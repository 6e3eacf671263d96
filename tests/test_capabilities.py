"""Target capability object: ISA level, vector width and int8 path come from the target."""

import pytest

from aiq_tvm.targets import capabilities, parse_target_string, resolve_target
from aiq_tvm.targets.capabilities import host_features


@pytest.mark.parametrize(
    "target,isa,bits,dot",
    [
        ({"kind": "llvm", "mcpu": "znver4"}, "avx512_vnni", 512, "vpdpbusd"),
        ({"kind": "llvm", "mcpu": "skylake-avx512"}, "avx512bw", 512, "vpmaddubsw"),
        ({"kind": "llvm", "mcpu": "alderlake"}, "avx_vnni", 256, "vpdpbusd"),
        ({"kind": "llvm", "mcpu": "haswell"}, "avx2", 256, "vpmaddubsw"),
        ({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}, "neon", 128,
         "smull"),
        ({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon", "+dotprod"]},
         "neon_dotprod", 128, "sdot"),
        ({"kind": "llvm", "mtriple": "aarch64-linux-gnu",
          "mattr": ["+neon", "+dotprod", "+i8mm"]}, "neon_i8mm", 128, "smmla"),
    ],
)
def test_isa_level_from_target_features(target, isa, bits, dot):
    caps = capabilities(target)
    assert (caps.isa, caps.vector_bits, caps.int8_dot) == (isa, bits, dot)
    assert caps.lanes32 == bits // 32
    assert caps.vector_registers == (16 if bits == 256 else 32)


def test_cores_come_from_the_target_or_are_flagged_as_assumed():
    assert capabilities({"kind": "llvm", "mcpu": "haswell", "num-cores": 16}).cores == 16
    arm = capabilities({"kind": "llvm", "mtriple": "aarch64-linux-gnu"})
    assert not arm.host_runnable or arm.arch == "aarch64"
    if not arm.host_runnable:
        assert arm.cores_source.startswith("assumed")


def test_host_target_runs_here():
    tgt, _ = resolve_target("llvm")
    caps = capabilities(tgt)
    assert caps.host_runnable and not caps.missing_on_host
    assert caps.features <= host_features() | {"neon"}


def test_classic_target_strings_parse():
    assert parse_target_string("llvm -mtriple=aarch64-linux-gnu -mattr=+neon,+dotprod") == {
        "kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon", "+dotprod"]}
    tgt, _ = resolve_target("llvm -mcpu=haswell -num-cores=4")
    assert str(tgt.attrs["mcpu"]) == "haswell" and int(tgt.attrs["num-cores"]) == 4
    with pytest.raises(ValueError, match="-key=value"):
        parse_target_string("llvm -mcpu")
    with pytest.raises(ValueError, match="num-cores"):
        parse_target_string("llvm -num-cores=zero")


def test_json_target_text_resolves():
    """The CLI passes --target as text: a JSON dict resolves like the dict itself."""
    text = '{"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon", "+dotprod"]}'
    tgt, preset = resolve_target(text)
    assert capabilities(tgt).isa == "neon_dotprod" and preset.isa == "neon_dotprod"
    with pytest.raises(ValueError, match="not valid JSON"):
        resolve_target('{"kind": "llvm",')


def _fake_caches(root, entries):
    for i, (level, kind, size) in enumerate(entries):
        d = root / f"index{i}"
        d.mkdir()
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")


def test_host_cache_sizes_skip_instruction_caches(tmp_path):
    from aiq_tvm.targets.capabilities import host_cache_bytes

    _fake_caches(tmp_path, [(1, "Data", "48K"), (1, "Instruction", "32K"),
                            (2, "Unified", "2048K"), (3, "Unified", "36M")])
    assert host_cache_bytes(1, tmp_path) == 48 << 10
    assert host_cache_bytes(2, tmp_path) == 2 << 20
    assert host_cache_bytes(None, tmp_path) == 36 << 20
    assert host_cache_bytes(2, tmp_path / "missing") == 0


@pytest.mark.parametrize("target,l2", [
    ({"kind": "llvm", "mcpu": "sapphirerapids"}, 2 << 20),
    ({"kind": "llvm", "mcpu": "alderlake"}, 1280 << 10),
    ({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}, 0),
])
def test_l2_is_this_machines_for_a_host_target_else_the_data_sheets(target, l2):
    from aiq_tvm.targets.capabilities import host_cache_bytes

    caps = capabilities(target)
    if caps.host_runnable and host_cache_bytes(2):
        assert (caps.l2_bytes, caps.l2_source) == (host_cache_bytes(2), "this machine's (sysfs)")
    else:
        assert caps.l2_bytes == l2
        assert caps.l2_source == ("unknown" if l2 == 0 else f"{target['mcpu']} data sheet")
