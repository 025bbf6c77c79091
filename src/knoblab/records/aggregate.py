"""Aggregates of a configuration's per-sample rows, and the record built from them.

For every figure ``m`` and statistic ``s`` of :func:`~knoblab.records.schema.stats_for`
(the record's ``percentiles``, by default p50/p95/p99), ``aggregate_stats["<m>_<s>"]``.
``std`` is the sample standard deviation (``ddof=1``; 0.0 for one sample), percentiles
use numpy's default linear interpolation (``np.percentile(x, q, method="linear")``,
Hyndman & Fan type 7). Missing values (``None``: e.g. ``T_decode_per_token`` of a
one-token answer) are left out, so ``<m>_count`` says how many values each figure rests
on, and the percentile warnings quote that count
(:func:`~knoblab.records.schema.percentile_warnings`).

Intervals (:mod:`knoblab.records.intervals`; the record's ``intervals`` block says
which settings and which accuracy method were used): for every latency figure
(:data:`~knoblab.records.schema.INTERVAL_FIELDS`) its mean and each percentile get
``<m>_<s>_lo`` / ``<m>_<s>_hi``, a seeded **percentile bootstrap** interval (Efron &
Tibshirani 1993, ch. 13; ``resamples`` resamples, ``confidence``, ``seed``). The
accuracy gets ``accuracy_lo`` / ``accuracy_hi``: the **Wilson score interval** (Wilson
1927; Agresti & Coull 1998) when every score is 0 or 1 (exact match), else the
percentile bootstrap of the mean (VQA accuracy's thirds, ANLS): ``intervals.accuracy``
is ``wilson`` or ``bootstrap``.

NOTE: one resample index matrix per record (per distinct count of values), reused by
every figure: the resamples of ``T_vision_total`` and ``T_total`` draw the same samples,
and a record costs one index draw plus a ``resamples x n`` gather and row sort per
figure (``benchmarks/bench_intervals.py``). A percentile bootstrap interval can miss
its own estimate on few, skewed values; the bound is then moved to the estimate, so
every interval in a record contains the figure it belongs to (otherwise it equals
``bootstrap_ci`` of the figure's values with the record's settings).

Example:
    >>> stats, warns = aggregate_stats([{"T_total": 10.0}, {"T_total": 20.0}], ["T_total"])
    >>> stats["T_total_p50"], warns
    (15.0, ['p95 rests on 2 samples (needs >= 20): T_total', 'p99 rests on 2 samples (needs >= 100): T_total'])
"""

from __future__ import annotations

import math
import operator
import statistics
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from knoblab.records import intervals
from knoblab.records.schema import (
    DEFAULT_PERCENTILES,
    INTERVAL_FIELDS,
    LATENCY_FIELDS,
    SCHEMA_VERSION,
    STATS,
    TOKEN_FIELDS,
    Record,
    percentile_name,
    percentile_warnings,
)


@dataclass(frozen=True)
class IntervalSettings:
    """How a record's confidence intervals are computed (its ``intervals`` block).

    Attributes:
        confidence: the intervals' nominal coverage, in (0, 1).
        resamples: bootstrap resamples per figure.
        seed: seed of the resample indices (``numpy.random.default_rng(seed)``).
    """

    confidence: float = intervals.CONFIDENCE
    resamples: int = intervals.RESAMPLES
    seed: int = intervals.SEED

    def describe(self, accuracy: str | None) -> dict[str, Any]:
        """The record's ``intervals`` block; ``accuracy``: ``wilson`` or ``bootstrap``."""
        return {
            "method": intervals.METHOD,
            "confidence": self.confidence,
            "resamples": self.resamples,
            "seed": self.seed,
            "figures": "mean and every percentile of each latency figure",
            "accuracy": accuracy,
        }


