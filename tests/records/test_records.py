"""knoblab.records: schema version, migration of every old version, one percentile rule, writer/reader."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from knoblab import records
from knoblab.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures"
#: One fixture per old version (version 1 has two flavours: knoblab's and seed 002's own).
OLD = {
    1: [
        "v1_knoblab_synthetic_imgsizetier-low_crops2_topk2.json",
        "v1_seed002_coco-2014-vqa_imgsizetier-low_crops2_topk2.json",
    ],
    # written by the real runner of 2026-12-01 (WaitAdapter, 6 samples): no intervals
    2: ["v2_knoblab_synthetic_imgsizetier-low_crops2_topk2_blocks2.json"],
}


def _load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_every_old_version_has_a_migration_and_a_fixture() -> None:
    assert set(records.MIGRATIONS) == set(range(1, records.SCHEMA_VERSION))
    assert set(OLD) == set(records.MIGRATIONS)
    for version, names in OLD.items():
        for name in names:
            assert records.record_version(_load(name)) == version


@pytest.mark.parametrize("name", [n for names in OLD.values() for n in names])
def test_migration_reaches_the_current_version_and_is_idempotent(name: str) -> None:
    old = _load(name)
    before = copy.deepcopy(old)
    new = records.migrate_record(old)
    assert old == before  # the input is not modified
    assert new["schema_version"] == records.SCHEMA_VERSION
    assert new["status"] == "ok" and new["knobs"]["tier"] == "low" and new["knobs"]["top_k"] == 2
    records.check_record(new, name)
    assert records.migrate_record(new) == new  # current: unchanged
    again = copy.deepcopy(new)
    for version in range(records.record_version(old), records.SCHEMA_VERSION):
        for fn in records.MIGRATIONS[version]:  # each step is idempotent
            again = fn(again)
    assert again == new


def test_v1_warnings_quote_each_figures_own_count() -> None:
    old = _load(OLD[1][0])
    # v1 quoted the smallest count of any figure (T_decode_per_token's 2) for everything
    assert old["warnings"] == [
        "p95 rests on 2 samples (needs >= 20)",
        "p99 rests on 2 samples (needs >= 100)",
    ]
    new = records.migrate_record(old)
    assert "p95 rests on 2 samples (needs >= 20): T_decode_per_token" in new["warnings"]
    assert (
        "p95 rests on 3 samples (needs >= 20): T_vision_total, T_LLM_prefill, T_LLM_decode, T_total"
        in new["warnings"]
    )
    assert "p50 rests on" not in " ".join(new["warnings"])


def test_seed002_record_without_knobs_gets_them_from_its_fields() -> None:
    new = records.migrate_record(_load(OLD[1][1]))
    assert new["knobs"] == {"tier": "low", "top_k": 2, "num_active_blocks": 6}


def test_reader_migrates_and_analysis_reads_old_records(tmp_path: Path) -> None:
    from knoblab.analysis.load import load_results

    for name in OLD[1] + OLD[2]:
        shutil.copy(FIXTURES / name, tmp_path / name.split("_", 2)[2])
    got = records.load_records(tmp_path)
    assert all(r["schema_version"] == records.SCHEMA_VERSION for r in got.values())
    res = load_results(tmp_path)
    assert len(res.configs) == 3 and not res.skipped
    assert set(res.configs["task"]) == {"synthetic", "coco-2014-vqa"}


def test_newer_version_is_refused_in_one_line(tmp_path: Path) -> None:
    rec = {**_load(OLD[1][0]), "schema_version": records.SCHEMA_VERSION + 1}
    newer = records.SCHEMA_VERSION + 1
    with pytest.raises(DataError, match=rf"x\.json: schema_version={newer} is newer.*upgrade"):
        records.migrate_record(rec, "x.json")


def test_writer_stamps_the_version_into_record_and_sweep(tmp_path: Path) -> None:
    rows = [{"status": "ok", "accuracy": 1.0, "T_total": float(i)} for i in range(3)]
    rec = records.build_record(
        task="t",
        model="m",
        knobs={"resolution": 224},
        effective={},
        rows=rows,
        status="ok",
        error=None,
        environment={},
        sampling={},
    )
    path = records.write_record(tmp_path, rec)
    assert path.name == "t_resolution224.json"
    assert json.loads(path.read_text())["schema_version"] == records.SCHEMA_VERSION
    sweep = records.write_sweep(tmp_path, {"identity": {}, "knob_lists": []})
    assert json.loads(sweep.read_text())["schema_version"] == records.SCHEMA_VERSION
    assert list(records.load_records(tmp_path)) == ["t_resolution224.json"]


@pytest.mark.parametrize(("q", "need"), [(50, 2), (90, 10), (95, 20), (99, 100), (99.9, 1000)])
def test_one_percentile_rule_for_writer_and_analysis(q: float, need: int) -> None:
    from knoblab.analysis.analyze import tail_notes

    assert records.min_samples_for(q) == need
    import pandas as pd

    cfg = pd.DataFrame({"label": ["a", "b"], "T_total_count": [need - 1, need]})
    (note,) = tail_notes(cfg, f"p{q:g}")
    assert f"needs >= {need}" in note and f"a ({need - 1})" in note and "b (" not in note
    rows = [{"T_total": 1.0}] * (need - 1)
    stats, warns = records.aggregate_stats(rows, ["T_total"], percentiles=(q,))  # run.percentiles
    assert stats[f"T_total_p{q:g}"] == 1.0
    line = f"p{q:g} rests on {need - 1} samples (needs >= {need})"
    assert any(w.startswith(line) for w in warns)
    assert all(records.is_percentile_warning(w) for w in warns)


def test_synthetic_records_come_from_the_real_writer(tmp_path: Path) -> None:
    """The synthetic twin's std is ddof=1 like the runner's (it used ddof=0) and its records
    carry every field the writer writes."""
    from knoblab.analysis.synthetic import write_synthetic_results

    d = write_synthetic_results(tmp_path, tiers=("low",), top_ks=(2,), blocks=(4,), num_samples=6)
    (rec,) = records.load_records(d).values()
    x = np.asarray([r["T_total"] for r in rec["per_sample_results"]])
    assert rec["aggregate_stats"]["T_total_std"] == pytest.approx(x.std(ddof=1))
    acc = np.asarray([r["accuracy"] for r in rec["per_sample_results"]])
    assert rec["accuracy_std"] == pytest.approx(acc.std(ddof=1))
    assert rec["schema_version"] == records.SCHEMA_VERSION
    assert isinstance(rec["aggregate_stats"]["T_total_count"], int)


def test_profiling_records_still_exports_the_public_names() -> None:
    from knoblab.profiling import records as old

    for name in records.__all__:
        assert getattr(old, name) is getattr(records, name)
    assert callable(old.environment_info) and callable(old.git_revision)


def test_records_package_imports_only_its_layer() -> None:
    """records -> config, errors, atomic (and numpy/pandas); never profiling or analysis."""
    import ast

    allowed = {"knoblab.records", "knoblab.config", "knoblab.errors", "knoblab.atomic"}
    pkg = Path(records.__file__).parent
    for path in pkg.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith("knoblab"):
                    assert any(name == a or name.startswith(a + ".") for a in allowed), (
                        path.name,
                        name,
                    )


@pytest.mark.parametrize(
    ("obj", "want"),
    [
        ({"a": float("nan"), "b": [float("inf"), -float("inf")]}, {"a": None, "b": [None, None]}),
        (
            {"x": np.float32(0.5), "n": np.int64(3), "v": np.arange(3)},
            {"x": 0.5, "n": 3, "v": [0, 1, 2]},
        ),
        ({1: {"b", "a"}, "t": (1, 2)}, {"1": ["a", "b"], "t": [1, 2]}),
        ({"big": 2**70, "u": "é"}, {"big": 2**70, "u": "é"}),  # beyond orjson: the json module
        ({"big": 2**70, "nan": float("nan")}, {"big": 2**70, "nan": None}),
    ],
)
def test_dumps_writes_valid_json_of_what_the_runner_holds(obj: object, want: object) -> None:
    import torch

    text = records.dumps(obj)
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == want
    assert json.loads(records.dumps({"t": torch.tensor([1.5, 2.0])})) == {"t": [1.5, 2.0]}
    assert records.dumpb(obj) == text.encode("utf-8")  # the journal's bytes: the same text
