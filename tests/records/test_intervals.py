"""Intervals: Wilson against published values, the bootstrap against its definition."""

from __future__ import annotations

import numpy as np
import pytest

from knoblab.records.intervals import (
    accuracy_interval,
    bootstrap_ci,
    bootstrap_cis,
    relative_half_width,
    stat_quantile,
    wilson_interval,
)

# Newcombe (1998), "Two-sided confidence intervals for the single proportion", Stat. Med.
# 17:857, Table I, method 3 (Wilson score without continuity correction), 95%.
NEWCOMBE = [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
]


@pytest.mark.parametrize(("k", "n", "lo", "hi"), NEWCOMBE)
def test_wilson_matches_newcombe_table(k, n, lo, hi):
    got = wilson_interval(k, n)
    assert got[0] == pytest.approx(lo, abs=5e-5)
    assert got[1] == pytest.approx(hi, abs=5e-5)


def test_wilson_edges_and_width():
    assert wilson_interval(0, 0) == (None, None)
    assert wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 10)[0] == 0.0
    # the 99% interval is wider than the 95% one around the same proportion
    lo95, hi95 = wilson_interval(30, 100)
    lo99, hi99 = wilson_interval(30, 100, confidence=0.99)
    assert lo99 < lo95 < 0.3 < hi95 < hi99
    with pytest.raises(ValueError, match="successes 11"):
        wilson_interval(11, 10)


def test_bootstrap_is_reproducible_and_seeded():
    x = np.random.default_rng(3).gamma(2.0, 10.0, 200)
    a = bootstrap_cis(x, ["mean", "p50", "p95"], seed=7)
    assert a == bootstrap_cis(x, ["mean", "p50", "p95"], seed=7)
    assert a != bootstrap_cis(x, ["mean", "p50", "p95"], seed=8)
    for stat, q in (("mean", None), ("p50", 50), ("p95", 95)):
        point = x.mean() if q is None else np.percentile(x, q)
        lo, hi = a[stat]
        assert lo <= point <= hi
    # one statistic alone equals the same statistic in a shared draw
    assert bootstrap_ci(x, "p95", seed=7) == a["p95"]


def test_bootstrap_matches_its_definition():
    """Percentile bootstrap by the book, with numpy's own percentile, same draws."""
    x = np.random.default_rng(5).normal(50.0, 5.0, 40)
    rng = np.random.default_rng(11)
    idx = rng.integers(0, x.size, size=(500, x.size), dtype=np.int32)
    p95 = np.percentile(x[idx], 95, axis=1)
    want = tuple(np.quantile(p95, [0.025, 0.975]))
    got = bootstrap_ci(x, "p95", resamples=500, seed=11)
    assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize(
    ("x", "resamples"),
    [
        (np.random.default_rng(1).integers(0, 5, 60).astype(float), 300),  # many ties
        (np.random.default_rng(2).lognormal(2.0, 1.0, 2000), 200),
        (np.random.default_rng(3).normal(9.0, 1.0, 40_000), 3),  # int32 ranks
    ],
)
def test_bootstrap_by_ranks_equals_sorting_the_resamples(x, resamples):
    """The rank shortcut gives numpy's own figures on the same draws, bit for bit."""
    from knoblab.records.intervals import bootstrap_distributions, resample_indices

    stats = ["mean", "p1", "p50", "p95", "p99"]
    got = bootstrap_distributions(x, stats, resample_indices(x.size, resamples, 4))
    idx = np.concatenate(list(resample_indices(x.size, resamples, 4)))
    sample = x[idx]
    np.testing.assert_array_equal(got["mean"], sample.mean(axis=1))
    for s in stats[1:]:
        want = np.percentile(sample, float(s[1:]), axis=1, method="linear")
        np.testing.assert_allclose(got[s], want, rtol=1e-13, atol=0)


def test_a_kept_draw_gives_the_figures_of_sorting_its_resamples():
    """Resamples.draw's kept path (intp indices, the means from the counts matrix) gives
    numpy's own figures on the same draws: percentiles bit for bit, means to rounding."""
    from knoblab.records.intervals import Resamples, bootstrap_distributions, resample_indices

    x = np.random.default_rng(7).lognormal(1.0, 0.5, 300)
    draws = Resamples.draw(x.size, 400, 9)
    assert draws.counts is not None and draws.counts.shape == (400, x.size)
    idx = np.concatenate(list(resample_indices(x.size, 400, 9)))
    np.testing.assert_array_equal(np.concatenate(draws.chunks), idx)
    np.testing.assert_array_equal(draws.counts.sum(axis=1), np.full(400, x.size))
    sample = x[idx]
    got = bootstrap_distributions(x, ["mean", "p50", "p99"], draws)
    np.testing.assert_allclose(got["mean"], sample.mean(axis=1), rtol=1e-13, atol=0)
    for q in (50, 99):
        want = np.percentile(sample, q, axis=1, method="linear")
        np.testing.assert_allclose(got[f"p{q}"], want, rtol=1e-13, atol=0)
    assert list(bootstrap_distributions(x, ["mean"], draws)) == ["mean"]


