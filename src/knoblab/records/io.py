"""Writing and reading records: file names, JSON, ``sweep.json``, ``samples.parquet``.

Every write goes through :func:`knoblab.atomic.atomic_write` (temporary file, fsync,
rename): a crash leaves the old file or the new one, never half of one. Every read
migrates (:mod:`knoblab.records.migrate`) and checks types
(:func:`~knoblab.records.schema.check_record`), so a reader never meets an old layout
or a tampered field it does not expect.

A record belongs to a sweep when its task, model, samples and knobs are those of the
sweep's ``sweep.json`` (:func:`foreign_reason`); the runner refuses a foreign record on
a rerun and the analysis leaves it out, by name, so two sweeps are never mixed.

Example:
    >>> record_filename("coco_2014_vqa", {"tier": "low", "top_k": 8, "num_active_blocks": 14}, 2.2)
    'coco-2014-vqa_imgsizetier-low_crops2_topk8_blocks14.json'
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from knoblab.atomic import atomic_write, remove_stale_tmp
from knoblab.errors import DataError
from knoblab.records.migrate import migrate_record
from knoblab.records.schema import (
    NOT_RECORDS,
    SCHEMA_VERSION,
    SEED_KNOBS,
    Record,
    check_record,
    check_sweep,
)

__all__ = ["remove_stale_tmp"]


def _safe_part(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", str(value)).strip("-") or "na"


def task_name(dataset_name: str) -> str:
    """The task part of record file names: the dataset name with ``_``/spaces as ``-``."""
    return _safe_part(dataset_name.replace("_", "-"))


def record_filename(task: str, knobs: Mapping[str, Any], crops_mean: float | None = None) -> str:
    """``<task>_imgsizetier-<tier>_crops<mean>_topk<k>_blocks<n>.json`` (tier mode) or
    ``<task>_imgsizetokens<T>_topk<k>_blocks<n>.json`` (target-tokens mode).

    NOTE: ``<mean>`` is the selected-crops mean rounded to an integer, as in seed 002's
    examples (``crops6`` for a mean of 6.2); ``crops`` + ``na`` when nothing was measured.
    A part whose knob the model lacks is left out; knobs beyond the seed's three are
    appended as ``_<name><value>`` in sorted order.
    """
    parts = [task_name(task)]
    if knobs.get("tier") is not None:
        bad = crops_mean is None or (isinstance(crops_mean, float) and math.isnan(crops_mean))
        crops = "na" if bad else str(int(round(crops_mean)))  # type: ignore[arg-type]
        parts.append(f"imgsizetier-{_safe_part(knobs['tier'])}_crops{crops}")
    elif knobs.get("vision_tokens") is not None:
        parts.append(f"imgsizetokens{_safe_part(knobs['vision_tokens'])}")
    if knobs.get("top_k") is not None:
        parts.append(f"topk{_safe_part(knobs['top_k'])}")
    if knobs.get("num_active_blocks") is not None:
        parts.append(f"blocks{_safe_part(knobs['num_active_blocks'])}")
    for k in sorted(set(knobs) - set(SEED_KNOBS)):
        parts.append(f"{_safe_part(k)}{_safe_part(knobs[k])}")
    return "_".join(parts) + ".json"


def config_key(knobs: Mapping[str, Any]) -> str:
    """A stable identity of a configuration, independent of measured values."""
    return json.dumps({k: knobs[k] for k in sorted(knobs)}, sort_keys=True, default=str)


def jsonable(obj: Any) -> Any:
    """Plain JSON types: tuples -> lists, numpy scalars -> Python, NaN/inf -> None.

    The one JSON-cleaning helper of knoblab (records, ``analysis.json``, ``estimator.json``);
    :func:`json_default` is its ``json.dumps(default=...)`` counterpart for fast paths.

    Example:
        >>> jsonable({"a": (1, np.float64("nan")), 2: np.int64(3)})
        {'a': [1, None], '2': 3}
    """
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    return str(obj)


def json_default(obj: Any) -> Any:
    """``json.dumps(default=json_default)``: numpy/torch values as Python, sets sorted, else str."""
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    if hasattr(obj, "tolist"):  # numpy scalars and arrays, torch tensors
        return obj.tolist()
    return str(obj)


_ORJSON = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def dumpb(obj: Any) -> bytes:
    """:func:`dumps` as UTF-8 bytes (what a file takes; orjson's own output, not decoded
    and encoded again: the journal writes one line per measured unit)."""
    try:
        return orjson.dumps(obj, default=json_default, option=_ORJSON)
    except TypeError:  # orjson.JSONEncodeError is a TypeError: dumps' slower paths
        return dumps(obj).encode("utf-8")


def dumps(obj: Any) -> str:
    """Compact JSON text of ``obj``; NaN and infinities become ``null`` (never invalid JSON).

    NOTE: orjson (RFC 8259 JSON, UTF-8, shortest round-trip floats; NaN and infinities
    written as ``null``) encodes a journal row in ~2 us against ~17 us for the json
    module's C encoder: the runner writes one per measured unit, and its own cost per
    sample is held under 1 % of a 5 ms inference (``benchmarks/bench_overhead.py``).
    What orjson refuses (an integer beyond 64 bits, say) goes through the json module.
    """
    try:
        return orjson.dumps(obj, default=json_default, option=_ORJSON).decode("utf-8")
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        pass
    try:
        return json.dumps(obj, allow_nan=False, default=json_default, separators=(",", ":"))
    except ValueError:  # a NaN or an infinity somewhere: clean it, slowly, once
        return json.dumps(jsonable(obj), allow_nan=False, separators=(",", ":"))


def write_json_atomic(path: str | os.PathLike[str], obj: Any, *, durable: bool = True) -> Path:
    """Write ``obj`` as JSON to ``path`` through :func:`knoblab.atomic.atomic_write`.

    NOTE: a process killed mid-write leaves at most a ``.<name>.<pid>.tmp`` file,
    never a truncated ``path``; :func:`load_records` ignores those and
    :func:`remove_stale_tmp` deletes them.
    """
    return atomic_write(path, dumpb(obj), durable=durable)


def write_record(out_dir: str | os.PathLike[str], record: Record, name: str | None = None) -> Path:
    """Write ``record`` into ``out_dir`` under ``name`` (default: :func:`record_filename`)."""
    rec = dict(record)
    rec.setdefault("schema_version", SCHEMA_VERSION)
    name = name or record_filename(
        str(rec.get("task") or "task"), rec.get("knobs") or {}, rec.get("selected_crops_mean")
    )
    return write_json_atomic(Path(out_dir) / name, rec)


def write_sweep(out_dir: str | os.PathLike[str], sweep: Mapping[str, Any]) -> Path:
    """Write ``sweep.json`` (identity, knob lists, design, configurations) with its version."""
    return write_json_atomic(
        Path(out_dir) / "sweep.json", {"schema_version": SCHEMA_VERSION, **sweep}
    )


def is_record(data: Any) -> bool:
    """True for a per-configuration record (not sweep.json or environment.json)."""
    return (
        isinstance(data, dict)
        and "per_sample_results" in data
        and ("knobs" in data or "aggregate_stats" in data)
    )


class UnreadableJSON(DataError):
    """A file that does not parse as JSON at all (truncated, empty, random bytes)."""


def read_json(path: Path) -> Any:
    """Parsed JSON of ``path``; a one-line :class:`UnreadableJSON` when unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UnreadableJSON(
            f"{path}: not readable JSON ({type(exc).__name__}: {str(exc)[:80]})"
        ) from None


