"""Read a results directory of ``knoblab profile`` into tables, tolerating bad records.

The per-configuration JSON files are the source of truth (``samples.parquet`` is a
convenience copy); they are read through :mod:`knoblab.records`, which migrates older
layouts and checks every field's type. Every ``*.json`` under the directory that looks
like a record is read; a record that cannot be used — unreadable JSON, a field of the
wrong type, ``status`` other than ``ok``, a record of another sweep than its folder's
``sweep.json`` (other model, samples or knob domain), no valid sample — is listed in
``SweepResults.skipped`` with the reason, and the rest is analysed. Nothing here raises
on a bad record (a ``sweep.json`` of the wrong type is a one-line ``DataError``: the
records beside it cannot be checked).

Knobs: a record lists its knobs (``knobs``); any subset works — ``tier`` or
``vision_tokens``, ``top_k``, ``num_active_blocks``, or an adapter's own names. A knob
a model lacks is simply not a column. Token counts a model cannot tell are NaN.

NOTE: per-sample rows that carry an ``error``, a ``status`` other than ``ok``, or lack
a timing are dropped (counted in ``SweepResults.notes``); a configuration keeps its
recorded ``accuracy``. A percentile missing from ``aggregate_stats`` is computed from
the per-sample rows (numpy's linear interpolation), and the note says so.

Percentiles and intervals: each record names its percentiles (``run.percentiles``);
``SweepResults.percentiles`` are those every record holds. Confidence intervals are
read from the records (``<figure>_<stat>_lo`` / ``_hi``, ``accuracy_lo`` / ``_hi``),
never recomputed here; records of schema v2 get them from the migration on read.

Example:
    >>> from knoblab.analysis.synthetic import write_synthetic_results
    >>> import tempfile
    >>> res = load_results(write_synthetic_results(tempfile.mkdtemp(), num_samples=8))
    >>> len(res.configs), res.vision_knob, res.skipped
    (18, 'tier', [])
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from knoblab import records
from knoblab.errors import DataError
from knoblab.records import NOT_RECORDS, SEED_KNOBS, STAGES, TIER_ORDER

RECORD_NAME = re.compile(r"_imgsize(tier-|tokens).*\.json$|_topk\d+.*\.json$|_blocks\d+.*\.json$")
#: Percentile names of records that do not say (v2 and older always held these).
PERCENTILES = tuple(records.PERCENTILES)
REQUIRED_FIELDS = ("accuracy", "per_sample_results")
REQUIRED_SAMPLE_FIELDS = ("sample_id", *STAGES, "T_total")
#: Per-sample token columns, NaN when a model cannot tell them.
TOKEN_COLUMNS = (
    "target_vision_tokens",
    "actual_vision_tokens",
    "input_text_tokens",
    "output_tokens",
)
KNOB_ORDER = SEED_KNOBS
NOT_A_RECORD = "not a sweep record"


@dataclass(frozen=True)
class Skipped:
    """A record left out of the analysis, by file name, and why."""

    name: str
    reason: str


@dataclass
class SweepResults:
    """Usable configurations and their per-sample rows.

    Attributes:
        root: the results directory.
        configs: one row per configuration: ``config`` (file stem), ``label``, ``task``,
            ``model``, the knob columns, token means, ``accuracy``, stage means,
            ``T_total_p50/p95/p99`` (and those of every stage when recorded).
        samples: one row per valid sample and configuration, with a ``config`` column.
        skipped: records left out, with the reason.
        knobs: knob column names in order, e.g. ``["tier", "top_k", "num_active_blocks"]``.
        notes: one line per thing a reader should know (dropped rows, computed percentiles).
        environment: ``environment.json`` when present.
        percentiles: the percentile names every configuration holds, e.g. ``("p50", "p90")``;
            ``<stage>_<p>``, ``<stage>_<p>_lo`` / ``_hi`` and ``<stage>_mean_lo`` / ``_hi``
            are configs columns (NaN where a record has no interval), as are
            ``accuracy_lo`` / ``accuracy_hi``; the cost figures (``CONFIG_COST_FIELDS``) and
            ``interval_confidence`` when a record has them.
        intervals: the records' ``intervals`` blocks (method, confidence, resamples,
            seed, accuracy method), one per distinct block.
    """

    root: Path
    configs: pd.DataFrame
    samples: pd.DataFrame
    skipped: list[Skipped] = field(default_factory=list)
    knobs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    percentiles: tuple[str, ...] = PERCENTILES
    intervals: list[dict[str, Any]] = field(default_factory=list)

    @property
    def vision_knob(self) -> str | None:
        """``tier`` or ``vision_tokens``: how this sweep set the vision-token budget; None
        when it set neither (a model without that knob, or an adapter's own knob names)."""
        return next((k for k in records.VISION_KNOBS if k in self.knobs), None)


def knob_label(knobs: Mapping[str, Any]) -> str:
    """Short label: ``tier=high k=4 B=12``."""
    short = {"top_k": "k", "num_active_blocks": "B", "vision_tokens": "V"}
    return " ".join(f"{short.get(k, k)}={v}" for k, v in knobs.items())


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, str) and value in TIER_ORDER:
        return (0, TIER_ORDER.index(value))
    if isinstance(value, (int, float)):
        return (1, value)
    return (2, str(value))


