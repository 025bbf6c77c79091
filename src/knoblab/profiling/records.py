"""The sweep's records: one JSON per configuration, samples.parquet, environment.json.

Field names follow seed 002 exactly (``tier``, ``tier_range``, ``selected_crops_mean``,
``aggregate_stats``, ``per_sample_results`` ...), so that analysis code written for it
reads knoblab's records; ``docs/profiling.md`` lists every field. knoblab adds
``task``, ``model``, ``knobs``, ``status`` (``"ok" | "oom" | "failed"``), ``error``,
``warnings``, ``environment`` and ``sampling``.

Aggregates: for every latency and token figure ``m`` and every statistic ``s`` in
:data:`STATS`, ``aggregate_stats["<m>_<s>"]``. ``std`` is the sample standard deviation
(``ddof=1``; 0.0 for one sample); percentiles use numpy's default *linear*
interpolation (``np.percentile(x, q, method="linear")``, Hyndman & Fan type 7).
Missing values (``None``: e.g. ``T_decode_per_token`` of a one-token answer) are left
out, so ``<m>_count`` says how many values each figure rests on.

NOTE (percentile rule): the ``q``-th percentile is reported but flagged when fewer
than ``ceil(100 / (100 - q))`` values exist, i.e. when not even one value lies above
it: p50 needs 2, p95 needs 20, p99 needs 100. The flag is a line in the record's
``warnings`` list (and on screen), e.g. ``"p99 rests on 50 samples (needs >= 100)"``.

Example:
    >>> stats, warns = aggregate_stats([{"T_total": 10.0}, {"T_total": 20.0}], ["T_total"])
    >>> stats["T_total_p50"], warns
    (15.0, ['p95 rests on 2 samples (needs >= 20)', 'p99 rests on 2 samples (needs >= 100)'])
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from knoblab.atomic import atomic_write

#: Per-sample latency figures, in milliseconds.
LATENCY_FIELDS: tuple[str, ...] = (
    "T_vision_total",
    "T_LLM_prefill",
    "T_LLM_decode",
    "T_total",
    "T_decode_per_token",
)
#: Per-sample token figures. ``vision_tokens`` is the actual (valid) count;
#: ``vision_tokens_diff`` = target (or theoretical) minus actual, as in seed 002.
TOKEN_FIELDS: tuple[str, ...] = (
    "vision_tokens",
    "target_vision_tokens",
    "vision_tokens_diff",
    "input_text_tokens",
    "output_tokens",
    "num_crops",
)
STATS: tuple[str, ...] = ("count", "mean", "std", "min", "max", "p50", "p95", "p99")
PERCENTILES: dict[str, float] = {"p50": 50.0, "p95": 95.0, "p99": 99.0}
STATUSES: tuple[str, ...] = ("ok", "oom", "failed")
#: The packages whose versions go into ``environment.json``.
PACKAGES: tuple[str, ...] = (
    "knoblab",
    "torch",
    "numpy",
    "scipy",
    "pandas",
    "pyarrow",
    "hydra-core",
    "omegaconf",
    "lightning",
    "transformers",
    "safetensors",
)


def min_samples_for(q: float) -> int:
    """Fewest values for which the ``q``-th percentile has at least one value above it."""
    return math.ceil(100.0 / (100.0 - q) - 1e-9)


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


def aggregate_stats(
    rows: Sequence[Mapping[str, Any]],
    fields: Iterable[str] = LATENCY_FIELDS + TOKEN_FIELDS,
) -> tuple[dict[str, float | int | None], list[str]]:
    """``{"<field>_<stat>": value}`` over ``rows`` and the percentile warnings.

    Fields with no value at all get ``count`` 0 and ``None`` statistics.
    """
    stats: dict[str, float | int | None] = {}
    smallest = None
    for name in fields:
        vals = [_figure(r, name) for r in rows]
        x = np.asarray([v for v in vals if v is not None and not _isnan(v)], dtype=float)
        stats[f"{name}_count"] = int(x.size)
        if x.size == 0:
            for s in STATS[1:]:
                stats[f"{name}_{s}"] = None
            continue
        smallest = x.size if smallest is None else min(smallest, x.size)
        stats[f"{name}_mean"] = float(x.mean())
        stats[f"{name}_std"] = float(x.std(ddof=1)) if x.size > 1 else 0.0
        stats[f"{name}_min"] = float(x.min())
        stats[f"{name}_max"] = float(x.max())
        for s, q in PERCENTILES.items():
            stats[f"{name}_{s}"] = float(np.percentile(x, q, method="linear"))
    warns = []
    if smallest is not None:
        for s, q in PERCENTILES.items():
            need = min_samples_for(q)
            if smallest < need:
                warns.append(f"{s} rests on {smallest} samples (needs >= {need})")
    return stats, warns


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


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

    Example:
        >>> record_filename("coco-2014-vqa", {"tier": "low", "top_k": 8, "num_active_blocks": 14}, 2.2)
        'coco-2014-vqa_imgsizetier-low_crops2_topk8_blocks14.json'
    """
    parts = [task_name(task)]
    if knobs.get("tier") is not None:
        crops = "na" if crops_mean is None or _isnan(crops_mean) else str(int(round(crops_mean)))
        parts.append(f"imgsizetier-{_safe_part(knobs['tier'])}_crops{crops}")
    elif knobs.get("vision_tokens") is not None:
        parts.append(f"imgsizetokens{_safe_part(knobs['vision_tokens'])}")
    if knobs.get("top_k") is not None:
        parts.append(f"topk{_safe_part(knobs['top_k'])}")
    if knobs.get("num_active_blocks") is not None:
        parts.append(f"blocks{_safe_part(knobs['num_active_blocks'])}")
    seed_knobs = {"tier", "vision_tokens", "top_k", "num_active_blocks"}
    for k in sorted(set(knobs) - seed_knobs):
        parts.append(f"{_safe_part(k)}{_safe_part(knobs[k])}")
    return "_".join(parts) + ".json"


