"""Aggregates of a configuration's per-sample rows, and the record built from them.

For every figure ``m`` and statistic ``s`` of :data:`~knoblab.records.schema.STATS`,
``aggregate_stats["<m>_<s>"]``. ``std`` is the sample standard deviation (``ddof=1``;
0.0 for one sample), percentiles use numpy's default linear interpolation
(``np.percentile(x, q, method="linear")``, Hyndman & Fan type 7). Missing values
(``None``: e.g. ``T_decode_per_token`` of a one-token answer) are left out, so
``<m>_count`` says how many values each figure rests on, and the percentile warnings
quote that count (:func:`~knoblab.records.schema.percentile_warnings`).

Example:
    >>> stats, warns = aggregate_stats([{"T_total": 10.0}, {"T_total": 20.0}], ["T_total"])
    >>> stats["T_total_p50"], warns
    (15.0, ['p95 rests on 2 samples (needs >= 20): T_total', 'p99 rests on 2 samples (needs >= 100): T_total'])
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from knoblab.records.schema import (
    LATENCY_FIELDS,
    PERCENTILES,
    SCHEMA_VERSION,
    STATS,
    TOKEN_FIELDS,
    Record,
    percentile_warnings,
)


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


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def aggregate_stats(
    rows: Sequence[Mapping[str, Any]],
    fields: Iterable[str] = LATENCY_FIELDS + TOKEN_FIELDS,
) -> tuple[dict[str, float | int | None], list[str]]:
    """``{"<field>_<stat>": value}`` over ``rows`` and the percentile warnings.

    Fields with no value at all get ``count`` 0 and ``None`` statistics. Warnings cover
    the latency figures among ``fields``, each with its own count.
    """
    stats: dict[str, float | int | None] = {}
    counts: dict[str, int] = {}
    fields = list(fields)
    for name in fields:
        vals = [_figure(r, name) for r in rows]
        x = np.asarray([v for v in vals if v is not None and not _isnan(v)], dtype=float)
        stats[f"{name}_count"] = counts[name] = int(x.size)
        if x.size == 0:
            for s in STATS[1:]:
                stats[f"{name}_{s}"] = None
            continue
        stats[f"{name}_mean"] = float(x.mean())
        stats[f"{name}_std"] = float(x.std(ddof=1)) if x.size > 1 else 0.0
        stats[f"{name}_min"] = float(x.min())
        stats[f"{name}_max"] = float(x.max())
        for s, q in PERCENTILES.items():
            stats[f"{name}_{s}"] = float(np.percentile(x, q, method="linear"))
    warns = percentile_warnings(counts, [f for f in fields if f in LATENCY_FIELDS])
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
) -> Record:
    """One configuration's record, seed 002's fields first (see docs/profiling.md).

    Aggregates and ``accuracy`` cover the rows with ``status == "ok"``.
    """
    ok = [r for r in rows if r.get("status") == "ok"]
    crops = [r["actual_num_crops"] for r in ok if r.get("actual_num_crops") is not None]
    acc = [r["accuracy"] for r in ok if r.get("accuracy") is not None]
    stats, warns = aggregate_stats(ok)
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
