"""Foreign and mistyped files in a sweep directory: refused by name, never merged, no traceback.

Issue 16 items 2 and 6, through the CLI as a user meets them: a record of another sweep
copied into a finished sweep's directory, and valid JSON with wrong types, on a rerun of
``knoblab profile`` and in ``knoblab analyze``; and issue 12 item 7: a sweep whose every
configuration failed exits non-zero with one line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from knoblab import cli

pytestmark = [
    pytest.mark.filterwarnings("ignore:reference weights not found"),
    pytest.mark.usefixtures("keep_torch_threads"),  # the cpu preset sets threads process-wide
]
BASE = [
    "dataset.size=40",
    "knobs.tier=[low]",
    "knobs.num_active_blocks=[1]",
    "design=full",
    "run.warmup_runs=0",
    "run.max_new_tokens=2",
    "run.progress=false",
]


def _profile(out: Path, n: int, top_k: str) -> int:
    return cli.main(
        [
            "profile",
            *BASE,
            f"knobs.top_k={top_k}",
            f"dataset.sampling.num_samples_per_epoch={n}",
            f"run.output_dir={out}",
        ]
    )


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A finished 4-sample sweep (top_k 1, 2) and a 6-sample sweep (top_k 4) of the same model."""
    root = tmp_path_factory.mktemp("sweeps")
    assert _profile(root / "four", 4, "[1,2]") == 0
    assert _profile(root / "six", 6, "[4]") == 0
    return root / "four" / "shapes-vqa", root / "six" / "shapes-vqa"


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _records(d: Path) -> list[Path]:
    return sorted(p for p in d.glob("*.json") if "topk" in p.name)


def test_foreign_record_is_refused_on_rerun_and_left_out_of_analyze(
    sweeps: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    four, six = sweeps
    d = _copy(four, tmp_path / "out" / "shapes-vqa")
    (foreign,) = _records(six)
    shutil.copy(foreign, d / foreign.name)
    parquet = (d / "samples.parquet").read_bytes()
    capsys.readouterr()
    assert _profile(tmp_path / "out", 4, "[1,2]") == 2
    line = _one_line(capsys.readouterr().err)
    assert foreign.name in line and "another sweep" in line and "6 samples" in line
    assert (d / "samples.parquet").read_bytes() == parquet  # nothing merged, nothing rewritten
    assert len(pd.read_parquet(d / "samples.parquet")) == 2 * 4

    assert cli.main(["analyze", str(d), "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert f"left out {foreign.name}" in out.replace("\n", " ")
    summary = json.loads((tmp_path / "a" / "analysis.json").read_text())
    (front,) = summary["fronts"].values()
    assert len(front) == 2  # the foreign configuration is not analysed


@pytest.mark.parametrize(
    ("field", "value"),
    [("knobs", "x"), ("per_sample_results", 5), ("accuracy", "high")],
)
def test_mistyped_record_is_one_line_in_profile_and_analyze(
    sweeps: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    field: str,
    value: object,
) -> None:
    d = _copy(sweeps[0], tmp_path / "out" / "shapes-vqa")
    bad = _records(d)[0]
    rec = json.loads(bad.read_text())
    rec[field] = value
    bad.write_text(json.dumps(rec))
    capsys.readouterr()
    assert _profile(tmp_path / "out", 4, "[1,2]") == 2
    line = _one_line(capsys.readouterr().err)
    assert bad.name in line and f"field {field} is" in line
    assert json.loads(bad.read_text())[field] == value  # nothing already written is lost

    assert cli.main(["analyze", str(d), "--out", str(tmp_path / "a")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"left out {bad.name}: field {field} is" in out


def test_sweep_json_that_is_a_list_is_one_line_in_profile_and_analyze(
    sweeps: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = _copy(sweeps[0], tmp_path / "out" / "shapes-vqa")
    (d / "sweep.json").write_text("[1, 2]")
    capsys.readouterr()
    assert _profile(tmp_path / "out", 4, "[1,2]") == 2
    line = _one_line(capsys.readouterr().err)
    assert "sweep.json" in line and "is list [1, 2]" in line
    assert cli.main(["analyze", str(d)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "sweep.json" in line and "allowed is a JSON object" in line


def test_sweep_whose_every_configuration_failed_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from knoblab.errors import KnobLabError
    from knoblab.profiling.runner import run_sweeps
    from knoblab.profiling.synthetic import ListDataset, WaitAdapter

    adapter = WaitAdapter(vision_ms=0, prefill_ms=0, decode_ms=0, fail_samples=range(10))
    cfg = {
        "dataset": {"name": "synthetic", "sampling": {"num_samples_per_epoch": 3, "seed": 0}},
        "knobs": {"tier": ["low"], "top_k": [1, 2]},
        "design": {"name": "full"},
        "run": {"output_dir": str(tmp_path), "warmup_runs": 0, "progress": False},
    }
    import knoblab.data.registry as registry

    original = registry.build_dataset
    registry.build_dataset = lambda section: ListDataset.synthetic(4)
    try:
        with pytest.raises(KnobLabError, match=r"every configuration .* failed \(2 failed\)"):
            run_sweeps(cfg, adapter=adapter)
    finally:
        registry.build_dataset = original
    # the records are kept: the failures are on disk, with their errors
    recs = [json.loads(p.read_text()) for p in _records(tmp_path / "synthetic")]
    assert [r["status"] for r in recs] == ["failed", "failed"]

    # and through the CLI: exit 2, one line (a dataset whose every image is unreadable)
    data = tmp_path / "data"
    data.mkdir()
    (data / "bad.png").write_bytes(b"not a png")
    lines = [
        json.dumps({"sample_id": i, "image": "bad.png", "question": "q ?", "answers": ["a"]})
        for i in range(2)
    ]
    (data / "m.jsonl").write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    code = cli.main(
        [
            "profile",
            *BASE[1:],
            "knobs.top_k=[1]",
            "dataset=jsonl",
            f"dataset.path={data / 'm.jsonl'}",
            f"run.output_dir={tmp_path / 'cli'}",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "every configuration of the sweep" in _one_line(err) and "1 failed" in err
