"""Short functions (issue 7): none in aiq_tvm/, passes/ or targets/ over MAX_LINES lines.

A function's length runs from its first decorator (or ``def``) to its last line, nested
functions included, minus its docstring: the rule is about code a reader takes in at once, and
a public builder's numpydoc parameter list (``conv2d_kernel`` documents 15 parameters) should
stay beside the code rather than be cut to fit. Pure Python: it parses, never imports.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("aiq_tvm", "passes", "targets")
MAX_LINES = 80


def _docstring_lines(func: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    first = func.body[0]
    if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)):
        return first.end_lineno - first.lineno + 1
    return 0


def function_lengths(path: Path) -> dict[str, int]:
    """``{qualified name: lines without the docstring}`` of every function in ``path``."""
    out = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            name = prefix
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([child.lineno] + [d.lineno for d in child.decorator_list])
                name = f"{prefix}{child.name}"
                out[name] = child.end_lineno - start + 1 - _docstring_lines(child)
                name += "."
            elif isinstance(child, ast.ClassDef):
                name = f"{prefix}{child.name}."
            visit(child, name)

    visit(ast.parse(path.read_text(), str(path)), "")
    return out


def test_scan_counts_lines_without_the_docstring(tmp_path):
    src = tmp_path / "m.py"
    src.write_text('@dec\ndef f(x):\n    """Doc\n    string."""\n    def g():\n        return 1\n'
                   '    return g\n\n\nclass C:\n    def m(self):\n        pass\n')
    assert function_lengths(src) == {"f": 5, "f.g": 2, "C.m": 2}


def test_no_function_is_longer_than_the_limit():
    sources = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(sources) > 50  # the scan sees the packages
    long = [f"{p.relative_to(ROOT)}::{name} ({n} lines)" for p in sources
            for name, n in function_lengths(p).items() if n > MAX_LINES]
    assert not long, f"functions over {MAX_LINES} lines (docstring excluded): {long}"
