"""report.html's plotly figures: label spacing, robust and log axes, fits, intervals, counts.

The figures are built from the analysis of sweeps written by the runner's record writer
(``knoblab.analysis.synthetic``); where a test needs a figure the records do not carry yet
(intervals, ``tied_with_front``, memory, drift), it adds that column to the analysis
table and checks the figure draws it, and that nothing is drawn without it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knoblab.analysis import figures
from knoblab.analysis.analyze import Analysis, analyze, scaling_points
from knoblab.analysis.report import drift_message, write_report
from knoblab.analysis.synthetic import write_synthetic_results


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    d = write_synthetic_results(
        tmp_path_factory.mktemp("s"), top_ks=(2, 8), blocks=(4, 8), num_samples=12, noise=0.03
    )
    return analyze(d, write=False)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0, 1, allow_nan=False), min_size=0, max_size=30),
    st.floats(0.01, 0.2),
)
def test_label_slots_keep_their_gap_and_stay_in_range(wanted: list[float], gap: float) -> None:
    y = figures.label_slots(wanted, 0.0, 1.0, gap)
    assert len(y) == len(wanted)
    s = np.sort(y)
    assert (np.diff(s) >= gap - 1e-9).all()
    if 0 < len(wanted) * gap <= 1.0:  # when they fit, they stay inside
        assert s.min() >= gap / 2 - 1e-9 and s.max() <= 1 - gap / 2 + 1e-9
    # order kept: a higher point never gets a lower label
    order = np.argsort(wanted, kind="stable")
    assert (np.diff(y[order]) > 0).all()


def test_label_slots_leave_labels_that_do_not_collide_where_they_are() -> None:
    assert figures.label_slots([0.1, 0.5, 0.9], 0, 1, 0.1).tolist() == [0.1, 0.5, 0.9]


@pytest.mark.parametrize(
    ("values", "log"),
    [([1.0, 2.0, 5.0], False), ([1.0, 10.0, 30.0], True), ([0.0, 1.0, 100.0], False)],
)
def test_log_axis_only_for_positive_values_spanning_a_wide_ratio(values, log) -> None:
    assert figures.log_axis(values) is log


def test_robust_range_leaves_outliers_beyond_the_axes_but_keeps_configurations() -> None:
    bulk = np.linspace(8.0, 12.0, 500)
    lo, hi, log = figures.robust_range(np.r_[bulk, 900.0, 1200.0], np.array([11.0, 40.0]))
    assert hi == 40.0 and lo == pytest.approx(bulk.min()) and not log
    # no outliers: the full range
    assert figures.robust_range(bulk, np.array([]))[:2] == (bulk.min(), bulk.max())


def _figure_texts(fig) -> str:
    return " ".join([fig.layout.title.text or "", fig.layout.title.subtitle.text or ""])


def test_pareto_labels_only_the_front_and_states_its_counts(sweep: Analysis) -> None:
    front = sweep.fronts["shapes-vqa"]
    fig = figures.pareto(front, "p95", "shapes-vqa", sweep.results.knobs)
    labels = [a.text for a in fig.layout.annotations]
    assert sorted(labels) == sorted(front.loc[front["on_front"], "label"])
    assert len(labels) < len(front)
    # the runner's records carry 95% intervals: the front has error bars, dominated points none
    assert "n = 12 samples each" in _figure_texts(fig)
    assert "error bars: 95% confidence intervals" in _figure_texts(fig)
    bars = {t.name.rsplit(" (", 1)[0]: t.error_y.array is not None for t in fig.data if t.name}
    assert bars["Pareto front"] and not bars["dominated"]
    # records without intervals: no bars, and the subtitle says so
    bare = front.drop(columns=[c for c in front if c.endswith(("_lo", "_hi"))])
    fig = figures.pareto(bare, "p95", "shapes-vqa", sweep.results.knobs)
    assert "no intervals in these records" in _figure_texts(fig)
    assert all(t.error_x.array is None and t.error_y.array is None for t in fig.data)
    hover = " ".join(" ".join(t.hovertext) for t in fig.data if t.hovertext is not None)
    assert "top_k = 8" in hover and "n = 12 samples" in hover


def test_error_bars_and_ties_drawn_when_the_analysis_has_them(sweep: Analysis) -> None:
    front = sweep.fronts["shapes-vqa"].copy()
    front["accuracy_lo"], front["accuracy_hi"] = front["accuracy"] - 0.05, front["accuracy"] + 0.02
    front["T_total_p95_lo"], front["T_total_p95_hi"] = front["latency"] * 0.9, front["latency"]
    tied = ~front["on_front"] & (front.index % 2 == 0)
    front["tied_with_front"] = front["on_front"] | tied
    fig = figures.pareto(front.drop(columns="interval_confidence"), "p95", "t", sweep.results.knobs)
    by_name = {t.name.rsplit(" (", 1)[0]: t for t in fig.data if t.name}
    assert set(by_name) == {"dominated", "tied with the front (within noise)", "Pareto front"}
    t = by_name["tied with the front (within noise)"]
    assert len(t.x) == int(tied.sum())
    assert np.allclose(t.error_y.array, 0.02) and np.allclose(t.error_y.arrayminus, 0.05)
    assert "[" in t.hovertext[0] and "error bars: confidence intervals" in _figure_texts(fig)
    # dominated points keep their interval in the hover label, not as bars
    dominated = by_name["dominated"]
    assert dominated.error_y.array is None and "[" in dominated.hovertext[0]
    fig = figures.pareto(front.assign(interval_confidence=0.9), "p95", "t", sweep.results.knobs)
    assert "error bars: 90% confidence intervals" in _figure_texts(fig)


def test_the_decode_panel_without_varying_output_tokens_says_why(sweep: Analysis) -> None:
    data = scaling_points(sweep).assign(output_tokens=3)
    fits = sweep.fits.copy()
    fits.loc[fits["stage"] == "decode", ["slope", "r2"]] = np.nan  # as fit_line gives then
    fig = figures.scaling(data, fits)
    lines = [t for t in fig.data if t.mode == "lines"]
    assert {t.xaxis for t in lines} == {"x"}  # prefill fits only
    (note,) = [a.text for a in fig.layout.annotations]
    assert "output tokens = 3" in note and "no fit is drawn" in note
    # with x varying, every group has its line in both panels
    full = figures.scaling(scaling_points(sweep), sweep.fits)
    assert len([t for t in full.data if t.mode == "lines"]) == 2 * 4


def test_coupling_has_a_panel_per_knob_value_and_no_panel_for_a_fixed_knob(tmp_path: Path) -> None:
    d = write_synthetic_results(tmp_path, top_ks=(2, 4, 8), blocks=(8,), num_samples=6)
    a = analyze(d, write=False)
    front = a.fronts["shapes-vqa"]
    fig = figures.coupling(front, a.coupling["shapes-vqa"], a.results.knobs, "p95", "t")
    titles = [x.text for x in fig.layout.annotations if x.text]
    assert [t.split("<br>")[0] for t in titles] == [
        "tier=low",
        "tier=medium",
        "tier=high",
        "top_k=2",
        "top_k=4",
        "top_k=8",
    ]
    assert "fixed, so no panel: num_active_blocks" in _figure_texts(fig)
    assert "9 configurations (n = 6 samples each)" in _figure_texts(fig)


def test_every_figure_states_its_sample_count(sweep: Analysis) -> None:
    ev = sweep.evaluation
    assert ev is not None
    figs = [
        figures.pareto(sweep.fronts["shapes-vqa"], "p95", "t", sweep.results.knobs),
        figures.coupling(
            sweep.fronts["shapes-vqa"],
            sweep.coupling["shapes-vqa"],
            sweep.results.knobs,
            "p95",
            "t",
        ),
        figures.stage_bars(sweep.shares, sweep.results.configs),
        figures.scaling(scaling_points(sweep), sweep.fits),
        figures.parity(ev.per_sample, ev.per_config, sweep.results.configs, ev.method),
    ]
    for fig in figs:
        assert "n = " in _figure_texts(fig), _figure_texts(fig)


def test_memory_view_and_drift_banner_only_when_recorded(sweep: Analysis, tmp_path: Path) -> None:
    front = sweep.fronts["shapes-vqa"]
    assert figures.memory(front, sweep.results.knobs, "p95", "t") is None
    mem = front.assign(peak_memory_bytes=np.linspace(1, 2, len(front)) * 2**30)
    fig = figures.memory(mem, sweep.results.knobs, "p95", "t")
    assert fig is not None and np.allclose(fig.data[0].x, np.linspace(1024, 2048, len(front)))
    assert drift_message(sweep) is None
    page = write_report(sweep, tmp_path / "a")["report.html"].read_text()
    assert 'id="drift"' not in page
    env = sweep.results.environment
    env["drift"] = {"detected": True, "magnitude": 0.12, "noise": 0.03, "statistic": "x"}
    env["drift"]["message"] = "T_total drifted 12% over the sweep (noise 3%)"
    try:
        page = write_report(sweep, tmp_path / "b")["report.html"].read_text()
        md = (tmp_path / "b" / "analysis.md").read_text()
    finally:
        del env["drift"]
    assert '<p class="drift" id="drift"><b>Drift:</b> T_total drifted 12%' in page
    assert "> **Drift:** T_total drifted 12%" in md


@pytest.mark.slow
def test_a_hundred_configurations_keep_one_copy_of_plotly(tmp_path: Path) -> None:
    d = write_synthetic_results(
        tmp_path / "r",
        tiers=None,
        vision_tokens=(32, 64, 128, 256, 512),
        top_ks=(1, 2, 4, 6, 8),
        blocks=(2, 4, 6, 8, 10),
        num_samples=8,
        noise=0.05,
    )
    a = analyze(d, tmp_path / "a")
    assert len(a.results.configs) == 125
    page = a.files["report.html"].read_text()
    assert page.count(figures.plotly_js()[:200]) == 1
    # plotly.js is ~4.8 MB; the figures of 125 configurations add well under 3 MB
    assert len(page.encode()) < len(figures.plotly_js().encode()) + 3_000_000
    assert "all configurations (≈: tied with the front): 125 rows" in page  # long tables folded
    assert pd.read_json(tmp_path / "a" / "analysis.json", typ="series")["knobs"]