def knob_values(configs: pd.DataFrame, knob: str) -> list[Any]:
    """The distinct values of ``knob`` in cost order (tiers low < medium < high)."""
    return sorted(configs[knob].dropna().unique().tolist(), key=_sort_key)


def _knobs_of(rec: Mapping[str, Any]) -> dict[str, Any]:
    knobs = dict(rec.get("knobs") or {})
    return {
        k: knobs[k]
        for k in sorted(knobs, key=lambda k: (KNOB_ORDER.index(k) if k in KNOB_ORDER else 99, k))
    }


def _check(path: Path, sweeps: dict[Path, dict[str, Any] | None]) -> tuple[Any, str | None]:
    """(the migrated record or None, skip reason): read, type checks, foreign check."""
    try:
        data = records.read_json(path)
    except DataError as exc:
        return None, str(exc).split(": ", 1)[-1]
    if isinstance(data, dict) and data.get("status", "ok") != "ok":
        detail = data.get("error") or data.get("message")
        return None, f"status={data['status']}" + (f" ({str(detail)[:80]})" if detail else "")
    if not records.is_record(data):
        return None, NOT_A_RECORD
    try:
        rec = records.read_record(path, data)
    except DataError as exc:
        return None, str(exc).removeprefix(f"{path}: ")
    if path.parent not in sweeps:  # a sweep.json of the wrong type raises (one line)
        sweeps[path.parent] = records.read_sweep(path.parent)
    sweep = sweeps[path.parent]
    why = records.foreign_reason(rec, sweep) if sweep else None
    if why:
        return None, f"a record of another sweep than sweep.json's ({why}); never merged"
    return rec, None


def _numbers(values: list[Any]) -> np.ndarray:
    """Floats (None -> NaN); anything unparsable becomes NaN, as pd.to_numeric(coerce)."""
    try:
        return np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(float)


#: The per-sample columns the analysis reads, in order.
SAMPLE_COLUMNS = ("sample_id", *TOKEN_COLUMNS, *STAGES, "T_total", "accuracy")


def _sample_columns(rows: list[dict[str, Any]]) -> tuple[dict[str, np.ndarray], np.ndarray, str]:
    """(the used columns over all rows, which rows are usable, why some are not or "").

    A row is usable when it carries no ``error``, its ``status`` is ``ok`` and every
    required field is a number (``sample_id``: present). Column by column, not row by
    row: per-row checks were most of the reading time of a 500 x 1000 sweep
    (``benchmarks/bench_analyze_scale.py``).
    """
    data: dict[str, np.ndarray] = {
        "sample_id": np.array([r.get("sample_id") for r in rows], dtype=object)
    }
    data |= {c: _numbers([r.get(c) for r in rows]) for c in SAMPLE_COLUMNS[1:]}
    failed = np.array(
        [bool(r.get("error")) or r.get("status", "ok") != "ok" for r in rows], dtype=bool
    )
    missing = {
        f: (
            np.array([v is None for v in data[f]], dtype=bool)
            if f == "sample_id"
            else np.isnan(data[f])
        )
        for f in REQUIRED_SAMPLE_FIELDS
    }
    usable = ~failed
    for m in missing.values():
        usable &= ~m
    if usable.all():
        return data, usable, ""
    if failed.any():
        return data, usable, "failed samples"
    names = sorted(f for f, m in missing.items() if (m & ~failed).any())
    return data, usable, f"missing {', '.join(names)}"


