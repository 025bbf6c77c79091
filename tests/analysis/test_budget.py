"""The budget question: measured picks first, predicted ones labelled as such."""

from __future__ import annotations

from pathlib import Path

import pytest

from knoblab.analysis.budget import answer_budget
from knoblab.analysis.estimator import fit_estimator
from knoblab.analysis.load import load_results
from knoblab.analysis.synthetic import default_accuracy
from knoblab.errors import ConfigError


def test_most_accurate_measured_configuration_within_budget(noisy_dir: Path) -> None:
    res = load_results(noisy_dir)
    c = res.configs
    budget = float(c["T_total_p95"].median())
    a = answer_budget(res, budget, "p95")
    ok = c[c["T_total_p95"] <= budget]
    assert a.source == "measured" and a.latency_ms <= budget
    assert a.accuracy == pytest.approx(ok["accuracy"].max())
    assert "[measured]" in a.message()
    none = answer_budget(res, float(c["T_total_p95"].min()) * 0.5, "p95")
    assert none.label is None and "fastest measured" in none.message()
    with pytest.raises(ConfigError, match="budget_ms=-1"):
        answer_budget(res, -1, "p95")


def test_unmeasured_configuration_is_predicted_and_labelled(
    noisy_dir: Path, tmp_path: Path
) -> None:
    import shutil

    d = tmp_path / "partial"
    shutil.copytree(noisy_dir, d)
    removed = sorted(d.glob("*imgsizetier-medium*_topk4_blocks8.json"))
    assert len(removed) == 1
    removed[0].unlink()  # a design that skipped (medium, 4, 8)
    res = load_results(d)
    est = fit_estimator(res)
    full = load_results(noisy_dir).configs
    truth = full[full["config"] == removed[0].stem].iloc[0]
    # a budget between the best measured option and the missing configuration's latency
    a = answer_budget(res, float(truth["T_total_p95"]) * 1.03, "p95", est)
    assert a.source == "measured"
    alt = a.alternative
    assert alt is not None and alt.source == "predicted"
    assert alt.knobs == {"tier": "medium", "top_k": 4, "num_active_blocks": 8}
    assert alt.latency_ms == pytest.approx(float(truth["T_total_p95"]), rel=0.05)
    assert alt.accuracy == pytest.approx(default_accuracy(alt.knobs), abs=0.02)
    assert "[predicted]" in a.message()
