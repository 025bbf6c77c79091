"""No private API of another library is used outside ``knoblab._compat`` (DESIGN.md, "Layering").

An ``ast`` scan of every module of ``src/knoblab`` (module- and function-level code alike)
outside ``_compat/`` finds

* an attribute ``x._name`` (single leading underscore) whose name knoblab itself never
  defines: not a function, class, module-level name, argument, class attribute or
  ``self._name = ...`` of knoblab's own code, so it belongs to a library object (torch,
  Lightning, transformers, safetensors, Hydra, ...);
* the same name given as a string to ``getattr`` / ``hasattr`` / ``setattr`` / ``delattr``;
* ``from lib import _name`` and imports of a library module with a private part
  (``torch.utils.data._utils``).

A new one fails here: move it into ``knoblab._compat`` with a test that runs the real
library (tests/_compat), or, for a standard-library name that is documented despite its
underscore, add it to ``DOCUMENTED`` with the reason.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import knoblab

SRC = Path(knoblab.__file__).resolve().parent
COMPAT = SRC / "_compat"

#: Underscore names that are documented public API (named tuples' methods and fields).
DOCUMENTED = {
    "_asdict": "collections.namedtuple, documented",
    "_replace": "collections.namedtuple, documented",
    "_fields": "collections.namedtuple, documented",
    "_make": "collections.namedtuple, documented",
}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


@functools.cache
def _trees() -> dict[Path, ast.Module]:
    return {p: ast.parse(p.read_text(encoding="utf-8")) for p in sorted(SRC.rglob("*.py"))}


def _defined_names(trees: dict[Path, ast.Module]) -> set[str]:
    """Every name knoblab's own code defines (outside _compat: its privates are not knoblab's)."""
    out: set[str] = set()
    for path, tree in trees.items():
        if COMPAT in path.parents:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                out.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                out.add(node.id)
            elif isinstance(node, ast.arg):
                out.add(node.arg)
            elif isinstance(node, ast.alias) and node.asname:
                out.add(node.asname)
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id in ("self", "cls")
            ):
                out.add(node.attr)
    return out


def _uses(tree: ast.Module) -> list[tuple[int, str, str]]:
    """(line, private name, how) of every private name ``tree`` reaches on another object."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            out.append((node.lineno, node.attr, f"{ast.unparse(node.value)}.{node.attr}"))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
        ):
            out.append(
                (node.lineno, node.args[1].value, f"{node.func.id}(..., {node.args[1].value!r})")
            )
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            for mod in mods:
                if isinstance(node, ast.ImportFrom) and node.level:
                    continue
                if mod.split(".")[0] == "knoblab":
                    continue
                bad = [p for p in mod.split(".") if _private(p)]
                if bad:
                    out.append((node.lineno, "import-module", f"import {mod}"))
                if isinstance(node, ast.ImportFrom):
                    for a in node.names:
                        if _private(a.name):
                            out.append((node.lineno, "import-name", f"from {mod} import {a.name}"))
    return out


def _violations() -> list[str]:
    trees = _trees()
    defined = _defined_names(trees)
    found = []
    for path, tree in trees.items():
        if COMPAT in path.parents:
            continue
        for line, name, how in _uses(tree):
            if name in DOCUMENTED or name in defined:
                continue
            found.append(f"{path.relative_to(SRC.parent)}:{line}: {how}")
    return found


def test_no_private_library_api_outside_compat():
    found = _violations()
    assert not found, "private library API outside knoblab/_compat:\n" + "\n".join(found)


def test_the_scan_finds_each_kind_of_private_use():
    """The scan is not blind: each kind of use in a snippet is reported."""
    snippet = ast.parse(
        "import torch._dynamo\n"
        "from safetensors.torch import _find_shared_tensors\n"
        "def f(model, trainer):\n"
        "    model._update_model_kwargs_for_generation()\n"
        "    getattr(trainer, '_accelerator_connector')\n"
        "    self._trainer\n"
        "    row._asdict()\n"
    )
    hows = {how for _, _, how in _uses(snippet)}
    assert "import torch._dynamo" in hows
    assert "from safetensors.torch import _find_shared_tensors" in hows
    assert "model._update_model_kwargs_for_generation" in hows
    assert "getattr(..., '_accelerator_connector')" in hows
    assert "self._trainer" in hows
    defined = _defined_names(_trees())
    assert "_trainer" not in defined and "_accelerator_connector" not in defined
