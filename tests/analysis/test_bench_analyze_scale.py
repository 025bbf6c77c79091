"""benchmarks/bench_analyze_scale.py: its sweeps have the asked size and its child process runs analyze."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_analyze_scale.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_analyze_scale", BENCH)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("configs", [32, 128, 500])
def test_grids_have_the_asked_number_of_configurations(configs: int) -> None:
    nv, nk, nb = _bench().grid(configs)
    assert nv * nk * nb == configs


@pytest.mark.slow
def test_a_tiny_sweep_is_analysed_in_a_child_process(tmp_path: Path) -> None:
    bench = _bench()
    sweep = bench.make_sweep(tmp_path, 8, 6)
    assert len(list(sweep.glob("*_topk*_blocks*.json"))) == 8
    r = bench.run_analyze(sweep, tmp_path / "out")
    assert r["rc"] == 0 and r["rss_mb"] > 0 and 0 < r["estimator_s"] < r["wall_s"]
    data = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert data["estimator_evaluation"]["method"] == "leave-one-configuration-out"
