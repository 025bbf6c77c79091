"""Operator-level E1 end to end: a real `knoblab profile` sweep and a real `knoblab
deep-profile` (reference model, 2 samples, minimal mode) into `knoblab analyze`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from knoblab import cli
from knoblab.analysis.analyze import analyze
from knoblab.analysis.operators import UNTRACKED, find_deep_profiles, load_operator_shares
from knoblab.errors import ConfigError, DataError

KNOBS = [
    "dataset.size=40",
    "knobs.tier=[low,high]",
    "knobs.top_k=[4]",
    "knobs.num_active_blocks=[4]",
    "design=full",
    "run.warmup_runs=1",
    "run.progress=false",
]

pytestmark = [
    pytest.mark.filterwarnings("ignore:reference weights not found"),
    pytest.mark.usefixtures("keep_torch_threads"),  # the cpu preset sets threads process-wide
]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """results/profile (4 samples, 2 configurations) and results/deep_profile (2 samples)."""
    root = tmp_path_factory.mktemp("ops") / "results"
    profile = [*KNOBS, "dataset.sampling.num_samples_per_epoch=4", f"run.output_dir={root}/profile"]
    assert cli.main(["profile", *profile]) == 0
    deep = [
        *KNOBS,
        "dataset.sampling.num_samples_per_epoch=2",
        "deep.mode=minimal",
        "deep.samples=all",
        f"deep.output_dir={root}/deep_profile",
    ]
    assert cli.main(["deep-profile", *deep]) == 0
    return root


def test_deep_profile_writes_per_stage_operator_tables(sweep: Path) -> None:
    folder = sweep / "deep_profile" / "shapes-vqa"
    index = json.loads((folder / "deep_profile.json").read_text())
    assert len(index["configurations"]) == 2 and len(index["profiled_sample_ids"]) == 2
    for c in index["configurations"]:
        by_stage = pd.read_csv(folder / c["operators_by_stage_csv"])
        assert {"vision", "prefill", "decode"} <= set(by_stage["stage"])
        assert set(by_stage["stage"]) <= {"vision", "prefill", "decode", "other"}
        # A stage's rows (its operators + the range's own time) add up to the range's
        # inclusive CPU time, as torch's key_averages reports it.
        whole = pd.read_csv(folder / c["operators_csv"]).set_index("name")
        for stage in ("vision", "prefill", "decode"):
            rows = by_stage[by_stage["stage"] == stage]
            assert UNTRACKED in set(rows["name"])
            assert rows["self_cpu_time_us"].sum() == pytest.approx(
                whole.loc[stage, "cpu_time_total_us"], rel=1e-6
            )


def test_analyze_adds_operator_shares_to_every_output(sweep: Path, capsys) -> None:
    out = sweep / "report"
    assert cli.main(["analyze", str(sweep / "profile"), "--out", str(out)]) == 0
    assert "operators: top 5 per configuration and stage" in capsys.readouterr().out

    data = json.loads((out / "analysis.json").read_text())["operators"]
    assert data["sources"] == [str((sweep / "deep_profile/shapes-vqa/deep_profile.json").resolve())]
    rows = pd.DataFrame(data["rows"])
    assert set(rows["configuration"]) == {"tier=low k=4 B=4", "tier=high k=4 B=4"}
    assert (
        rows["in_sweep"].all() and (rows["samples"] == 2).all() and (rows["clock"] == "CPU").all()
    )
    for _, g in rows.groupby(["configuration", "stage"]):
        assert list(g["rank"]) == list(range(1, len(g) + 1)) and len(g) <= 5
        assert g["share_pct"].is_monotonic_decreasing and 0 < g["share_pct"].sum() <= 100.0001
        assert g["self_ms"].sum() <= g["stage_ms"].iloc[0] * 1.000001
    decode = rows[rows["stage"] == "decode"]
    assert decode["operator"].str.startswith("aten::").any()  # real operators, not just glue

    md = (out / "analysis.md").read_text()
    assert "## E1 — operators (deep-profile)" in md and "shapes-vqa / tier=high k=4 B=4" in md
    page = (out / "report.html").read_text()
    assert "E1 — operators (deep-profile)" in page and "aten::" in page


def test_deep_path_given_found_beside_or_turned_off(sweep: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere"
    shutil.copytree(sweep / "deep_profile", moved)
    index = moved / "shapes-vqa" / "deep_profile.json"
    assert find_deep_profiles(sweep / "profile/shapes-vqa") == [
        (sweep / "deep_profile/shapes-vqa/deep_profile.json").resolve()
    ]
    assert find_deep_profiles("unused", moved) == [index]
    a = analyze(sweep / "profile", deep=index, write=False)
    assert a.operators is not None and a.operators.sources == [index]
    assert analyze(sweep / "profile", deep=False, write=False).operators is None
    with pytest.raises(ConfigError, match="deep="):
        load_operator_shares(sweep / "profile", tmp_path / "nothing-here")
    # A sweep of another task ignores the deep profile found beside it.
    ops = load_operator_shares(sweep / "profile", tasks=["other-task"])
    assert ops is None


def test_broken_deep_profile_beside_the_sweep_is_a_note(sweep: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(sweep / "profile", results / "profile")
    (results / "deep_profile" / "shapes-vqa").mkdir(parents=True)
    (results / "deep_profile" / "shapes-vqa" / "deep_profile.json").write_text("{not json")
    a = analyze(results / "profile", write=False)
    assert a.operators is None and any("deep profile beside" in n for n in a.notes)
    with pytest.raises(DataError, match="unreadable deep-profile index"):
        analyze(results / "profile", deep=results / "deep_profile", write=False)


def test_older_deep_profile_without_stage_tables_reads_as_whole_inference(
    sweep: Path, tmp_path: Path
) -> None:
    old = tmp_path / "old"
    shutil.copytree(sweep / "deep_profile" / "shapes-vqa", old)
    index = json.loads((old / "deep_profile.json").read_text())
    for c in index["configurations"]:
        (old / c.pop("operators_by_stage_csv")).unlink()
    (old / "deep_profile.json").write_text(json.dumps(index))
    ops = load_operator_shares("unused", old)
    assert ops is not None and set(ops.table["stage"]) == {"all"}
    assert any("older deep-profile" in n for n in ops.notes)
    assert {"vision", "prefill", "decode"}.isdisjoint(ops.table["operator"])
