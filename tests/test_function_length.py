"""No function in ``src/knoblab`` is over 100 lines (DESIGN.md style; issue 17, item 7).

A function's length runs from its ``def`` line to its last line (docstring and comments
included), nested functions counted inside their parent too. Split a long function
along its steps, each a named helper.
"""

from __future__ import annotations

import ast
from pathlib import Path

import knoblab

SRC = Path(knoblab.__file__).resolve().parent
LIMIT = 100


def _lengths(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    out[name] = child.end_lineno - child.lineno + 1
                walk(child, name + ".")
            else:
                walk(child, prefix)

    walk(ast.parse(path.read_text(encoding="utf-8")), "")
    return out


def _long_functions() -> dict[str, int]:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        for name, n in _lengths(path).items():
            if n > LIMIT:
                found[f"{rel}:{name}"] = n
    return found


def test_no_function_over_100_lines():
    long = _long_functions()
    assert not long, "functions over 100 lines (split them): " + ", ".join(
        f"{k} ({n} lines)" for k, n in sorted(long.items())
    )


def test_lengths_count_methods_and_nested_functions(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    src = f"class A:\n    def m(self):\n{body.replace('    x', '        x')}\n\ndef f():\n    def g():\n        pass\n{body}\n"
    path = tmp_path / "m.py"
    path.write_text(src)
    lengths = _lengths(path)
    assert lengths["A.m"] == LIMIT + 1 and lengths["f"] == LIMIT + 3 and lengths["f.g"] == 2
