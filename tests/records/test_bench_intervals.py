"""benchmarks/bench_intervals.py: its three cases build what they claim and the table prints."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_intervals.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_intervals", BENCH)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cases_compute_the_same_intervals() -> None:
    """The shared-indices record and the per-figure draws give the same intervals (only the
    cost differs), and the baseline has none."""
    from knoblab.records.intervals import bootstrap_cis

    bench = _bench()
    data = bench.rows(60)
    rec = bench._record(data)
    x = [r["T_total"] for r in data]
    want = bootstrap_cis(x, ["mean", "p95"])
    agg = rec["aggregate_stats"]
    for stat in ("mean", "p95"):
        est = agg[f"T_total_{stat}"]
        lo, hi = want[stat]
        assert (agg[f"T_total_{stat}_lo"], agg[f"T_total_{stat}_hi"]) == pytest.approx(
            (min(lo, est), max(hi, est))
        )
    assert "T_total_p95_lo" not in bench.aggregate_stats(data)[0]


def test_main_prints_the_table(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", ["bench_intervals.py", "--samples", "30", "--rounds", "1"])
    _bench().main()
    out = capsys.readouterr().out
    assert "shared indices" in out and "indices per figure" in out and "load average" in out
