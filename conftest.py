"""For ``pytest --doctest-modules src/knoblab``: the names docstring examples use, a temp folder.

The test suite runs the same examples through ``tests/test_doctests.py``, which gives
them the same names; this file only makes the plain ``--doctest-modules`` run agree.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _doctest_names(request: pytest.FixtureRequest) -> None:
    if type(request.node).__name__ != "DoctestItem":
        return
    import numpy as np
    import torch

    import knoblab

    tmp_path = request.getfixturevalue("tmp_path")
    request.getfixturevalue("monkeypatch").chdir(tmp_path)
    namespace = request.getfixturevalue("doctest_namespace")
    namespace.update(tmp_path=tmp_path, knoblab=knoblab, np=np, torch=torch)
