"""Reading results directories: good records in, bad records reported by name and left out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from knoblab.analysis.load import load_results
from knoblab.errors import DataError


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_reads_every_record_with_knobs_and_percentiles(exact_dir: Path) -> None:
    res = load_results(exact_dir)
    assert len(res.configs) == 18 and not res.skipped
    assert res.knobs == ["tier", "top_k", "num_active_blocks"]
    assert set(res.configs["tier"]) == {"low", "medium", "high"}
    assert len(res.samples) == 18 * 30
    one = res.configs.iloc[0]
    rec = json.loads((exact_dir / one["file"]).read_text())
    assert one["T_total_p95"] == pytest.approx(rec["aggregate_stats"]["T_total_p95"])
    assert one["accuracy"] == pytest.approx(rec["accuracy"])


def test_bad_records_are_reported_and_left_out(exact_dir: Path, tmp_path: Path) -> None:
    d = _copy(exact_dir, tmp_path / "r")
    files = sorted(d.glob("*_topk*_blocks*.json"))
    old = json.loads(files[0].read_text())
    old["knobs"] = "x"  # valid JSON, wrong type
    files[0].write_text(json.dumps(old))
    oom = json.loads(files[1].read_text())
    oom["status"] = "oom"
    files[1].write_text(json.dumps(oom))
    files[2].write_text('{"top_k": 4, "accuracy": ')  # crashed mid-write
    (d / "notes.json").write_text('{"comment": "not a record"}')  # not a record: ignored
    res = load_results(d)
    reasons = {s.name: s.reason for s in res.skipped}
    assert set(reasons) == {files[0].name, files[1].name, files[2].name}
    assert reasons[files[0].name].startswith("field knobs is str 'x'")
    assert reasons[files[1].name].startswith("status=oom")
    assert "JSON" in reasons[files[2].name]
    assert len(res.configs) == 15


def test_failed_samples_dropped_and_missing_percentile_computed(
    exact_dir: Path, tmp_path: Path
) -> None:
    d = _copy(exact_dir, tmp_path / "r")
    f = sorted(d.glob("*_topk*_blocks*.json"))[0]
    rec = json.loads(f.read_text())
    # the runner's failed-sample row: status failed, timings null, the error kept
    rec["per_sample_results"][0] |= {
        "status": "failed",
        "error": "OSError: corrupt image",
        "T_total": None,
    }
    del rec["aggregate_stats"]["T_total_p99"]
    f.write_text(json.dumps(rec))
    res = load_results(d)
    row = res.configs[res.configs["config"] == f.stem].iloc[0]
    assert row["num_valid_samples"] == 29
    s = res.samples[res.samples["config"] == f.stem]["T_total"]
    assert row["T_total_p99"] == pytest.approx(float(s.quantile(0.99)))
    assert any("dropped 1 of 30" in n for n in res.notes)
    assert any("T_total_p99" in n for n in res.notes)


def test_no_usable_record_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a directory"):
        load_results(tmp_path / "missing")
    (tmp_path / "x_imgsizetier-low_crops2_topk1_blocks1.json").write_text('{"status": "failed"}')
    with pytest.raises(DataError, match="no usable record.*status=failed"):
        load_results(tmp_path)