def _read_one(
    path: Path, rel: str, sweeps: dict[Path, dict[str, Any] | None]
) -> tuple[dict[str, Any] | None, pd.DataFrame | None, str | None, list[str]]:
    """(config row, sample rows, skip reason, notes) for one record file."""
    rec, reason = _check(path, sweeps)
    if reason is not None:
        return None, None, reason, []
    missing = [f for f in REQUIRED_FIELDS if rec.get(f) is None]
    if missing:
        return None, None, f"missing fields: {', '.join(missing)} (crashed run?)", []
    knobs = _knobs_of(rec)
    if not knobs:
        return None, None, "lists no knobs (knobs is empty)", []
    notes: list[str] = []
    rows = rec["per_sample_results"]
    data, usable, why = _sample_columns(rows)
    if why:
        notes.append(f"{rel}: dropped {int((~usable).sum())} of {len(rows)} sample rows ({why})")
    if not usable.any():
        return None, None, "no valid per-sample rows", notes
    n = int(usable.sum())
    # a list for the ids, so that pandas infers their type (int64 for the runner's ids)
    df = pd.DataFrame(
        {c: (list(v[usable]) if c == "sample_id" else v[usable]) for c, v in data.items()}
    )
    row = _config_row(path, rel, rec, knobs, df, len(rows))
    computed = _percentiles(row, rec.get("aggregate_stats") or {}, df)
    row |= _costs(rec, rec.get("aggregate_stats") or {})
    if computed:
        more = " ..." if len(computed) > 4 else ""
        notes.append(f"{rel}: {', '.join(computed[:4])}{more} computed from samples")
    df.insert(0, "config", [path.stem] * n)
    for k, v in knobs.items():
        df[k] = [v] * n
    return row, df, None, notes