def test_figures_monotone_in_an_earlier_one_share_its_sorted_ranks():
    """A figure that rises (or falls) with one bootstrapped before reuses its resamples'
    sorted ranks, ties included, and still gets numpy's own percentiles on the draw."""
    from knoblab.records.intervals import Resamples, bootstrap_distributions, resample_indices

    rng = np.random.default_rng(3)
    x = np.round(rng.lognormal(1.0, 0.4, 200), 1)  # ties
    figures = {
        "x": x,
        "half": x / 2,  # rises with x
        "rate": 1000.0 / x,  # falls as x rises
        "capped": np.minimum(x, 3.0),  # never falls: ties where x differs
        "other": rng.normal(5.0, 1.0, 200),  # unrelated: its own ranks
    }
    draws = Resamples.draw(x.size, 300, 2)
    sample = np.concatenate(list(resample_indices(x.size, 300, 2)))
    made = []
    for name, y in figures.items():
        before = len(draws._carriers)
        got = bootstrap_distributions(y, ["p5", "p50", "p99"], draws)
        made.append(len(draws._carriers) - before)
        for q in (5, 50, 99):
            want = np.percentile(y[sample], q, axis=1, method="linear")
            np.testing.assert_allclose(got[f"p{q}"], want, rtol=1e-13, atol=0, err_msg=name)
    assert made == [1, 0, 0, 0, 1]


def test_bootstrap_interval_narrows_with_more_samples():
    rng = np.random.default_rng(0)
    small = rng.exponential(10.0, 30)
    large = rng.exponential(10.0, 3000)
    w_small = np.diff(bootstrap_ci(small, "p95"))[0]
    w_large = np.diff(bootstrap_ci(large, "p95"))[0]
    assert w_large < w_small / 3


def test_bootstrap_degenerate_inputs():
    assert bootstrap_ci([], "mean") == (None, None)
    assert bootstrap_ci([None, float("nan")], "p50") == (None, None)
    assert bootstrap_ci([4.0], "p99") == (4.0, 4.0)
    assert bootstrap_ci([2.0, 2.0, 2.0], "mean") == (2.0, 2.0)


@pytest.mark.parametrize("bad", ["p100", "p0", "median", "95", "p"])
def test_bad_statistic_is_one_line(bad):
    with pytest.raises(ValueError, match=f"statistic '{bad}' is not allowed"):
        stat_quantile(bad)


def test_accuracy_interval_picks_the_method():
    lo, hi, how = accuracy_interval([1, 0, 1, 1, None])
    assert how == "wilson" and (lo, hi) == wilson_interval(3, 4)
    lo, hi, how = accuracy_interval([0.5, 0.9, 1.0, 0.2])
    assert how == "bootstrap" and lo <= np.mean([0.5, 0.9, 1.0, 0.2]) <= hi


@pytest.mark.parametrize(
    ("lo", "hi", "point", "want"),
    [(97.0, 103.0, 100.0, 0.03), (None, 1.0, 1.0, None), (0.0, 0.0, 0.0, 0.0), (1, 2, -10, 0.05)],
)
def test_relative_half_width(lo, hi, point, want):
    assert relative_half_width(lo, hi, point) == (pytest.approx(want) if want else want)


def test_kept_draws_stay_within_their_byte_budget_and_the_newest_stays(monkeypatch):
    """A sweep's few counts keep their draws (no redraw per record); past the budget the
    least recently used draw goes first."""
    from knoblab.records import intervals as iv

    monkeypatch.setattr(iv, "_KEPT", iv.OrderedDict())
    one = iv._nbytes(iv._new_draw(100, 50, 0))
    monkeypatch.setattr(iv, "_KEPT_BYTES", 2 * one + one // 2)  # room for two
    a = iv._kept_draw(100, 50, 0)
    b = iv._kept_draw(101, 50, 0)
    assert iv._kept_draw(100, 50, 0) is a  # used again: now the newest
    iv._kept_draw(102, 50, 0)
    assert list(iv._KEPT) == [(100, 50, 0), (102, 50, 0)] and b is not iv._kept_draw(101, 50, 0)


def test_a_records_bootstrap_runs_on_one_thread():
    """The records' bootstrap (run between a sweep's measurements) keeps to the calling
    thread: no BLAS thread pool spinning on the other cores afterwards. One thread cannot
    use more CPU time than wall time, however loaded the machine is."""
    import time

    from knoblab.records.intervals import Resamples, bootstrap_distributions

    x = np.random.default_rng(4).lognormal(1.0, 0.5, 1500)
    draws = Resamples.draw(x.size, 1000, 0)
    bootstrap_distributions(x, ["mean"], draws)  # warm
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(200):
        bootstrap_distributions(x, ["mean"], draws)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    assert cpu <= 1.25 * wall + 0.01, (cpu, wall)
