"""benchmarks/bench_estimator.py evaluates a results directory and prints the nn-Meter table."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from knoblab.analysis.load import load_results


def test_report_on_synthetic_records(small_dir: Path, load_bench) -> None:
    bench = load_bench("bench_estimator")
    con = Console(record=True, width=200)
    bench.report(con, small_dir, "synthetic", 0.0, "actual")
    text = con.export_text()
    assert "leave-one-configuration-out" in text and "MAPE" in text
    assert "goal (config-level T_total MAPE <= 5%" in text and "meets" in text
    floor, n = bench.noise_floor(load_results(small_dir))
    assert n == 8 and 0 <= floor < 5  # synthetic vision times depend on tokens only, 3% noise
