"""Aggregates of the cost figures (issue 15): TTFT, TPOT, ITL, memory, throughput, energy.

``cost_aggregates(rows)`` gives ``aggregate_stats``-style ``<figure>_<stat>`` entries for
every figure of :data:`~knoblab.records.schema.COST_FIELDS` over the ``ok`` rows, plus
``itl_ms_<stat>`` over every decode step of every sample (the ITL distribution, as
``vllm bench serve`` reports it: all inter-token gaps pooled, not a mean per request).
It reuses :func:`knoblab.records.aggregate.aggregate_stats`, so the statistics, the
percentile method and the counts are the latency figures' own.

NOTE: per-configuration figures (``peak_memory_bytes``, ``weights_bytes``) are the same
on every row of a configuration; their ``_mean`` is that value. Per-batch figures
(throughput, energy) repeat on each row of a batch, so their mean over rows weighs each
batch by its size.

Example:
    >>> stats, warns = cost_aggregates([{"status": "ok", "T_ttft": 5.0, "itl_ms": [1.0, 2.0]}])
    >>> stats["T_ttft_mean"], stats["itl_ms_count"], stats["itl_ms_p50"]
    (5.0, 2, 1.5)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from knoblab.records.aggregate import IntervalSettings, Resampler, aggregate_stats
from knoblab.records.schema import (
    COST_FIELDS,
    COST_LATENCY_FIELDS,
    DEFAULT_PERCENTILES,
    ENERGY_FIELDS,
    ITL_FIELD,
    THROUGHPUT_FIELDS,
    percentile_warnings,
)

#: Cost figures that get a confidence interval on their mean and every percentile (the
#: ones that vary per sample or batch; ITL's steps are resampled as one pool).
COST_INTERVAL_FIELDS: tuple[str, ...] = (
    *COST_LATENCY_FIELDS,
    ITL_FIELD,
    "kv_cache_bytes",
    *THROUGHPUT_FIELDS,
    *ENERGY_FIELDS,
)


def cost_aggregates(
    rows: Sequence[Mapping[str, Any]],
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    intervals: IntervalSettings | Resampler | None = None,
) -> tuple[dict[str, float | int | None], list[str]]:
    """``{"<figure>_<stat>": value}`` of the cost figures over the ``ok`` rows, and the
    percentile warnings of the latency ones (``T_ttft``, ``T_tpot``, ``itl_ms``).

    ``percentiles`` and ``intervals`` as for ``aggregate_stats`` (``run.percentiles``; the
    record's interval settings): the figures of :data:`COST_INTERVAL_FIELDS` get
    ``_lo`` / ``_hi`` on their mean and percentiles (None when the figure has no value).
    """
    ok = [r for r in rows if r.get("status", "ok") == "ok"]
    rs = Resampler(intervals) if isinstance(intervals, IntervalSettings) else intervals
    stats, _ = aggregate_stats(ok, COST_FIELDS, percentiles, rs, COST_INTERVAL_FIELDS)
    steps = [{ITL_FIELD: v} for r in ok for v in (r.get(ITL_FIELD) or [])]
    stats.update(aggregate_stats(steps, [ITL_FIELD], percentiles, rs, COST_INTERVAL_FIELDS)[0])
    counts = {f: int(stats[f"{f}_count"] or 0) for f in (*COST_LATENCY_FIELDS, ITL_FIELD)}
    return stats, percentile_warnings(counts, list(counts), percentiles)
