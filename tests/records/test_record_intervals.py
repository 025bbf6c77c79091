"""Records built with run.percentiles and intervals (knoblab.records.aggregate, schema v3)."""

from __future__ import annotations

import numpy as np
import pytest

from knoblab import records
from knoblab.errors import ConfigError
from knoblab.records.aggregate import Resampler
from knoblab.records.intervals import bootstrap_ci


def _rows(n: int = 40) -> list[dict]:
    rng = np.random.default_rng(4)
    out = []
    for i in range(n):
        t = float(rng.lognormal(2.0, 0.3))
        out.append(
            {
                "status": "ok",
                "accuracy": float(i % 3 == 0),
                "T_vision_total": t / 3,
                "T_LLM_prefill": t / 3,
                "T_LLM_decode": t / 3,
                "T_total": t,
                # a one-token answer has no TPOT: this figure rests on fewer values
                "T_decode_per_token": None if i % 4 == 0 else t / 6,
            }
        )
    return out


def _build(rows: list[dict], **kw) -> dict:
    return records.build_record(
        task="t",
        model="m",
        knobs={"resolution": 2},
        effective={},
        rows=rows,
        status="ok",
        error=None,
        environment={},
        sampling={},
        **kw,
    )


@pytest.mark.parametrize(
    ("value", "want"),
    [([50, 95, 99], (50.0, 95.0, 99.0)), ([99, 90], (90.0, 99.0)), ((99.9,), (99.9,))],
)
def test_check_percentiles_accepts(value, want) -> None:
    assert records.check_percentiles(value) == want


@pytest.mark.parametrize("value", [[], [0], [100], [50, 50.0], "p90", [True], [50, "95"], None])
def test_check_percentiles_refuses_in_one_line(value) -> None:
    with pytest.raises(ConfigError, match=r"^run\.percentiles=.* is invalid: allowed is a non"):
        records.check_percentiles(value)


def test_percentile_names() -> None:
    assert [records.percentile_name(q) for q in (50, 90.0, 99.9)] == ["p50", "p90", "p99.9"]
    assert records.stats_for((50, 90))[-2:] == ("p50", "p90")
    assert records.is_percentile_warning("p90 rests on 8 samples (needs >= 10): T_total")
    assert records.is_percentile_warning("p99.9 rests on 8 samples (needs >= 1000): T_total")
    assert not records.is_percentile_warning("p90: something else")


def test_record_holds_the_percentiles_asked_for() -> None:
    rows = _rows()
    rec = _build(rows, percentiles=[50, 90])
    agg = rec["aggregate_stats"]
    x = np.asarray([r["T_total"] for r in rows])
    assert rec["percentiles"] == [50.0, 90.0]
    assert agg["T_total_p90"] == pytest.approx(np.percentile(x, 90))
    assert "T_total_p95" not in agg and "T_total_p95_lo" not in agg
    assert agg["T_total_p90_lo"] <= agg["T_total_p90"] <= agg["T_total_p90_hi"]
    records.check_record(rec, "rec")


def test_each_figure_interval_is_bootstrap_ci_of_its_own_values() -> None:
    """Figures with fewer values (TPOT of one-token answers) draw their own index matrix."""
    rows = _rows()
    rec = _build(rows)
    agg = rec["aggregate_stats"]
    for f in ("T_total", "T_decode_per_token"):
        x = [r[f] for r in rows if r[f] is not None]
        assert agg[f"{f}_count"] == len(x)
        for stat in ("mean", "p50", "p95", "p99"):
            lo, hi = bootstrap_ci(x, stat)
            est = agg[f"{f}_{stat}"]
            assert (agg[f"{f}_{stat}_lo"], agg[f"{f}_{stat}_hi"]) == pytest.approx(
                (min(lo, est), max(hi, est))
            )
    k = sum(r["accuracy"] for r in rows)
    assert (rec["accuracy_lo"], rec["accuracy_hi"]) == pytest.approx(
        records.intervals.wilson_interval(k, len(rows))
    )
    assert rec["intervals"]["accuracy"] == "wilson"


def test_non_binary_accuracy_gets_the_bootstrap_of_the_mean() -> None:
    rows = _rows()
    for i, r in enumerate(rows):
        r["accuracy"] = (i % 4) / 3  # VQA accuracy's thirds
    rec = _build(rows)
    acc = [r["accuracy"] for r in rows]
    assert rec["intervals"]["accuracy"] == "bootstrap"
    assert (rec["accuracy_lo"], rec["accuracy_hi"]) == pytest.approx(bootstrap_ci(acc, "mean"))


