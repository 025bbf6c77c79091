"""benchmarks/bench_intervals.py: its three cases build what they claim and the table prints."""

from __future__ import annotations

import sys

import pytest


def test_cases_compute_the_same_intervals(load_bench) -> None:
    """The shared-indices record and the per-figure draws give the same intervals (only the
    cost differs), and the baseline has none."""
    from knoblab.records.intervals import bootstrap_cis

    bench = load_bench("bench_intervals")
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


def test_main_prints_the_table(capsys: pytest.CaptureFixture[str], monkeypatch, load_bench) -> None:
    monkeypatch.setattr(sys, "argv", ["bench_intervals.py", "--samples", "30", "--rounds", "1"])
    load_bench("bench_intervals").main()
    out = capsys.readouterr().out
    assert "shared indices" in out and "indices per figure" in out and "load average" in out