def _mean_or_nan(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else float("nan")


def _config_row(
    path: Path,
    rel: str,
    rec: Mapping[str, Any],
    knobs: dict[str, Any],
    df: pd.DataFrame,
    n_rows: int,
) -> dict[str, Any]:
    return {
        "config": path.stem,
        "file": rel,
        "task": rec.get("task") or path.stem.split("_imgsize")[0],
        "model": rec.get("model") or "",
        **knobs,
        "label": knob_label(knobs),
        "knobs": knobs,
        "target_vision_tokens_mean": _mean_or_nan(rec.get("target_vision_tokens_mean")),
        "actual_vision_tokens_mean": _mean_or_nan(rec.get("actual_vision_tokens_mean")),
        "selected_crops_mean": rec.get("selected_crops_mean"),
        "num_total_blocks": rec.get("num_total_blocks"),
        "accuracy": float(rec["accuracy"]),
        "accuracy_lo": _mean_or_nan(rec.get("accuracy_lo")),
        "accuracy_hi": _mean_or_nan(rec.get("accuracy_hi")),
        "accuracy_std": rec.get("accuracy_std"),
        "percentiles": tuple(records.percentile_name(q) for q in records.record_percentiles(rec)),
        "intervals": rec.get("intervals"),
        "num_samples": int(rec.get("num_samples") or n_rows),
        "num_valid_samples": len(df),
    }


#: Per-configuration cost figures (issue 15) carried into ``configs`` when a record has them.
CONFIG_COST_FIELDS = (
    "peak_memory_bytes",
    "kv_cache_bytes",
    "weights_bytes",
    "throughput_samples_s",
    "throughput_tokens_s",
    "energy_j",
)


def _costs(rec: Mapping[str, Any], agg: Mapping[str, Any]) -> dict[str, float]:
    """Cost figures a record carries (every ``aggregate_stats`` number whose name starts
    with a cost field: ``peak_memory_bytes_mean``, ...), and the confidence level of its
    intervals (``interval_confidence``, for the report's wording); none when it has none."""
    out: dict[str, float] = {}
    for key, v in agg.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if key.startswith(CONFIG_COST_FIELDS):
                out[key] = float(v)
    for key in CONFIG_COST_FIELDS:
        v = rec.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.setdefault(key, float(v))
    block = rec.get("intervals")
    level = block.get("confidence") if isinstance(block, dict) else None
    if isinstance(level, (int, float)) and not isinstance(level, bool):
        out["interval_confidence"] = float(level)
    return out


def _percentiles(row: dict[str, Any], agg: Mapping[str, Any], df: pd.DataFrame) -> list[str]:
    """Stage means and percentiles (and their intervals) from ``aggregate_stats``, else
    the figures from the samples (named; their intervals are then NaN)."""
    computed = []
    for metric in (*STAGES, "T_total"):
        vals = df[metric].to_numpy(float)
        mean = agg.get(f"{metric}_mean")
        row[f"{metric}_mean"] = float(mean) if mean is not None else float(np.mean(vals))
        count = agg.get(f"{metric}_count")
        row[f"{metric}_count"] = int(count) if count is not None else int(vals.size)
        for p in row["percentiles"]:
            key = f"{metric}_{p}"
            if isinstance(agg.get(key), (int, float)):
                row[key] = float(agg[key])
            else:
                row[key] = float(np.percentile(vals, float(p[1:])))
                computed.append(key)
        for stat in ("mean", *row["percentiles"]):
            for side in ("lo", "hi"):
                row[f"{metric}_{stat}_{side}"] = _mean_or_nan(agg.get(f"{metric}_{stat}_{side}"))
    return computed


def _common_percentiles(configs: list[dict[str, Any]], notes: list[str]) -> tuple[str, ...]:
    """The percentile names every configuration holds (a note when the records differ)."""
    sets = [tuple(c.pop("percentiles")) for c in configs]
    common = [p for p in sets[0] if all(p in s for s in sets)]
    if len(set(sets)) > 1:
        every = sorted({p for s in sets for p in s}, key=lambda p: float(p[1:]))
        notes.append(
            f"the records hold different percentiles ({', '.join(every)}); "
            f"{', '.join(common) or 'none'} are in every one"
        )
    return tuple(common)


def _interval_blocks(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each distinct ``intervals`` block of the records, once."""
    out: list[dict[str, Any]] = []
    for c in configs:
        block = c.pop("intervals", None)
        if isinstance(block, dict) and block not in out:
            out.append(block)
    return out


def load_results(results_dir: str | Path) -> SweepResults:
    """Read every record under ``results_dir``; bad ones go to ``skipped``, never raise.

    Raises:
        DataError: the directory does not exist or holds no usable record at all.
    """
    root = Path(results_dir)
    if not root.is_dir():
        raise DataError(
            f"results_dir={str(root)!r} is not a directory: allowed is a results directory of knoblab profile"
        )
    configs: list[dict[str, Any]] = []
    frames: list[pd.DataFrame] = []
    skipped: list[Skipped] = []
    notes: list[str] = []
    seen: dict[tuple[Any, ...], str] = {}
    sweeps: dict[Path, dict[str, Any] | None] = {}
    for path in sorted(root.rglob("*.json")):
        rel = str(path.relative_to(root))
        if path.name in NOT_RECORDS or path.name.startswith("."):
            continue
        row, df, reason, n = _read_one(path, rel, sweeps)
        notes += n
        if reason is None and row is not None:
            key = (row["task"], row["model"], tuple(sorted(row["knobs"].items(), key=str)))
            if key in seen:
                reason = f"duplicate of {seen[key]} (same task, model and knobs); the first is kept"
            else:
                seen[key] = rel
        if reason is not None:
            # a JSON neither named nor shaped like a record (a user's notes.json) is not reported
            if reason != NOT_A_RECORD or RECORD_NAME.search(path.name):
                skipped.append(Skipped(rel, reason))
            continue
        configs.append(row)
        frames.append(df)
    if not configs:
        why = (
            "; ".join(f"{s.name}: {s.reason}" for s in skipped[:3])
            or "no configuration record (<task>_<knobs>.json) found"
        )
        raise DataError(f"results_dir={str(root)!r} holds no usable record ({why})")
    knob_cols = [k for k in KNOB_ORDER if any(k in c["knobs"] for c in configs)]
    extra = sorted({k for c in configs for k in c["knobs"]} - set(knob_cols))
    env: dict[str, Any] = {}
    env_path = root / "environment.json"
    if env_path.is_file():
        try:
            env = records.read_json(env_path)
        except DataError:
            notes.append("environment.json is not readable JSON; ignored")
        if not isinstance(env, dict):
            notes.append("environment.json is not a JSON object; ignored")
            env = {}
    percentiles = _common_percentiles(configs, notes)
    blocks = _interval_blocks(configs)
    cfg = pd.DataFrame(configs)
    samples = pd.concat(frames, ignore_index=True)
    return SweepResults(
        root, cfg, samples, skipped, knob_cols + extra, notes, env, percentiles, blocks
    )
