"""The shape of a sweep record: version, constants, typed rows, and the checks a reader runs.

A sweep directory holds one JSON *record* per configuration (seed 002's fields:
``aggregate_stats.T_total_p95``, ``per_sample_results``, the file naming), a
``sweep.json`` naming the sweep (identity, knob lists, configurations asked for) and
``samples.parquet``. Both JSON kinds carry ``schema_version`` (:data:`SCHEMA_VERSION`);
:mod:`knoblab.records.migrate` brings older records to it.

A record names its percentiles (``percentiles``: ``run.percentiles``, default 50, 95,
99; a statistic ``p<q>`` per percentile) and gives every latency figure's mean and
percentiles a confidence interval (``<figure>_<stat>_lo`` / ``_hi``; ``accuracy_lo`` /
``accuracy_hi``; the ``intervals`` block says how: :mod:`knoblab.records.aggregate`).

A record lists its knobs: ``knobs`` maps each knob the configuration set to its value
(``tier`` or ``vision_tokens``, ``top_k``, ``num_active_blocks``, or an adapter's own
names). Seed 002's top-level ``tier``/``top_k``/``num_active_blocks``/``vision_tokens``
stay, ``None`` when the model has no such knob.

NOTE (percentile rule, the one rule of knoblab): the ``q``-th percentile of ``n`` values
is trusted when at least one value lies above it, i.e. ``n >= ceil(100 / (100 - q))``:
p50 needs 2, p95 needs 20, p99 needs 100 (:func:`min_samples_for`). The writer flags a
figure that has fewer in the record's ``warnings`` and the analysis flags it in its
notes, each quoting that figure's own count (``T_decode_per_token`` has fewer values
than ``T_total`` when answers are one token long).

Example:
    >>> min_samples_for(95), percentile_warnings({"T_total": 8}, figures=["T_total"])
    (20, ['p95 rests on 8 samples (needs >= 20): T_total', 'p99 rests on 8 samples (needs >= 100): T_total'])
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

from knoblab.errors import ConfigError, DataError

#: Version of the record and ``sweep.json`` layout written now. 1 = records before
#: versioning (no ``schema_version`` key, including seed 002's own); see ``migrate``.
SCHEMA_VERSION = 3

#: The three timed stages, in pipeline order (``T_total`` also holds the host time between them).
STAGES: tuple[str, ...] = ("T_vision_total", "T_LLM_prefill", "T_LLM_decode")
#: Short stage names used in tables and reports.
STAGE_NAMES: dict[str, str] = {
    "T_vision_total": "vision",
    "T_LLM_prefill": "prefill",
    "T_LLM_decode": "decode",
}
#: Per-sample latency figures, in milliseconds.
LATENCY_FIELDS: tuple[str, ...] = (*STAGES, "T_total", "T_decode_per_token")
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
#: Cost figures (issue 15, docs/profiling.md "Cost: memory, TTFT/TPOT/ITL, throughput,
#: energy"). Per-sample latencies in ms, vLLM's definitions: ``T_ttft`` = vision + prefill,
#: ``T_tpot`` = decode / (output_tokens - 1) (None for one token).
COST_LATENCY_FIELDS: tuple[str, ...] = ("T_ttft", "T_tpot")
#: The per-row list of inter-token latencies (ms, one per decode step that gave the sample
#: a token); aggregated over every step of every sample as ``itl_ms_<stat>``.
ITL_FIELD = "itl_ms"
#: Bytes: the configuration's measured peak (GPU: max_memory_allocated; CPU: peak RSS),
#: the sample's analytic KV cache and the model's weights.
MEMORY_FIELDS: tuple[str, ...] = ("peak_memory_bytes", "kv_cache_bytes", "weights_bytes")
#: The batch's samples/s and generated tokens/s, on each of its rows.
THROUGHPUT_FIELDS: tuple[str, ...] = ("throughput_samples_s", "throughput_tokens_s")
#: Joules per sample and per generated token (None, with ``energy_unavailable_reason``,
#: where the hardware tells nothing).
ENERGY_FIELDS: tuple[str, ...] = ("energy_j", "energy_j_per_token")
#: Every numeric per-sample cost figure, aggregated as ``<figure>_<stat>``.
COST_FIELDS: tuple[str, ...] = (
    *COST_LATENCY_FIELDS,
    *MEMORY_FIELDS,
    *THROUGHPUT_FIELDS,
    *ENERGY_FIELDS,
)
#: ``aggregate_stats["<figure>_<stat>"]`` for every figure and every stat here (with the
#: default percentiles; :func:`stats_for` gives them for a record's own ``percentiles``).
STATS: tuple[str, ...] = ("count", "mean", "std", "min", "max", "p50", "p95", "p99")
#: The percentiles recorded when ``run.percentiles`` is not set.
DEFAULT_PERCENTILES: tuple[float, ...] = (50.0, 95.0, 99.0)
#: The default percentiles by name (numpy's linear interpolation, Hyndman & Fan type 7).
PERCENTILES: dict[str, float] = {"p50": 50.0, "p95": 95.0, "p99": 99.0}
#: Figures that get a confidence interval (``<figure>_<stat>_lo`` / ``_hi``) on their
#: mean and every percentile: the latencies.
INTERVAL_FIELDS: tuple[str, ...] = LATENCY_FIELDS
STATUSES: tuple[str, ...] = ("ok", "oom", "failed")
#: Seed 002's tiers: name -> (min_crops, max_crops), inclusive; cost order low < medium < high.
TIERS: dict[str, tuple[int, int]] = {"low": (1, 3), "medium": (4, 8), "high": (9, 15)}
TIER_ORDER: tuple[str, ...] = tuple(TIERS)
#: The two modes of the vision-token budget knob (they exclude each other).
VISION_KNOBS: tuple[str, ...] = ("tier", "vision_tokens")
#: Seed 002's knobs, in the order its file names and tables use; other knobs follow, sorted.
SEED_KNOBS: tuple[str, ...] = ("tier", "vision_tokens", "top_k", "num_active_blocks")
#: JSON files of a sweep directory that are not configuration records.
NOT_RECORDS: frozenset[str] = frozenset(
    {"environment.json", "sweep.json", "estimator.json", "analysis.json", "deep_profile.json"}
)


class SampleRow(TypedDict, total=False):
    """One sample at one configuration (``per_sample_results[i]``; a row of samples.parquet).

    Latencies are the median of the sample's timed runs (each in ``runs``), in ms.
    Token fields a model cannot tell are ``None``.
    """

    sample_id: Any  #: the dataset's id of the sample
    status: str  #: ``ok`` or ``failed``
    error: str | None  #: first line of the exception of a failed sample
    accuracy: float | None  #: the dataset metric's score in [0, 1]
    pred: str | None  #: the decoded answer
    tier: str | None
    target_vision_tokens: int | None
    target_crops: int | None
    actual_vision_tokens: int | None  #: valid vision tokens the LLM saw
    top_k: int | None
    num_active_blocks: int | None
    input_text_tokens: int | None
    output_tokens: int | None
    theoretical_num_crops: int | None
    theoretical_tiling: list[int] | None
    theoretical_image_size: list[int] | None
    theoretical_vision_tokens: int | None
    actual_num_crops: int | None
    actual_tiling: list[int] | None
    actual_image_size: list[int] | None
    T_vision_total: float | None
    T_LLM_prefill: float | None
    T_LLM_decode: float | None
    T_total: float | None
    T_decode_per_token: float | None  #: vLLM's TPOT: decode time / (output_tokens - 1)
    T_ttft: float | None  #: vLLM's TTFT: T_vision_total + T_LLM_prefill
    T_tpot: float | None  #: vLLM's TPOT (= T_decode_per_token)
    itl_ms: list[float] | None  #: vLLM's ITL: each decode step's time (None: not timed per step)
    batch_size: int | None  #: samples run together in the sample's batch
    peak_memory_bytes: int | None  #: the configuration's measured peak (see MEMORY_FIELDS)
    kv_cache_bytes: int | None  #: analytic KV cache of this sample's sequence
    weights_bytes: int | None
    throughput_samples_s: float | None  #: of the sample's batch
    throughput_tokens_s: float | None
    energy_j: float | None  #: the batch's joules over its samples
    energy_j_per_token: float | None  #: the batch's joules over its generated tokens
    energy_unavailable_reason: str | None
    metadata: dict[str, Any]  #: question, answers, image id and the dataset's own fields
    runs: list[dict[str, Any]]  #: every timed run's latencies
    position: int  #: position in the sampling plan
    epoch: int
    dataset_index: int  #: index into the dataset (``sweep.json``'s ``sample_ids``)


class Record(TypedDict, total=False):
    """One configuration's record (one JSON file); docs/profiling.md describes every field."""

    schema_version: int
    tier: str | None
    tier_range: Any
    selected_crops_mean: float | None
    selected_crops_distribution: dict[str, int]
    target_vision_tokens_mean: float | None
    actual_vision_tokens_mean: float | None
    max_crops: int | None
    top_k: int | None
    num_active_blocks: int | None
    num_total_blocks: int | None
    active_block_indices: list[int] | None
    vision_tokens: int | None
    accuracy: float | None
    accuracy_std: float | None
    accuracy_stderr: float | None
    accuracy_lo: float | None  #: the accuracy's confidence interval (``intervals.accuracy``)
    accuracy_hi: float | None
    percentiles: list[float]  #: the percentiles in ``aggregate_stats`` (``run.percentiles``)
    intervals: dict[str, Any]  #: how the ``_lo``/``_hi`` figures were computed
    num_samples: int
    num_failed_samples: int
    aggregate_stats: dict[str, float | int | None]
    task: str
    model: str
    knobs: dict[str, Any]  #: every knob this configuration set, by name
    effective_knobs: dict[str, Any]
    status: str  #: ``ok``, ``oom`` or ``failed``
    error: str | None
    warnings: list[str]
    sampling: dict[str, Any]  #: the plan, with ``sample_ids`` (dataset indices)
    environment: dict[str, Any]
    per_sample_results: list[SampleRow]


