"""benchmarks/bench_analyze_scale.py: its sweeps have the asked size and its child process runs analyze."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.parametrize("configs", [32, 128, 500])
def test_grids_have_the_asked_number_of_configurations(configs: int, load_bench) -> None:
    nv, nk, nb = load_bench("bench_analyze_scale").grid(configs)
    assert nv * nk * nb == configs


@pytest.mark.slow
def test_a_tiny_sweep_is_analysed_in_a_child_process(tmp_path: Path, load_bench) -> None:
    bench = load_bench("bench_analyze_scale")
    sweep = bench.make_sweep(tmp_path, 8, 6)
    assert len(list(sweep.glob("*_topk*_blocks*.json"))) == 8
    r = bench.run_analyze(sweep, tmp_path / "out")
    assert r["rc"] == 0 and r["rss_mb"] > 0 and 0 < r["estimator_s"] < r["wall_s"]
    data = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert data["estimator_evaluation"]["method"] == "leave-one-configuration-out"