def read_record(path: str | os.PathLike[str], data: Any = None) -> Record | None:
    """The record in ``path``, migrated and type-checked; None when the file is no record.

    Raises:
        DataError: unreadable JSON, a wrong type (names the file and the field), or a
            newer ``schema_version``.
    """
    path = Path(path)
    data = read_json(path) if data is None else data
    if not is_record(data):
        return None
    rec = migrate_record(data, str(path))
    check_record(rec, str(path))
    return rec  # type: ignore[return-value]


def read_sweep(out_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``sweep.json`` of ``out_dir`` (checked), or None when there is none.

    Raises:
        DataError: unreadable, or a wrong type (names the file and the field).
    """
    path = Path(out_dir) / "sweep.json"
    if not path.exists():
        return None
    data = read_json(path)
    check_sweep(data, str(path))
    return data


def load_records(
    out_dir: str | os.PathLike[str],
    *,
    strict: bool = False,
    unreadable: list[str] | None = None,
) -> dict[str, Record]:
    """``{file name: record}`` for every configuration record in ``out_dir``, migrated.

    Temporary files are never read. With ``strict`` a mistyped record raises (one line
    naming the file and the field); without, mistyped files are skipped. A file that is
    not JSON at all is skipped either way and its name appended to ``unreadable``.

    NOTE: the atomic writer never leaves a truncated record, so an unparseable one was
    damaged from outside and holds nothing usable: the sweep measures its configuration
    again (and says so). A parseable record of the wrong shape may be a user's file or
    another sweep's, so a rerun refuses it rather than overwrite it.
    """
    out: dict[str, Record] = {}
    d = Path(out_dir)
    if not d.is_dir():
        return out
    for p in sorted(d.glob("*.json")):
        if p.name in NOT_RECORDS:
            continue
        try:
            rec = read_record(p)
        except UnreadableJSON:
            if unreadable is not None:
                unreadable.append(p.name)
            continue
        except DataError:
            if strict:
                raise
            continue
        if rec is not None:
            out[p.name] = rec
    return out


def knob_domain(sweep: Mapping[str, Any]) -> tuple[list[set[str]], dict[str, set[str]]]:
    """(knob name sets, {knob: values}) of every knob list ``sweep.json`` records."""
    names: list[set[str]] = []
    values: dict[str, set[str]] = {}
    for lists in sweep.get("knob_lists") or []:
        names.append(set(lists))
        for k, vals in lists.items():
            for v in vals if isinstance(vals, list) else [vals]:
                values.setdefault(k, set()).add(json.dumps(v))
    return names, values


def foreign_reason(rec: Mapping[str, Any], sweep: Mapping[str, Any]) -> str | None:
    """Why ``rec`` is not a record of the sweep ``sweep.json`` describes, or None.

    Compared: the model name, the sample ids (dataset indices of the plan) and their
    count, and the knobs (names of one of the sweep's knob lists, values within them).
    """
    ident = sweep.get("identity") or {}
    model = (ident.get("model") or {}).get("name")
    if model is not None and rec.get("model") not in (None, model):
        return f"model {rec.get('model')!r}, the sweep's is {model!r}"
    ids = ident.get("sample_ids")
    if ids is not None:
        mine = (rec.get("sampling") or {}).get("sample_ids")
        rows = rec.get("per_sample_results") or []
        stopped = isinstance(rec.get("precision"), dict) and len(rows) <= len(ids)
        if not stopped and rec.get("status", "ok") == "ok" and len(rows) != len(ids):
            return f"{len(rows)} samples, the sweep has {len(ids)}"
        if mine is not None and list(mine) != list(ids):
            return "other sample ids than the sweep's"
        if stopped:  # early stopping (run.precision) measures a prefix of the plan
            ids = list(ids)[: len(rows)]
        seen = [r.get("dataset_index") for r in rows if isinstance(r, dict)]
        if seen and None not in seen and sorted(seen) != sorted(ids):
            return "other samples than the sweep's"
    names, values = knob_domain(sweep)
    knobs = rec.get("knobs") or {}
    if names and set(knobs) not in names:
        wanted = " or ".join(", ".join(sorted(n)) for n in names)
        return f"knobs {', '.join(sorted(knobs)) or 'none'}, the sweep's are {wanted}"
    for k, v in knobs.items():
        if values and json.dumps(v) not in values.get(k, set()):
            return f"{k}={v!r} is outside the sweep's knob lists"
    return None


def check_belongs(rec: Mapping[str, Any], sweep: Mapping[str, Any], where: str) -> None:
    """Raise a one-line ``DataError`` naming ``where`` when ``rec`` is foreign to ``sweep``."""
    why = foreign_reason(rec, sweep)
    if why:
        raise DataError(
            f"{where}: a record of another sweep ({why}); refused, nothing was merged: "
            "move it out of the directory"
        )


def sample_rows(records: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per (configuration, sample) for ``samples.parquet``.

    Each row has ``record`` (the JSON file name), ``task``, ``model``, ``status``, one
    ``knob_<name>`` column per knob, and every per-sample field. Nested values
    (``metadata``, ``runs``, tilings) are JSON strings so the columns keep one type.
    """
    rows: list[dict[str, Any]] = []
    for fname, rec in records.items():
        base: dict[str, Any] = {
            "record": fname,
            "schema_version": rec.get("schema_version", SCHEMA_VERSION),
            "task": rec.get("task"),
            "model": rec.get("model"),
            "status": rec.get("status"),
        }
        for k, v in (rec.get("knobs") or {}).items():
            base[f"knob_{k}"] = v if isinstance(v, (int, float)) else str(v)
        for s in rec.get("per_sample_results") or []:
            row = dict(base)
            for k, v in s.items():
                row[k] = dumps(v) if isinstance(v, (dict, list, tuple)) else v
            rows.append(row)
    return rows


def write_samples_parquet(
    out_dir: str | os.PathLike[str], records: Mapping[str, Mapping[str, Any]]
) -> Path:
    """Write ``samples.parquet`` (all per-sample rows of all records) atomically."""
    import pandas as pd

    path = Path(out_dir) / "samples.parquet"
    df = pd.DataFrame(sample_rows(records))
    for col in df.columns:  # a column of mixed scalars (e.g. tier str / int) becomes str
        if df[col].dtype == object:
            kinds = {type(v) for v in df[col] if v is not None}
            if len(kinds) > 1:
                df[col] = [None if v is None else str(v) for v in df[col]]
    return atomic_write(path, lambda p: df.to_parquet(p, index=False))
