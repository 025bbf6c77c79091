"""``-m`` / ``--multirun`` on deep-profile and export-data (profile, plan and train have their own)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from knoblab import cli

pytestmark = pytest.mark.filterwarnings("ignore:reference weights not found")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import torch

    monkeypatch.chdir(tmp_path)  # Hydra writes its multirun logs under the working directory
    threads = torch.get_num_threads()  # the cpu hardware preset sets it process-wide
    yield
    torch.set_num_threads(threads)


def test_deep_profile_multirun_gives_each_job_its_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "deep"
    code = cli.main(
        [
            "deep-profile",
            "-m",
            "deep.mode=minimal,full",
            f"deep.output_dir={out}",
            "run.warmup_runs=0",
            "deep.configurations=[{tier: low, top_k: 1, num_active_blocks: 1}]",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    modes = [
        json.loads((out / f"job{n}" / "shapes-vqa" / "deep_profile.json").read_text())["mode"]
        for n in (0, 1)
    ]
    assert modes == ["minimal", "full"]
    assert captured.out.count("1 configuration(s) profiled") == 2


def test_deep_profile_multirun_error_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["deep-profile", "-m", f"deep.output_dir={tmp_path}", "deep.mode=minimal,fast"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "deep.mode='fast'" in err and len(err.strip().splitlines()) == 1


def test_export_data_multirun(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(
        [
            "export-data",
            "--multirun",
            "dataset=shapes_vqa,shapes_vqa_hard",
            f"out_dir={tmp_path}/exp/${{dataset.name}}",
            "num_samples=2",
        ]
    )
    assert code == 0, capsys.readouterr().err
    manifests = sorted(p.parent.name for p in (tmp_path / "exp").glob("*/manifest.jsonl"))
    assert len(manifests) == 2 and all(
        len((tmp_path / "exp" / m / "manifest.jsonl").read_text().splitlines()) == 2
        for m in manifests
    )
