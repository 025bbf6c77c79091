"""Bring records of older layouts to :data:`~knoblab.records.schema.SCHEMA_VERSION`.

In the style of Lightning's checkpoint ``_migration_index``: :data:`MIGRATIONS` maps a
version to the small functions that lift a record *from* it to the next version; each
says why it exists, is idempotent (applying it twice changes nothing more) and has a
fixture of the old format under ``tests/records/fixtures/``. Readers call
:func:`migrate_record` on everything they read; nothing is rewritten on disk.

Versions:
    1: records without ``schema_version``: knoblab's records before 2026-12, and seed
       002's own (which have no ``knobs``, ``status`` or ``task``).
    2: ``schema_version``; ``knobs`` always present; percentile warnings quote each
       figure's own count.
    3: ``percentiles`` (``run.percentiles``), confidence intervals (``<figure>_<stat>_lo``
       / ``_hi`` in ``aggregate_stats``, ``accuracy_lo`` / ``accuracy_hi``) and the
       ``intervals`` block saying how they were computed.

Example:
    >>> old = {"tier": "low", "top_k": 2, "num_active_blocks": 4, "per_sample_results": []}
    >>> new = migrate_record(old)
    >>> new["schema_version"], new["knobs"], new["status"], new["percentiles"]
    (3, {'tier': 'low', 'top_k': 2, 'num_active_blocks': 4}, 'ok', [50.0, 95.0, 99.0])
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from knoblab.errors import DataError
from knoblab.records.aggregate import (
    IntervalSettings,
    Resampler,
    accuracy_interval,
    aggregate_stats,
)
from knoblab.records.schema import (
    DEFAULT_PERCENTILES,
    INTERVAL_FIELDS,
    LATENCY_FIELDS,
    SCHEMA_VERSION,
    is_percentile_warning,
    percentile_warnings,
    record_percentiles,
)

Migration = Callable[[dict[str, Any]], dict[str, Any]]


def _v1_knobs(rec: dict[str, Any]) -> dict[str, Any]:
    """Seed 002's records have no ``knobs``: their knobs are top-level fields (the vision
    knob is ``tier``, else the target token count). A knob the model lacks is left out."""
    knobs = rec.get("knobs")
    if isinstance(knobs, dict) and knobs:
        return rec
    knobs = {}
    if rec.get("tier") is not None:
        knobs["tier"] = rec["tier"]
    else:
        target = rec.get("vision_tokens") or rec.get("target_vision_tokens")
        if target is None and isinstance(rec.get("target_vision_tokens_mean"), (int, float)):
            target = round(rec["target_vision_tokens_mean"])
        if target is not None:
            knobs["vision_tokens"] = target
    for k in ("top_k", "num_active_blocks"):
        if rec.get(k) is not None:
            knobs[k] = rec[k]
    if knobs or "knobs" not in rec:
        rec["knobs"] = knobs
    return rec


def _v1_status(rec: dict[str, Any]) -> dict[str, Any]:
    """Seed 002's records have no ``status``: a record written at all finished (``ok``)."""
    rec.setdefault("status", "ok")
    return rec


def _v1_percentile_warnings(rec: dict[str, Any]) -> dict[str, Any]:
    """v1 warned with the smallest count of any figure (usually ``T_decode_per_token``'s)
    for every figure; v2 quotes each figure's own ``<figure>_count``."""
    agg = rec.get("aggregate_stats")
    warns = rec.get("warnings")
    if not isinstance(agg, dict) or not isinstance(warns, list):
        return rec
    counts = {}
    for f in LATENCY_FIELDS:
        n = agg.get(f"{f}_count")
        if isinstance(n, (int, float)) and not isinstance(n, bool):
            counts[f] = int(n)
            agg[f"{f}_count"] = int(n)  # the synthetic twin wrote counts as floats
    kept = [w for w in warns if not (isinstance(w, str) and is_percentile_warning(w))]
    rec["warnings"] = kept + percentile_warnings(counts)
    return rec


def _v2_percentiles(rec: dict[str, Any]) -> dict[str, Any]:
    """v2 records always held p50, p95 and p99; v3 names its percentiles (``run.percentiles``)."""
    if not (isinstance(rec.get("percentiles"), list) and rec["percentiles"]):
        rec["percentiles"] = list(DEFAULT_PERCENTILES)
    return rec


def _v2_intervals(rec: dict[str, Any]) -> dict[str, Any]:
    """v2 records have no confidence intervals: computed here from their per-sample rows,
    the way the v3 writer does (the default :class:`IntervalSettings`: seeded, so the same
    on every read). The recorded point figures are kept as they are."""
    if isinstance(rec.get("intervals"), dict):
        return rec
    rows = rec.get("per_sample_results")
    agg = rec.get("aggregate_stats")
    if not isinstance(rows, list) or not isinstance(agg, dict):
        return rec
    ok = [r for r in rows if isinstance(r, dict) and r.get("status", "ok") == "ok"]
    settings = IntervalSettings()
    new, _ = aggregate_stats(ok, INTERVAL_FIELDS, record_percentiles(rec), Resampler(settings))
    for key, value in new.items():
        if key.endswith(("_lo", "_hi")):
            agg[key] = value
    acc = [r["accuracy"] for r in ok if isinstance(r.get("accuracy"), (int, float))]
    rec["accuracy_lo"], rec["accuracy_hi"], method = accuracy_interval(acc, settings)
    rec["intervals"] = settings.describe(method) | {"migrated_from": 2}
    return rec


#: version -> migrations lifting a record from that version to the next, applied in order.
MIGRATIONS: dict[int, list[Migration]] = {
    1: [_v1_knobs, _v1_status, _v1_percentile_warnings],
    2: [_v2_percentiles, _v2_intervals],
}


def record_version(rec: dict[str, Any]) -> int:
    """The layout version of ``rec``: its ``schema_version``, 1 when absent."""
    v = rec.get("schema_version", 1)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise DataError(
            f"schema_version={v!r} is invalid: allowed is an integer 1..{SCHEMA_VERSION}"
        )
    return v


def migrate_record(rec: dict[str, Any], where: str = "record") -> dict[str, Any]:
    """A copy of ``rec`` in the current layout (``rec`` itself when already current).

    Raises:
        DataError: a ``schema_version`` newer than this knoblab's (upgrade knoblab).
    """
    try:
        version = record_version(rec)
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None
    if version > SCHEMA_VERSION:
        raise DataError(
            f"{where}: schema_version={version} is newer than this knoblab's "
            f"({SCHEMA_VERSION}): allowed is <= {SCHEMA_VERSION}; upgrade knoblab to read it"
        )
    if version == SCHEMA_VERSION:
        return rec
    rec = copy.deepcopy(rec)
    while version < SCHEMA_VERSION:
        for fn in MIGRATIONS[version]:
            rec = fn(rec)
        version += 1
        rec["schema_version"] = version
    return rec