# -- percentiles: names, the user's choice, the rule ----------------------------------------
def percentile_name(q: float) -> str:
    """``p95`` for 95, ``p99.9`` for 99.9: the name in ``aggregate_stats`` keys."""
    return f"p{float(q):g}"


def check_percentiles(values: Any, key: str = "run.percentiles") -> tuple[float, ...]:
    """The percentiles ``values`` as sorted floats; a one-line ``ConfigError`` naming ``key``.

    Allowed: a non-empty list of distinct numbers strictly between 0 and 100.

    Example:
        >>> check_percentiles([99, 50, 90])
        (50.0, 90.0, 99.0)
    """
    allowed = "a non-empty list of distinct numbers strictly between 0 and 100, e.g. [50, 95, 99]"
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ConfigError(key, values, allowed)
    vals = list(values)
    if not vals or not all(_number(v) and v is not None and 0 < v < 100 for v in vals):
        raise ConfigError(key, vals, allowed)
    out = tuple(sorted(float(v) for v in vals))
    if len(set(map(percentile_name, out))) != len(out):
        raise ConfigError(key, vals, allowed, "a percentile is listed twice")
    return out


def stats_for(percentiles: Iterable[float] = DEFAULT_PERCENTILES) -> tuple[str, ...]:
    """The statistics of every figure in ``aggregate_stats`` with these percentiles."""
    return (*STATS[:5], *(percentile_name(q) for q in percentiles))