class Resampler:
    """One record's bootstrap indices: drawn once per count of values, reused by every figure.

    ``indices(n)`` iterates over ``intervals.resample_indices(n, resamples, seed)``, the
    very indices :func:`~knoblab.records.intervals.bootstrap_ci` draws, so a record's
    intervals equal ``bootstrap_ci`` of the figure's values with the record's settings.
    """

    def __init__(self, settings: IntervalSettings) -> None:
        self.settings = settings
        self._cache: dict[int, intervals.Resamples] = {}
        self._done: dict[tuple[bytes, tuple[str, ...]], dict[str, tuple[Any, Any]]] = {}

    def indices(self, n: int) -> intervals.Resamples:
        if n not in self._cache:
            s = self.settings
            self._cache[n] = intervals.Resamples.draw(n, s.resamples, s.seed)
        return self._cache[n]

    def cis(self, x: np.ndarray, stats: Sequence[str]) -> dict[str, tuple[Any, Any]]:
        """``{stat: (lo, hi)}`` of ``x`` (NaN-free) with the shared indices.

        Figures with the very same values (``T_tpot`` is ``T_decode_per_token`` at batch
        size 1) are bootstrapped once: same values, same draw, same intervals.
        """
        key = (np.ascontiguousarray(x, dtype=float).tobytes(), tuple(stats))
        if key not in self._done:
            self._done[key] = self._cis(x, stats)
        return dict(self._done[key])

    def _cis(self, x: np.ndarray, stats: Sequence[str]) -> dict[str, tuple[Any, Any]]:
        s = self.settings
        return intervals.bootstrap_cis(
            x,
            stats,
            confidence=s.confidence,
            resamples=s.resamples,
            seed=s.seed,
            indices=self.indices(x.size),
        )


def accuracy_interval(
    scores: Sequence[float], settings: IntervalSettings | Resampler
) -> tuple[float | None, float | None, str | None]:
    """(lo, hi, method) of the mean score: Wilson for 0/1 scores, else the bootstrap mean
    (with a :class:`Resampler`: its draw of the scores' count, the same indices)."""
    if not scores:
        return None, None, None
    rs = settings if isinstance(settings, Resampler) else None
    s = rs.settings if rs is not None else settings
    assert isinstance(s, IntervalSettings)
    n = sum(1 for v in scores if v is not None and v == v)
    return intervals.accuracy_interval(
        scores,
        confidence=s.confidence,
        resamples=s.resamples,
        seed=s.seed,
        indices=rs.indices(n) if rs is not None and n else None,
    )


def _contain(lo: float | None, hi: float | None, estimate: float) -> tuple[Any, Any]:
    """The interval widened to its estimate (a percentile bootstrap can miss it)."""
    if lo is None or hi is None:
        return lo, hi
    return min(lo, estimate), max(hi, estimate)


def _figure(row: Mapping[str, Any], name: str) -> Any:
    if name == "vision_tokens":
        return row.get("actual_vision_tokens")
    if name == "num_crops":
        return row.get("actual_num_crops")
    if name == "vision_tokens_diff":
        target = row.get("target_vision_tokens") or row.get("theoretical_vision_tokens")
        actual = row.get("actual_vision_tokens")
        return None if target is None or actual is None else target - actual
    return row.get(name)


_DERIVED = ("vision_tokens", "num_crops", "vision_tokens_diff")


def _table(rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, np.ndarray]:
    """``{name: its values as floats, NaN where None}`` for every row that has every name.

    NOTE: one ``itemgetter`` per row and one ``np.array`` (numpy reads None as NaN in a
    float array): a record's figures come out of its rows in C, not value by value
    (a record of 500 rows aggregates ~30 figures; benchmarks/bench_overhead.py). Empty
    when some row lacks a name or holds a non-number: :func:`_column` then reads each.
    """
    if not rows or not names:
        return {}
    get = operator.itemgetter(*names)
    try:
        grid = np.array([get(r) for r in rows], dtype=float)
    except (KeyError, TypeError, ValueError):
        return {}
    grid = grid.reshape(len(rows), len(names))
    return {n: grid[:, i] for i, n in enumerate(names)}


_SOURCES = (
    "actual_vision_tokens",
    "actual_num_crops",
    "target_vision_tokens",
    "theoretical_vision_tokens",
)


