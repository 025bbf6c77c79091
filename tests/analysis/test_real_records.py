"""The analysis on records of the real runner (the reference model), not only the synthetic twin.

Every analysis area — loading, E1 stages and scaling, E2 fronts and coupling, the budget
answer, E3 and the report — runs here on what ``knoblab profile`` wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from knoblab import records
from knoblab.analysis.analyze import analyze
from knoblab.analysis.budget import answer_budget
from knoblab.analysis.load import load_results
from knoblab.analysis.pareto import coupling, pareto_front
from knoblab.analysis.stages import scaling_fits, stage_shares

pytestmark = pytest.mark.filterwarnings("ignore:reference weights not found")


def test_load_reads_every_real_record(real_dir: Path) -> None:
    res = load_results(real_dir)
    assert len(res.configs) == 8 and not res.skipped
    assert res.knobs == ["tier", "top_k", "num_active_blocks"] and res.vision_knob == "tier"
    assert len(res.samples) == 8 * 4
    for _, row in res.configs.iterrows():
        rec = records.read_record(real_dir / row["file"])
        assert rec is not None and rec["schema_version"] == records.SCHEMA_VERSION
        assert row["T_total_p95"] == pytest.approx(rec["aggregate_stats"]["T_total_p95"])
        assert row["T_total_count"] == rec["aggregate_stats"]["T_total_count"] == 4
        x = np.asarray([s["T_total"] for s in rec["per_sample_results"]])
        assert rec["aggregate_stats"]["T_total_std"] == pytest.approx(x.std(ddof=1))


def test_e1_shares_and_fits_on_real_records(real_dir: Path) -> None:
    res = load_results(real_dir)
    shares = stage_shares(res)
    assert len(shares) == 8 and set(shares["dominant"]) <= {"vision", "prefill", "decode", "other"}
    s = shares[["share_vision", "share_prefill", "share_decode", "share_other"]].sum(axis=1)
    assert np.allclose(s, 1.0)
    fits = scaling_fits(res)
    assert set(fits["group"]) == {"all", "k=1 B=1", "k=1 B=2", "k=2 B=1", "k=2 B=2"}
    assert (fits["n"][fits["group"] == "all"] == 32).all()


def test_e2_front_coupling_and_budget_on_real_records(real_dir: Path) -> None:
    res = load_results(real_dir)
    front = pareto_front(res.configs)
    assert front["on_front"].any()
    c = coupling(res.configs, res.knobs)
    assert set(c["knob"]) == {"free", "tier", "top_k", "num_active_blocks"}
    fastest = float(front["latency"].min())
    ans = answer_budget(res, budget_ms=fastest * 1.0001)
    assert ans.label is not None and ans.latency_ms <= fastest * 1.0001


def test_analyze_writes_the_report_from_real_records(real_dir: Path, tmp_path: Path) -> None:
    a = analyze(real_dir, tmp_path / "a", budget_ms=1e6)
    assert a.estimator is not None and a.evaluation is not None
    assert a.budget is not None and a.budget.source == "measured"
    data = json.loads((tmp_path / "a" / "analysis.json").read_text())
    assert data["knobs"] == ["tier", "top_k", "num_active_blocks"]
    # 4 samples: the one percentile rule flags p95 (needs 20) with each configuration's count
    assert any("needs >= 20" in n and "(4)" in n for n in a.notes)
    html = (tmp_path / "a" / "report.html").read_text()
    assert "E3" in html and "tier=low" in html
