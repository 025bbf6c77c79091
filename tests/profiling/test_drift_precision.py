"""Drift statistic, load record and early stopping: alone, and through the real runner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from knoblab.errors import ConfigError
from knoblab.profiling import records as rec
from knoblab.profiling.drift import LoadMonitor, drift_statistic
from knoblab.profiling.precision import PrecisionConfig, PrecisionTracker, precision_of
from knoblab.profiling.runner import run_sweep
from knoblab.profiling.synthetic import ListDataset, WaitAdapter


# -- drift -----------------------------------------------------------------------------
def test_a_step_in_speed_is_drift_and_its_size_is_measured() -> None:
    rng = np.random.default_rng(0)
    quiet = 10 * (1 + 0.01 * rng.standard_normal(40))
    busy = 13 * (1 + 0.01 * rng.standard_normal(40))
    d = drift_statistic(np.concatenate([quiet, busy]).tolist(), what="tier=low")
    # relative to the median of all probes (between the two levels): 3 / 11.5 = 26 %
    assert d["detected"] and 0.2 < d["magnitude"] < 0.35 and d["noise"] < 0.1
    assert d["probes"] == 80 and "tier=low" in d["message"]
    assert set(d) >= {"detected", "magnitude", "noise", "statistic", "message"}


@pytest.mark.parametrize("seed", range(5))
def test_noise_alone_is_not_drift(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = 10 * np.exp(0.05 * rng.standard_t(3, 60))  # heavy-tailed, no trend
    d = drift_statistic(x.tolist())
    assert not d["detected"] and d["noise"] > 0


def test_too_few_probes_say_so() -> None:
    d = drift_statistic([1.0, 5.0, 1.0])
    assert not d["detected"] and d["magnitude"] == 0.0 and "too few" in d["message"]


def test_load_monitor_records_load_cpu_share_and_stage_cpu() -> None:
    mon = LoadMonitor()
    x = 0.0
    for i in range(200_000):
        x += i**0.5
    mon.tick(force=True)
    mon.span("measure", 2.0, 1.0)
    out = mon.summary({"prefill": [0.5, 0.25]})
    assert out["cpu_count"] >= 1 and len(out["series"]) == 1
    assert out["process_cpu_per_wall"]["model_stages"]["prefill"]["cpu_per_wall"] == 0.5
    assert out["process_cpu_per_wall"]["sweep_stages"]["measure"]["cpu_per_wall"] == 0.5
    if Path("/proc/stat").exists():
        assert 0.0 <= out["others_cpu_share"] <= 1.0
        assert len(out["loadavg_start"]) == 3


# -- precision -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"field": "T_all"}, "run.precision.field"),
        ({"stat": "p100"}, "run.precision.stat"),
        ({"rel_half_width": 0}, "run.precision.rel_half_width"),
        ({"rel_half_width": None}, "run.precision.rel_half_width"),
        ({"min": 30, "max": 20}, "run.precision.max"),
        ({"min": 1}, "run.precision.min"),
        ({"mni": 3}, "run.precision.mni"),
    ],
)
def test_bad_precision_names_the_key(tmp_path: Path, section: dict[str, Any], key: str) -> None:
    cfg = _cfg(tmp_path, section)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as info:
        run_sweep(cfg, adapter=WaitAdapter(), dataset=ListDataset.synthetic(40))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "synthetic").exists()


def test_max_beyond_the_plan_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"run\.precision\.max=500.*the plan's 30 samples"):
        run_sweep(
            _cfg(tmp_path, {"max": 500}), adapter=WaitAdapter(), dataset=ListDataset.synthetic(40)
        )


def _rows(values: list[float], acc: float = 1.0) -> list[dict[str, Any]]:
    return [{"status": "ok", "T_total": v, "accuracy": acc} for v in values]


def test_tracker_stops_when_the_interval_is_narrow_and_never_before_min() -> None:
    cfg = PrecisionConfig(rel_half_width=0.03, min=10)
    tracker = PrecisionTracker(cfg, cap=100)
    steady = _rows([10.0 + 0.01 * (i % 3) for i in range(30)])
    assert not tracker.done("a", steady[:9])  # below min
    assert tracker.done("a", steady[:10])
    assert tracker.status["a"]["samples_needed"] == 10 and tracker.status["a"]["reached"]
    rng = np.random.default_rng(0)
    wild = _rows(list(np.exp(rng.normal(0, 1.0, 100))))
    assert not any(tracker.done("b", wild[:n]) for n in range(1, 100))
    assert tracker.done("b", wild)  # the cap, not reached
    entry = tracker.record_entry("b", wild)
    assert entry is not None and entry["reached"] is False and entry["samples_needed"] == 100
    assert entry["rule"].startswith("T_total p95: 95% bootstrap CI half-width <= 3%")
    assert precision_of(wild[:50], cfg)["half_width_rel"] > 0.03
    assert PrecisionTracker(None, cap=5).record_entry("a", steady) is None


def _cfg(out: Path, precision: dict[str, Any] | None, n: int = 30, **run: Any) -> dict[str, Any]:
    return {
        "dataset": {"name": "synthetic", "sampling": {"num_samples_per_epoch": n, "seed": 1}},
        "knobs": {"tier": ["low", "high"], "top_k": [1, 4], "num_active_blocks": [6]},
        "design": {"name": "full"},
        "run": {"output_dir": str(out), "warmup_runs": 0, "progress": False,
                "precision": precision, **run},
    }  # fmt: skip


@pytest.mark.parametrize("schedule", ["interleaved", "sequential"])
def test_accuracy_precision_stops_the_sure_configuration_early(
    tmp_path: Path, schedule: str
) -> None:
    """Wilson half-width <= 0.1: an always-right configuration is sure after 16 samples.

    (z^2 / (2 (n + z^2)) <= 0.1 first at n = 16); a 50 % one is not within 40.
    """
    precision = {"rel_half_width": None, "accuracy_half_width": 0.1, "min": 10}
    res = run_sweep(
        _cfg(tmp_path, precision, n=40, schedule=schedule),
        adapter=WaitAdapter(vision_ms=0, prefill_ms=0, decode_ms=0),
        dataset=ListDataset.synthetic(60),
    )
    by = {(r["knobs"]["tier"], r["knobs"]["top_k"]): r for r in res.records.values()}
    sure = by[("high", 4)]
    assert sure["accuracy"] == 1.0 and sure["num_samples"] == 16
    assert sure["precision"]["reached"] and sure["precision"]["samples_needed"] == 16
    assert "accuracy: 95% Wilson half-width <= 0.1" in sure["precision"]["rule"]
    assert [s["position"] for s in sure["per_sample_results"]] == list(range(16))  # a prefix
    coin = by[("low", 1)]
    assert coin["num_samples"] == 40 and coin["precision"]["reached"] is False
    assert coin["precision"]["accuracy_half_width"] > 0.1
    env = json.loads((res.out_dir / "environment.json").read_text())
    assert env["drift"]["probes"] >= 6 and "others_cpu_share" in env["load"]
    assert "Schedule: " + schedule in (res.out_dir / "report.md").read_text()


class SlowingAdapter(WaitAdapter):
    """Every stage takes three times longer after ``after`` prefills: the machine "slowed"."""

    after: int = 10**9

    def _wait(self, ms: float) -> None:
        super()._wait(ms * (3 if self.calls > self.after else 1))


def test_a_machine_that_slows_mid_sweep_is_reported_once(tmp_path: Path, capsys: Any) -> None:
    ad = SlowingAdapter(vision_ms=0.5, prefill_ms=0.5, decode_ms=0.5)
    ad.after = 2 + 16 * 3 // 2  # warmups + half of the (2 configurations + probe) x 16 rounds
    cfg = _cfg(tmp_path, None, n=16)
    cfg["knobs"] = {"tier": ["low"], "top_k": [1, 2], "num_active_blocks": [2]}
    cfg["run"]["warmup_runs"] = 1
    res = run_sweep(cfg, adapter=ad, dataset=ListDataset.synthetic(20))
    assert res.drift is not None and res.drift["detected"] and res.drift["probes"] == 16
    assert res.drift["noise"] < res.drift["magnitude"]
    out = capsys.readouterr().out.replace("\n", " ")
    assert out.count("the machine's speed drifted") == 1
    env = json.loads((res.out_dir / "environment.json").read_text())
    assert env["drift"] == res.drift and env["load"]["process_cpu_per_wall"]["model_stages"]
    assert "**Drift detected**" in (res.out_dir / "report.md").read_text()
    # the load record's "total" covers every measured unit (each memory span's CPU time),
    # not only the warm-up inferences
    total = env["load"]["process_cpu_per_wall"]["model_stages"]["total"]
    measured_s = sum(
        s["T_total"] for r in rec.load_records(res.out_dir).values()
        for s in r["per_sample_results"]
    ) / 1000  # fmt: skip
    assert total["wall_s"] >= 0.9 * measured_s and total["cpu_s"] > 0
