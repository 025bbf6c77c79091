"""E2: the front, hypervolume and knob coupling on known data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from knoblab.analysis.load import load_results
from knoblab.analysis.pareto import coupling, hypervolume, pareto_front, pareto_mask
from knoblab.errors import ConfigError


def test_pareto_mask_known_front() -> None:
    acc = [0.5, 0.8, 0.7, 0.8, 0.9, 0.5]
    lat = [10, 20, 30, 25, 40, 10]
    assert pareto_mask(acc, lat).tolist() == [True, True, False, False, True, True]


def test_hypervolume_by_hand() -> None:
    # strips: (0.5-0) * (30-10) + (0.8-0.5) * (30-20) = 10 + 3
    assert hypervolume([0.5, 0.8, 0.6], [10, 20, 25], ref=(0.0, 30.0)) == pytest.approx(13.0)
    assert hypervolume([0.5], [40], ref=(0.0, 30.0)) == 0.0  # outside the box


def test_synthetic_front_avoids_the_useless_knob_value(exact_dir: Path) -> None:
    # default_accuracy: top_k above 4 buys no accuracy but costs latency -> never optimal
    res = load_results(exact_dir)
    front = pareto_front(res.configs, "p95")
    on = front[front.on_front]
    assert not (on["top_k"] == 8).any()
    assert front.iloc[0]["on_front"]  # the fastest configuration is always on the front
    best = front["accuracy"].max()
    assert front[front.accuracy == best]["on_front"].any()
    assert list(front["latency"]) == sorted(front["latency"])
    assert (front["latency"] == front["T_total_p95"]).all()


def test_coupling_ratios(exact_dir: Path) -> None:
    res = load_results(exact_dir)
    cp = coupling(res.configs, res.knobs, "p95")
    free = cp[cp.knob == "free"].iloc[0]
    assert free.hv_ratio == 1.0 and free.hypervolume > 0
    rest = cp[cp.knob != "free"]
    assert (rest.hv_ratio <= 1.0 + 1e-12).all()
    k8 = rest[(rest.knob == "top_k") & (rest.value == 8)].iloc[0]
    assert k8.n_on_free_front == 0
    assert set(rest.knob) == {"tier", "top_k", "num_active_blocks"}


def test_percentile_choice_and_error() -> None:
    c = pd.DataFrame(
        {"accuracy": [0.5, 0.8], "T_total_p50": [30.0, 20.0], "T_total_p95": [10.0, 20.0]}
    )
    assert pareto_front(c, "p50")["on_front"].tolist() == [True, False]
    assert pareto_front(c, "p95")["on_front"].tolist() == [True, True]
    # a percentile the configs do not hold: one line naming those they hold
    with pytest.raises(ConfigError, match=r"percentile='p90'.*hold: p50, p95 \(.*percentiles"):
        pareto_front(c, "p90")
    with pytest.raises(ConfigError, match=r"percentile='p100'.*0 < q < 100"):
        pareto_front(c, "p100")
    c["T_total_p90"] = [25.0, 15.0]  # recorded with run.percentiles=[50, 90, 95]
    assert pareto_front(c, "p90")["on_front"].tolist() == [True, False]
    assert pareto_front(c, "p90.0")["latency"].tolist() == [15.0, 25.0]