def record_percentiles(rec: Mapping[str, Any]) -> tuple[float, ...]:
    """The percentiles a record (or ``sweep.json``) holds: its ``percentiles``, else the default."""
    vals = rec.get("percentiles")
    return tuple(float(v) for v in vals) if isinstance(vals, list) and vals else DEFAULT_PERCENTILES


def min_samples_for(q: float) -> int:
    """Fewest values for which the ``q``-th percentile has at least one value above it."""
    return math.ceil(100.0 / (100.0 - q) - 1e-9)


def percentile_warnings(
    counts: Mapping[str, int],
    figures: Iterable[str] = LATENCY_FIELDS,
    percentiles: Iterable[float] = DEFAULT_PERCENTILES,
) -> list[str]:
    """One line per (percentile, count) too small: the figures resting on that count.

    ``counts`` maps a figure to how many values it has; figures with no value are not
    flagged (their statistics are ``None``).
    """
    out = []
    figures = list(figures)
    for q in percentiles:
        s, need = percentile_name(q), min_samples_for(q)
        by_count: dict[int, list[str]] = {}
        for f in figures:
            n = counts.get(f)
            if n and n < need:
                by_count.setdefault(int(n), []).append(f)
        for n in sorted(by_count, reverse=True):
            out.append(f"{s} rests on {n} samples (needs >= {need}): {', '.join(by_count[n])}")
    return out


_PERCENTILE_WARNING = re.compile(r"p\d+(\.\d+)? rests on ")


def is_percentile_warning(line: str) -> bool:
    """True for a line of :func:`percentile_warnings` (v1 wrote ``"p95 rests on ..."`` too)."""
    return bool(_PERCENTILE_WARNING.match(line))