def _derived(rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """:data:`_DERIVED`'s columns from one :func:`_table` of their sources (as
    :func:`_figure` reads them row by row); empty when a row lacks a source."""
    t = _table(rows, _SOURCES)
    if not t:
        return {}
    target = t["target_vision_tokens"]
    # ``target or theoretical``: a missing (NaN) or zero target falls back
    target = np.where(np.isnan(target) | (target == 0), t["theoretical_vision_tokens"], target)
    return {
        "vision_tokens": t["actual_vision_tokens"],
        "num_crops": t["actual_num_crops"],
        "vision_tokens_diff": target - t["actual_vision_tokens"],
    }


def _column(rows: Sequence[Mapping[str, Any]], name: str) -> np.ndarray:
    """The figure's values over ``rows`` as floats, None and NaN left out.

    NOTE: one ``np.fromiter`` over the rows (None read as NaN, then dropped): a record
    aggregates some 30 figures of every row, and a Python filter per value cost the
    runner ~10 us per sample (benchmarks/bench_overhead.py).
    """
    nan = math.nan
    if name in _DERIVED:
        vals = (_figure(r, name) for r in rows)
    else:
        vals = (r.get(name) for r in rows)
    x = np.fromiter((nan if v is None else v for v in vals), dtype=float, count=len(rows))
    return x[~np.isnan(x)]


def _point_stats(grid: np.ndarray, percentiles: Sequence[float]) -> list[list[float]]:
    """Per row of ``grid`` (one figure's values each, no NaN, at least one): mean, std
    (ddof 1; 0 for one value), min, max and each percentile (numpy's linear method).

    NOTE: a row's reductions run along a contiguous axis, as on the figure alone, so the
    figures are the ones ``x.mean()`` / ``x.std(ddof=1)`` / ``np.percentile(x, ...)`` give,
    bit for bit; one call per statistic for all figures, not one per figure (~20 us of
    numpy's overhead per call, ~30 figures per record: benchmarks/bench_overhead.py).
    """
    grid = np.ascontiguousarray(grid, dtype=float)
    n = grid.shape[1]
    cols = [
        grid.mean(axis=1),
        grid.std(axis=1, ddof=1) if n > 1 else np.zeros(grid.shape[0]),
        grid.min(axis=1),
        grid.max(axis=1),
    ]
    if len(percentiles):
        cols.extend(np.percentile(grid, list(percentiles), axis=1, method="linear"))
    return np.stack(cols, axis=1).tolist()


def _whole_figures(
    table: Mapping[str, np.ndarray], fields: Sequence[str], percentiles: Sequence[float]
) -> dict[str, tuple[np.ndarray, list[float]]]:
    """``{figure: (its values, its point statistics)}`` for the table's figures that have
    a value on every row (most of a runner's record): their statistics in one pass."""
    names = [f for f in dict.fromkeys(fields) if f in table and not np.isnan(table[f]).any()]
    if not names or not len(table[names[0]]):
        return {}
    grid = np.stack([table[f] for f in names])  # figures x rows, each row contiguous
    return dict(zip(names, zip(grid, _point_stats(grid, percentiles), strict=True), strict=True))


def aggregate_stats(
    rows: Sequence[Mapping[str, Any]],
    fields: Iterable[str] = LATENCY_FIELDS + TOKEN_FIELDS,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    intervals: IntervalSettings | Resampler | None = None,
    interval_fields: Collection[str] = INTERVAL_FIELDS,
) -> tuple[dict[str, float | int | None], list[str]]:
    """``{"<field>_<stat>": value}`` over ``rows`` and the percentile warnings.

    Fields with no value at all get ``count`` 0 and ``None`` statistics. Warnings cover
    the latency figures among ``fields``, each with its own count. With ``intervals``,
    the figures of ``interval_fields`` (default :data:`INTERVAL_FIELDS`) get ``_lo`` /
    ``_hi`` on their mean and percentiles (``None`` when the figure has no value).
    """
    stats: dict[str, float | int | None] = {}
    counts: dict[str, int] = {}
    fields = list(fields)
    names = [percentile_name(q) for q in percentiles]
    rs = Resampler(intervals) if isinstance(intervals, IntervalSettings) else intervals
    table = _table(rows, [f for f in dict.fromkeys(fields) if f not in _DERIVED])
    if table and any(f in _DERIVED for f in fields):
        table.update(_derived(rows))
    whole = _whole_figures(table, fields, percentiles)
    for name in fields:
        if name in whole:
            x, point = whole[name]
        else:
            x = table[name][~np.isnan(table[name])] if name in table else _column(rows, name)
            point = _point_stats(x[None, :], percentiles)[0] if x.size else []
        stats[f"{name}_count"] = counts[name] = int(x.size)
        with_ci = rs is not None and name in interval_fields
        if x.size == 0:
            for s in (*STATS[1:5], *names):
                stats[f"{name}_{s}"] = None
                if with_ci and s not in ("std", "min", "max"):
                    stats[f"{name}_{s}_lo"] = stats[f"{name}_{s}_hi"] = None
            continue
        for s, v in zip((*STATS[1:5], *names), point, strict=True):
            stats[f"{name}_{s}"] = v
        if with_ci:
            assert rs is not None
            for s, (lo, hi) in rs.cis(x, ["mean", *names]).items():
                est = stats[f"{name}_{s}"]
                stats[f"{name}_{s}_lo"], stats[f"{name}_{s}_hi"] = _contain(lo, hi, est)  # type: ignore[arg-type]
    warns = percentile_warnings(counts, [f for f in fields if f in LATENCY_FIELDS], percentiles)
    return stats, warns


def _mode(values: Sequence[Any]) -> Any:
    vals = [tuple(v) if isinstance(v, list) else v for v in values if v is not None]
    if not vals:
        return None
    value = Counter(vals).most_common(1)[0][0]
    return list(value) if isinstance(value, tuple) else value


def build_record(
    *,
    task: str,
    model: str,
    knobs: Mapping[str, Any],
    effective: Mapping[str, Any],
    rows: list[dict[str, Any]],
    status: str,
    error: str | None,
    environment: Mapping[str, Any],
    sampling: Mapping[str, Any],
    extra_warnings: Sequence[str] = (),
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    intervals: IntervalSettings | Resampler | None = None,
) -> Record:
    """One configuration's record, seed 002's fields first (see docs/profiling.md).

    Aggregates and ``accuracy`` cover the rows with ``status == "ok"``. ``percentiles``
    (``run.percentiles``) are the percentiles of every figure; ``intervals`` (default
    :class:`IntervalSettings`) how their confidence intervals are computed, or a
    :class:`Resampler` the caller goes on using for the record's other figures.
    """
    ok = [r for r in rows if r.get("status") == "ok"]
    crops = [r["actual_num_crops"] for r in ok if r.get("actual_num_crops") is not None]
    acc = [r["accuracy"] for r in ok if r.get("accuracy") is not None]
    resampler = intervals if isinstance(intervals, Resampler) else None
    resampler = resampler or Resampler(intervals or IntervalSettings())
    settings = resampler.settings
    percentiles = tuple(float(q) for q in percentiles)
    stats, warns = aggregate_stats(ok, percentiles=percentiles, intervals=resampler)
    acc_lo, acc_hi, acc_method = accuracy_interval(acc, resampler)
    failed = len(rows) - len(ok)
    warnings = list(extra_warnings) + warns
    if failed:
        warnings.append(
            f"{failed} of {len(rows)} samples failed; aggregates cover the other {len(ok)}"
        )

    def mean(key: str) -> float | None:
        vals = [r[key] for r in ok if r.get(key) is not None]
        return float(sum(vals) / len(vals)) if vals else None

    n = len(acc)
    acc_mean = float(sum(acc) / n) if n else None
    acc_std = float(statistics.stdev(acc)) if n > 1 else (0.0 if n == 1 else None)
    return {
        "schema_version": SCHEMA_VERSION,
        "tier": knobs.get("tier"),
        "tier_range": effective.get("tier_range"),
        "selected_crops_mean": float(sum(crops) / len(crops)) if crops else None,
        "selected_crops_distribution": {str(k): v for k, v in sorted(Counter(crops).items())},
        "target_vision_tokens_mean": mean("target_vision_tokens"),
        "actual_vision_tokens_mean": mean("actual_vision_tokens"),
        "max_crops": effective.get("max_crops", max(crops) if crops else None),
        "top_k": effective.get("top_k", knobs.get("top_k")),
        "num_active_blocks": effective.get("num_active_blocks", knobs.get("num_active_blocks")),
        "num_total_blocks": effective.get("num_total_blocks"),
        "active_block_indices": effective.get("active_block_indices"),
        "vision_tokens": knobs.get("vision_tokens"),
        "accuracy": acc_mean,
        "accuracy_std": acc_std,
        "accuracy_stderr": acc_std / n**0.5 if acc_std is not None and n > 0 else None,
        "accuracy_lo": acc_lo,
        "accuracy_hi": acc_hi,
        "percentiles": list(percentiles),
        "intervals": settings.describe(acc_method),
        "num_samples": len(rows),
        "num_failed_samples": failed,
        "theoretical_num_crops": _mode([r.get("theoretical_num_crops") for r in ok]),
        "theoretical_tiling": _mode([r.get("theoretical_tiling") for r in ok]),
        "theoretical_image_size": _mode([r.get("theoretical_image_size") for r in ok]),
        "theoretical_vision_tokens": _mode([r.get("theoretical_vision_tokens") for r in ok]),
        "aggregate_stats": stats,
        "task": task,
        "model": model,
        "knobs": dict(knobs),
        "effective_knobs": dict(effective),
        "status": status,
        "error": error,
        "warnings": warnings,
        "sampling": dict(sampling),
        "environment": dict(environment),
        "per_sample_results": rows,
    }
