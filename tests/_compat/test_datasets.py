"""datasets' packaged-builder table still lists the builders dataset=hf lets through."""

from __future__ import annotations

from knoblab._compat.datasets import packaged_builders


def test_packaged_builders_known():
    names = packaged_builders()
    assert {"imagefolder", "parquet", "json", "csv"} <= names
    assert "squad" not in names