# -- type checks of what is read -------------------------------------------------------------
def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:80]


def _bad(where: str, field: str, value: Any, allowed: str) -> DataError:
    return DataError(f"{where}: field {field} is {_kind(value)}: allowed is {allowed}")


def _number(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def check_record(rec: Any, where: str) -> None:
    """Raise a one-line ``DataError`` naming ``where`` and the field when ``rec`` has a wrong type.

    Checks what readers rely on: ``knobs`` a mapping of scalars, ``per_sample_results``
    a list of mappings whose figures are numbers, ``aggregate_stats`` a mapping of
    numbers, ``accuracy`` a number, ``status`` one of :data:`STATUSES`.
    """
    if not isinstance(rec, dict):
        raise _bad(where, "(the record)", rec, "a JSON object")
    knobs = rec.get("knobs")
    if not isinstance(knobs, dict):
        raise _bad(where, "knobs", knobs, "an object mapping knob names to values")
    for k, v in knobs.items():
        if not (isinstance(v, (str, int, float)) and not isinstance(v, bool)):
            raise _bad(where, f"knobs.{k}", v, "a number or a string")
    rows = rec.get("per_sample_results")
    if not isinstance(rows, list):
        raise _bad(where, "per_sample_results", rows, "a list of per-sample objects")
    status = rec.get("status", "ok")
    if status not in STATUSES:
        raise _bad(where, "status", status, f"one of {', '.join(STATUSES)}")
    for key in ("accuracy", "accuracy_std", "accuracy_lo", "accuracy_hi"):
        if not _number(rec.get(key)):
            raise _bad(where, key, rec.get(key), "a number or null")
    for key in ("num_samples", "num_failed_samples"):
        if not _number(rec.get(key)):
            raise _bad(where, key, rec.get(key), "a number or null")
    pct = rec.get("percentiles", list(DEFAULT_PERCENTILES))
    if not (isinstance(pct, list) and pct and all(_number(q) and q is not None for q in pct)):
        raise _bad(where, "percentiles", pct, "a list of numbers between 0 and 100")
    if not isinstance(rec.get("intervals", {}), dict):
        raise _bad(where, "intervals", rec.get("intervals"), "an object (method, confidence, ...)")
    agg = rec.get("aggregate_stats", {})
    if not isinstance(agg, dict):
        raise _bad(where, "aggregate_stats", agg, "an object of <figure>_<stat> numbers")
    for k, v in agg.items():
        if not _number(v):
            raise _bad(where, f"aggregate_stats.{k}", v, "a number or null")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise _bad(where, f"per_sample_results[{i}]", row, "an object")
        for k in ("accuracy", *LATENCY_FIELDS, "actual_vision_tokens", "output_tokens"):
            if not _number(row.get(k)):
                raise _bad(where, f"per_sample_results[{i}].{k}", row.get(k), "a number or null")
        for k in COST_FIELDS:
            if not _number(row.get(k)):
                raise _bad(where, f"per_sample_results[{i}].{k}", row.get(k), "a number or null")
        itl = row.get(ITL_FIELD)
        if itl is not None and not (isinstance(itl, list) and all(_number(v) for v in itl)):
            raise _bad(
                where, f"per_sample_results[{i}].{ITL_FIELD}", itl, "a list of numbers or null"
            )
    if not isinstance(rec.get("warnings", []), list):
        raise _bad(where, "warnings", rec.get("warnings"), "a list of strings")


def check_sweep(data: Any, where: str) -> None:
    """Raise a one-line ``DataError`` when ``sweep.json``'s content has a wrong type."""
    if not isinstance(data, dict):
        raise _bad(where, "(the file)", data, "a JSON object with identity, knob_lists, ...")
    ident = data.get("identity", {})
    if not isinstance(ident, dict):
        raise _bad(where, "identity", ident, "an object (model, dataset, sample_ids, ...)")
    ids = ident.get("sample_ids", [])
    if not isinstance(ids, list):
        raise _bad(where, "identity.sample_ids", ids, "a list of dataset indices")
    if not isinstance(ident.get("model", {}), dict):
        raise _bad(where, "identity.model", ident.get("model"), "an object with the model's name")
    for key in ("knob_lists", "configurations"):
        val = data.get(key, [])
        if not isinstance(val, list) or not all(isinstance(x, dict) for x in val):
            raise _bad(where, key, val, "a list of objects")
