"""Bad output folders and bad values through the CLI: one line, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from knoblab import cli


@pytest.mark.parametrize(
    "argv",
    [
        ["profile", "run.output_dir=blocker", "dataset.sampling.num_samples_per_epoch=2"],
        ["profile", "run.output_dir=blocker/deeper", "dataset.sampling.num_samples_per_epoch=2"],
        ["analyze", "results", "--out", "blocker"],
        ["analyze", "results", "out=blocker/x"],
        ["deep-profile", "deep.output_dir=blocker"],
        ["export-data", "out_dir=blocker", "num_samples=2"],
        ["export-data", "out_dir=fine", "num_samples=-1"],
        ["export-data", "out_dir=fine", "num_samples=abc"],
        ["export-data", "out_dir=fine", "num_samples=0"],
    ],
    ids=lambda a: " ".join(a[:2]) if a[0] != "export-data" else " ".join([a[0], *a[1:]]),
)
def test_one_line_no_traceback(
    argv: list[str], tmp_path: Path, capsys: Any, monkeypatch: Any, one_line: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocker").write_text("a file where a folder should be\n")
    (tmp_path / "results").mkdir()
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert cli.main(argv) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"knoblab {argv[0]}: error: ")
    if "blocker" in " ".join(argv):
        assert "is a file" in line and "allowed is a directory" in line
    else:
        assert "num_samples=" in line and "allowed is an integer >= 1" in line
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
    assert (tmp_path / "blocker").read_text() == "a file where a folder should be\n"
