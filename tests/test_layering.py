"""The import graph of ``src/knoblab`` flows one way (DESIGN.md, "Layering").

Walks every module with ``ast`` (module-level, function-level and ``TYPE_CHECKING``
imports alike: a lazy import is still a dependency) and fails on

* an upward import: a module importing a higher layer than its own;
* a forbidden edge within the rules: ``profiling`` never imports ``analysis``, ``models``
  never imports ``data``, and nothing in the library imports ``commands``;
* a private name (``_x``) imported across subpackages: a helper two packages share is
  public in the lower one;
* an import cycle between modules.

Layers, top to bottom (a module may import its own layer and any lower one):

3. ``cli``, ``commands``
2. ``profiling``, ``training``, ``analysis``
1. ``models``, ``sampling``, ``data``, records (``profiling.records``)
0. ``config``, ``errors``, ``atomic``, ``_compat``, ``console``, ``_lazy``,
   ``hydra_utils``, ``conf``, and the ``knoblab`` package itself

``KNOWN`` lists the violations that exist today and belong to other work; each entry
names its issue. The test fails on any violation not listed, and on a listed one that
is gone (so the list shrinks as they are fixed).
"""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from pathlib import Path

import knoblab

SRC = Path(knoblab.__file__).resolve().parent

LAYERS: dict[str, int] = {
    "knoblab.cli": 3,
    "knoblab.commands": 3,
    "knoblab.profiling": 2,
    "knoblab.training": 2,
    "knoblab.analysis": 2,
    "knoblab.models": 1,
    "knoblab.sampling": 1,
    "knoblab.data": 1,
    "knoblab.profiling.records": 1,
    "knoblab.config": 0,
    "knoblab.errors": 0,
    "knoblab.atomic": 0,
    "knoblab._compat": 0,
    "knoblab.console": 0,
    "knoblab._lazy": 0,
    "knoblab.hydra_utils": 0,
    "knoblab.conf": 0,
    "knoblab": 0,
}

#: (importer prefix, imported prefix, why) edges forbidden although the layers allow them.
FORBIDDEN = [
    ("knoblab.profiling", "knoblab.analysis", "profiling never imports analysis"),
    ("knoblab.models", "knoblab.data", "models never import a dataset"),
]

#: Known violations in code other branches own (issue 17, item 2). Each is (kind, edge).
KNOWN: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = ("knoblab", *path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(
    name: str, source: str, is_pkg: bool, modules: dict[str, Path]
) -> list[tuple[str, str]]:
    """(imported module, imported name or "") of every knoblab import in ``source``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(a.name, "") for a in node.names if a.name.split(".")[0] == "knoblab"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "knoblab":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.append((sub, "") if sub in modules else (target, alias.name))
    return out


def _layer(module: str) -> tuple[str, int]:
    """(prefix, layer) of the longest ``LAYERS`` prefix of ``module``."""
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return best, LAYERS[best]


def _graph() -> tuple[dict[str, set[str]], list[tuple[str, str]]]:
    """Edges between knoblab modules, and the violations found on them."""
    modules = _modules()
    edges: dict[str, set[str]] = defaultdict(set)
    found: list[tuple[str, str]] = []
    for name, path in sorted(modules.items()):
        source, is_pkg = path.read_text(), path.name == "__init__.py"
        for target, imported in _imports(name, source, is_pkg, modules):
            if target == name:
                continue
            edges[name].add(target)
            edge = f"{name} -> {target}"
            (_, mine), (_, theirs) = _layer(name), _layer(target)
            if theirs > mine:
                found.append(("upward", edge))
            if target.startswith("knoblab.commands") and not name.startswith(
                ("knoblab.commands", "knoblab.cli")
            ):
                found.append(("commands", edge))
            for src, dst, _why in FORBIDDEN:
                if name.startswith(src) and target.startswith(dst):
                    found.append(("forbidden", edge))
            top = name.split(".")[:2], target.split(".")[:2]
            if imported.startswith("_") and not imported.startswith("__") and top[0] != top[1]:
                found.append(("private", f"{edge}.{imported}"))
    return edges, found


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


@functools.cache
def _violations() -> frozenset[tuple[str, str]]:
    edges, found = _graph()
    for comp in _cycles(edges):
        found.append(("cycle", " <-> ".join(comp)))
    return frozenset(found)


def test_imports_flow_downward_without_cycles() -> None:
    new = sorted(_violations() - KNOWN)
    assert not new, "import-graph violations (see tests/test_layering.py):\n" + "\n".join(
        f"  {kind}: {edge}" for kind, edge in new
    )


def test_known_violations_are_still_real() -> None:
    """A fixed violation leaves ``KNOWN``: the allow-list never hides a new one."""
    gone = sorted(KNOWN - _violations())
    assert not gone, f"fixed, remove from KNOWN: {gone}"


def test_the_checker_sees_what_it_must() -> None:
    """The walker finds function-level and relative imports and flags each rule."""
    modules = {"knoblab.models.a": Path(), "knoblab.data.shapes": Path()}
    source = "def f():\n    from knoblab.data.shapes import COLORS\n    from . import a\n"
    got = _imports("knoblab.models.probe", source, False, modules)
    assert got == [("knoblab.data.shapes", "COLORS"), ("knoblab.models.a", "")]
    assert _layer("knoblab.profiling.records") == ("knoblab.profiling.records", 1)
    assert _layer("knoblab.profiling.runner") == ("knoblab.profiling", 2)
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
