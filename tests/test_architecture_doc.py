"""docs/architecture.md documents every aiq.* IR attribute the code uses."""

import re
from pathlib import Path

from aiq_tvm.passes._layers import layer_patterns

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "architecture.md").read_text()
# A quoted "aiq.<name>" in the package, its passes and targets (code or docstrings).
ATTRIBUTE = re.compile(r"""["'`]{1,2}(aiq\.[A-Za-z_][A-Za-z0-9_]*)["'`]{1,2}""")


def _code_attributes() -> dict[str, str]:
    found = {}
    for folder in ("aiq_tvm", "passes", "targets"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for name in ATTRIBUTE.findall(path.read_text()):
                found.setdefault(name, str(path.relative_to(ROOT)))
    return found


def test_every_aiq_attribute_in_the_code_is_documented():
    found = _code_attributes()
    assert {"aiq.layer", "aiq.precision", "aiq.exposed_layers"} <= set(found)  # scan works
    missing = {n: where for n, where in found.items() if f"`{n}`" not in DOC}
    assert not missing, f"aiq.* attributes missing from docs/architecture.md: {missing}"


def test_every_composite_name_is_documented():
    names = {p.name for p in layer_patterns([set()])}
    assert "aiq.conv2d_bias_res_act" in names
    missing = sorted(n for n in names if f"`{n}`" not in DOC)
    assert not missing, f"composite names missing from docs/architecture.md: {missing}"
