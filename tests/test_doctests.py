"""Every ``>>>`` example in ``src/knoblab`` runs and prints what it shows (issue 17, item 8).

Each module's examples run as one doctest session, in a fresh temporary folder (an
example that writes ``out/...`` writes there, never into the checkout), with these
names given: ``tmp_path`` (that folder), ``knoblab``, ``np`` and ``torch``. An example
that needs what a docstring cannot make (a GPU, a real checkpoint, a Trainer mid-fit)
is written as a usage block without ``>>>`` instead, so no example claims to run
that does not.

``pytest --doctest-modules src/knoblab`` runs the same examples (without the names).
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import numpy as np
import pytest
import torch

import knoblab


def _modules() -> list[str]:
    names = [knoblab.__name__]
    for info in pkgutil.walk_packages(knoblab.__path__, prefix="knoblab."):
        if not info.name.startswith("knoblab.conf"):
            names.append(info.name)
    return sorted(names)


def _with_examples(names: list[str]) -> list[str]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    out = []
    for name in names:
        module = importlib.import_module(name)
        if any(t.examples for t in finder.find(module, name)):
            out.append(name)
    return out


MODULES = _with_examples(_modules())
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    extra = {"tmp_path": tmp_path, "knoblab": knoblab, "np": np, "torch": torch}
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report: list[str] = []
    for test in finder.find(module, name, extraglobs=extra):
        runner.run(test, out=report.append)
    failed, _ = runner.summarize(verbose=False)
    assert failed == 0, "".join(report)


def test_every_module_with_examples_is_found():
    """The collection is not empty and finds a module known to have examples."""
    assert "knoblab.records.io" in MODULES and "knoblab.errors" in MODULES
    assert len(MODULES) >= 40