def test_one_index_draw_per_count_is_reused() -> None:
    rs = Resampler(records.IntervalSettings(resamples=50, seed=3))
    a = rs.indices(40)
    assert rs.indices(40) is a and rs.indices(30) is not a
    assert sum(len(c) for c in a) == 50 and all(c.shape[1] == 40 for c in a)
    # the next record of the same count reuses the draw (read-only), not just its values
    b = Resampler(records.IntervalSettings(resamples=50, seed=3)).indices(40)
    assert b is not a and all(x is y for x, y in zip(a, b, strict=True))
    assert not a.chunks[0].flags.writeable


def test_record_without_samples_has_no_intervals() -> None:
    rec = _build([])
    assert rec["accuracy_lo"] is None and rec["intervals"]["accuracy"] is None
    assert rec["aggregate_stats"]["T_total_p95_lo"] is None


def test_aggregates_read_in_one_table_equal_those_read_value_by_value(monkeypatch) -> None:
    """The fast path (one itemgetter per row) and the per-value path give the same figures,
    and a row that lacks a figure or holds None falls back / counts as missing."""
    import knoblab.records.aggregate as agg

    rows = _rows()
    rows[3]["T_LLM_decode"] = None
    rows[5]["T_total"] = float("nan")
    fast, _ = agg.aggregate_stats(rows, intervals=records.IntervalSettings(resamples=40))
    monkeypatch.setattr(agg, "_table", lambda rows, names: {})
    slow, _ = agg.aggregate_stats(rows, intervals=records.IntervalSettings(resamples=40))
    assert fast == slow
    assert fast["T_LLM_decode_count"] == len(rows) - 1 and fast["T_total_count"] == len(rows) - 1
    monkeypatch.undo()
    del rows[2]["T_LLM_prefill"]  # a row without the figure: the per-value path
    partial, _ = agg.aggregate_stats(rows)
    assert partial["T_LLM_prefill_count"] == len(rows) - 1


@pytest.mark.parametrize(
    ("target", "theoretical", "actual", "diff"),
    [
        (64, 81, 60, 4),  # the target wins
        (None, 81, 60, 21),  # no target: the theoretical count
        (0, 81, 60, 21),  # a zero target reads as none (``target or theoretical``)
        (0, None, 60, None),
        (None, None, 60, None),
        (64, 81, None, None),  # no actual count: no difference
    ],
)
def test_derived_token_figures_read_in_one_table_equal_the_row_by_row_reading(
    monkeypatch, target, theoretical, actual, diff
) -> None:
    """vision_tokens / num_crops / vision_tokens_diff from the table (runner rows carry
    every source) are the figures _figure reads row by row."""
    import knoblab.records.aggregate as agg

    rows = []
    for i, r in enumerate(_rows(12)):
        odd = i % 2 == 1  # half the rows hold the case, half plain numbers
        r |= {
            "target_vision_tokens": target if odd else 16,
            "theoretical_vision_tokens": theoretical if odd else 20,
            "actual_vision_tokens": actual if odd else 16,
            "actual_num_crops": 3,
            "input_text_tokens": 9 + i,
            "output_tokens": 4,
        }
        rows.append(r)
    assert agg._table(rows, agg._SOURCES)  # the fast path is taken
    assert agg._figure(rows[1], "vision_tokens_diff") == diff
    fast, _ = agg.aggregate_stats(rows)
    monkeypatch.setattr(agg, "_table", lambda rows, names: {})
    slow, _ = agg.aggregate_stats(rows)
    assert fast == slow
    assert fast["vision_tokens_diff_count"] == (12 if diff is not None else 6)
    assert fast["num_crops_mean"] == 3.0 and fast["vision_tokens_count"] == (
        12 if actual is not None else 6
    )


@pytest.mark.parametrize(
    "x",
    [
        np.random.default_rng(8).lognormal(2.0, 0.5, 500),
        np.random.default_rng(9).integers(0, 4, 61).astype(float),  # ties
        np.full(7, 3.25),  # constant
        np.array([1.0, 1e9]),  # two values, far apart
        np.array([4.0]),  # one value: std 0
    ],
)
def test_figures_computed_together_are_each_figures_own_numpy_figures(x) -> None:
    """_point_stats (every full figure of a record in one call per statistic) gives what
    numpy gives on the figure alone, bit for bit."""
    import knoblab.records.aggregate as agg

    pcts = (50.0, 95.0, 99.0, 12.5)
    grid = np.stack([x, x[::-1] * 3.0, x + 0.1])
    got = agg._point_stats(grid, pcts)
    for row, want_x in zip(got, grid, strict=True):
        want_x = want_x.copy()
        std = float(want_x.std(ddof=1)) if want_x.size > 1 else 0.0
        want = [float(want_x.mean()), std, float(want_x.min()), float(want_x.max())]
        want += [float(v) for v in np.percentile(want_x, list(pcts), method="linear")]
        assert row == want