def config_key(knobs: Mapping[str, Any]) -> str:
    """A stable identity of a configuration, independent of measured values."""
    return json.dumps({k: knobs[k] for k in sorted(knobs)}, sort_keys=True, default=str)


def jsonable(obj: Any) -> Any:
    """Plain JSON types: tuples -> lists, numpy scalars -> Python, NaN/inf -> None."""
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


def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    return str(obj)


def dumps(obj: Any) -> str:
    """Compact JSON text of ``obj``; NaN and infinities become ``null`` (never invalid JSON).

    NOTE: compact on purpose: without ``indent`` the json module uses its C encoder,
    10x faster on a record of thousands of samples, so writing a configuration's record
    costs the sweep well under 1 % (``benchmarks/bench_overhead.py``).
    """
    try:
        return json.dumps(obj, allow_nan=False, default=_default, separators=(",", ":"))
    except ValueError:  # a NaN or an infinity somewhere: clean it, slowly, once
        return json.dumps(jsonable(obj), allow_nan=False, separators=(",", ":"))


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as JSON to ``path`` via a temporary file and ``os.replace``.

    NOTE: a process killed mid-write leaves at most a ``.<name>.<pid>.tmp`` file,
    never a truncated ``path``; :func:`load_records` ignores those and
    :func:`remove_stale_tmp` deletes them. A full disk is one line
    (``knoblab.atomic.atomic_write``: "disk full writing <path>; finished results are kept").
    """
    return atomic_write(path, dumps(obj))


def is_record(data: Any) -> bool:
    """True for a per-configuration record (not sweep.json or environment.json)."""
    return isinstance(data, dict) and "per_sample_results" in data and "knobs" in data


def load_records(out_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """``{file name: record}`` for every configuration record in ``out_dir``.

    Unreadable files (which an atomic write never leaves) and temporary files are skipped.
    """
    out: dict[str, dict[str, Any]] = {}
    d = Path(out_dir)
    if not d.is_dir():
        return out
    for p in sorted(d.glob("*.json")):
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if is_record(data):
            out[p.name] = data
    return out


def remove_stale_tmp(out_dir: str | os.PathLike[str]) -> list[str]:
    """Delete ``.<name>.<pid>.tmp`` files left by writers that are no longer running.

    NOTE: a temporary file of a live process (another rank, another sweep) is kept;
    removing it would make that writer's ``os.replace`` fail.
    """
    removed = []
    d = Path(out_dir)
    if not d.is_dir():
        return removed
    for tmp in d.glob(".*.tmp"):
        m = re.search(r"\.(\d+)\.tmp$", tmp.name)
        if m and _alive(int(m.group(1))):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp.name)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but not ours
        return True
    return True


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
    return atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))


@functools.lru_cache(maxsize=8)
def git_revision(path: str | os.PathLike[str] | None = None) -> str | None:
    """``<sha>`` (``+dirty`` when modified) of the git checkout holding ``path``, or None.

    NOTE: cached per process (asked once per sweep, of a checkout that does not change).
    """
    where = str(path or Path(__file__).resolve().parent)
    try:
        sha = subprocess.run(
            ["git", "-C", where, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", where, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def device_name(device: str) -> str:
    """A human name of ``device``: the GPU model, or the CPU model on the host."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(dev)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_info(
    *,
    device: str,
    dtype: str,
    seed: int | None,
    sampling: Mapping[str, Any] | None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Package versions, device, dtype, seed in effect, sampling plan, git revision."""
    import torch

    versions: dict[str, str | None] = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "device": device,
        "device_name": device_name(device),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "torch_num_threads": torch.get_num_threads(),
        "dtype": dtype,
        "seed": seed,
        "sampling": dict(sampling or {}),
        "git_revision": git_revision(),
        "argv": list(sys.argv),
    }
    info.update(extra or {})
    return info


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
) -> dict[str, Any]:
    """One configuration's record, seed 002's fields first (see docs/profiling.md)."""
    ok = [r for r in rows if r.get("status") == "ok"]
    crops = [r["actual_num_crops"] for r in ok if r.get("actual_num_crops") is not None]
    acc = [r["accuracy"] for r in ok]
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
