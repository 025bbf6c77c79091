"""E3: the estimator recovers a known law, is evaluated on held-out configurations, saves as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from knoblab.analysis.estimator import (
    LatencyEstimator,
    error_metrics,
    fit_and_evaluate,
    fit_estimator,
)
from knoblab.analysis.load import load_results
from knoblab.analysis.synthetic import LatencyLaw, write_synthetic_results
from knoblab.errors import CheckpointError, ConfigError


def test_error_metrics_by_hand() -> None:
    m = error_metrics(np.array([1.0, 2.2, 2.7, 4.0]), np.array([1.0, 2.0, 3.0, 5.0]))
    assert m["MAPE"] == pytest.approx((0 + 10 + 10 + 20) / 4)
    assert m["RMSPE"] == pytest.approx(np.sqrt((0 + 0.01 + 0.01 + 0.04) / 4) * 100)
    assert m["within_5"] == 25.0 and m["within_10"] == 75.0


def test_exact_law_is_recovered_on_held_out_configurations(exact_dir: Path) -> None:
    est, ev = fit_and_evaluate(load_results(exact_dir))
    assert ev.method == "leave-one-configuration-out"
    m = ev.metrics.set_index(["level", "target"])
    assert m.loc[("config", "T_total"), "MAPE"] < 1e-6
    assert m.loc[("sample", "T_LLM_prefill"), "within_5"] == 100.0
    # an unmeasured top_k: the law's value for the tier's mean tokens
    law = LatencyLaw()
    p = est.predict(
        tier="medium", top_k=3, num_active_blocks=6, input_text_tokens=10, output_tokens=4
    )
    v = p.inputs["vision_tokens"]
    truth = law.stages(np.array([v]), np.array([10.0]), np.array([4.0]), 3, 6)
    for k in ("T_vision_total", "T_LLM_prefill", "T_LLM_decode", "T_total"):
        assert p.value[k] == pytest.approx(float(truth[k][0]), rel=1e-6)


def test_noisy_sweep_meets_the_goal_and_band_brackets(noisy_dir: Path) -> None:
    est, ev = fit_and_evaluate(load_results(noisy_dir))
    m = ev.metrics.set_index(["level", "target"])
    assert m.loc[("config", "T_total"), "MAPE"] <= 5.0
    assert m.loc[("config", "T_total"), "within_10"] >= 95.0
    p = est.predict(tier="high", top_k=4, num_active_blocks=8)
    for k in p.value:
        assert p.low[k] <= p.value[k] <= p.high[k]
    assert p.high["T_total"] > p.low["T_total"]  # noise gives a real band
    assert "leave-one-configuration-out" in est.band_source


def test_save_load_roundtrip_is_json(noisy_dir: Path, tmp_path: Path) -> None:
    est = fit_estimator(load_results(noisy_dir))
    path = est.save(tmp_path / "estimator.json")
    d = json.loads(path.read_text())
    assert d["format"] == "knoblab-latency-estimator" and d["tier_tokens"]["high"]["actual"] > 0
    back = LatencyEstimator.load(path)
    a = est.predict(tier="low", top_k=2, num_active_blocks=4)
    b = back.predict(tier="low", top_k=2, num_active_blocks=4)
    assert a.value == pytest.approx(b.value) and a.high == pytest.approx(b.high)
    (tmp_path / "bad.json").write_text('{"coef": {}}')
    with pytest.raises(CheckpointError, match="not a knoblab estimator"):
        LatencyEstimator.load(tmp_path / "bad.json")
    d["format_version"] = 99
    (tmp_path / "v99.json").write_text(json.dumps(d))
    with pytest.raises(CheckpointError, match="format_version=99"):
        LatencyEstimator.load(tmp_path / "v99.json")


def test_bad_knobs_name_allowed_values(exact_dir: Path) -> None:
    est = fit_estimator(load_results(exact_dir), evaluate=False)
    with pytest.raises(ConfigError, match="tier='ultra'.*low, medium, high"):
        est.predict(tier="ultra", top_k=2, num_active_blocks=4)
    with pytest.raises(ConfigError, match="top_k=0"):
        est.predict(tier="low", top_k=0, num_active_blocks=4)
    assert est.predict(tier="low", top_k=32, num_active_blocks=4).extrapolated


def test_target_token_mode_sweep(tmp_path: Path) -> None:
    d = write_synthetic_results(tmp_path, tiers=None, vision_tokens=(64, 128, 256), num_samples=10)
    res = load_results(d)
    assert res.vision_knob == "vision_tokens"
    est = fit_estimator(res, vision_tokens="target")
    p = est.predict(
        vision_tokens=192, top_k=4, num_active_blocks=6, input_text_tokens=12, output_tokens=3
    )
    truth = LatencyLaw().stages(np.array([192.0]), np.array([12.0]), np.array([3.0]), 4, 6)[
        "T_total"
    ][0]
    # actual tokens are the target minus a few padding patches; the target-token model absorbs that
    assert p.value["T_total"] == pytest.approx(float(truth), rel=0.02)
    with pytest.raises(ConfigError, match="tier='low'"):
        est.predict(tier="low", top_k=2, num_active_blocks=4)
