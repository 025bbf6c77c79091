"""Measuring one configuration: warmup, timed stage runs, scoring, per-sample rows.

``measure_batch_positions`` measures the plan positions of one unit of work (one batch of
``knobs.batch_size`` samples, 1 by default) at the knob setting in effect: per sample
``preprocess`` (untimed), then ``run.num_runs_per_sample`` timed runs of the batch's
stages (:func:`knoblab.profiling.batch.measure_batch`; a user adapter without batched
stages runs its samples one after another). ``warm_up`` / ``warm_up_batch`` make the
unrecorded inferences of ``run.warmup_runs``. A sample that raises in preprocess becomes
a ``status: "failed"`` row; an exception in the batch fails its samples; an
out-of-memory error raises :class:`ConfigOOM` so the caller records the whole
configuration as ``oom``.

NOTE: the per-sample latency fields are the median of the runs, each field on its own
(so ``T_total`` need not equal the sum of the stage medians); every run is kept in
``runs``. ``T_decode_per_token`` is vLLM's TPOT: decode time over ``output_tokens - 1``.
A sample is scored with its own ``metadata["metric"]`` when it has one (a dataset mixing
question types, e.g. shapes-vqa's ANLS-scored codes), else with the dataset's ``metric``.

Example:
    >>> from knoblab.profiling.synthetic import ListDataset, WaitAdapter
    >>> ad = WaitAdapter(vision_ms=0, prefill_ms=0, decode_ms=0); _ = ad.apply_knobs({"tier": "low"})
    >>> rows = measure_batch_positions(ad, ListDataset.synthetic(2), [(0, 0, 0), (1, 0, 1)],
    ...     {"tier": "low"}, {}, runs=1, max_new_tokens=3, advance=lambda: None)
    >>> [r["status"] for r in rows]
    ['ok', 'ok']
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from knoblab import records as rec
from knoblab.data.sample import sample_metric
from knoblab.models.adapter import ModelAdapter, Prepared
from knoblab.profiling.batch import measure_batch
from knoblab.profiling.timer import StageTimer
from knoblab.records.schema import COST_FIELDS, COST_LATENCY_FIELDS, ITL_FIELD

#: Per-sample fields the runner measures itself; an adapter's ``Prepared.extra`` cannot override them.
RUNNER_FIELDS = frozenset(
    (
        "sample_id",
        "accuracy",
        "pred",
        "metadata",
        "runs",
        "status",
        "error",
        "output_tokens",
        *rec.LATENCY_FIELDS,
        *COST_FIELDS,
        ITL_FIELD,
        "batch_size",
        "batched",
        "energy_unavailable_reason",
    )
)


# -- scoring ----------------------------------------------------------------------------
@functools.cache
def _scorer() -> Callable[[str, str, Sequence[str]], float]:
    try:
        from knoblab.data.scoring import score

        return score
    except ImportError:  # pragma: no cover - scoring ships with knoblab.data

        def exact(metric: str, pred: str, answers: Sequence[str]) -> float:
            return float(pred.strip().lower() in {a.strip().lower() for a in answers})

        return exact


def check_metric(metric: str) -> None:
    """Raise ``ConfigError`` now for a metric the scorer does not know (not once per sample)."""
    from knoblab.errors import ConfigError

    try:
        _scorer()(metric, "a", ["a"])
    except ConfigError as exc:
        raise ConfigError("dataset.metric", metric, exc.allowed) from None


def infer(
    adapter: ModelAdapter, prepared: Prepared, timer: StageTimer, max_new: int
) -> tuple[Any, dict[str, float]]:
    """One timed inference: (the generation, the run's latencies in ms and output tokens)."""
    timer.reset()
    with timer.stage("total"):
        with timer.stage("vision"):
            vision = adapter.encode_vision(prepared)
        with timer.stage("prefill"):
            state = adapter.prefill(prepared, vision)
        with timer.stage("decode"):
            gen = adapter.decode(state, max_new)
    ms = timer.read()
    n_out = gen.output_tokens
    run = {
        "T_vision_total": ms.get("vision", 0.0),
        "T_LLM_prefill": ms.get("prefill", 0.0),
        "T_LLM_decode": ms.get("decode", 0.0),
        "T_total": ms.get("total", 0.0),
        # vLLM's TPOT: decode time over the tokens decode produced (the first came from prefill).
        "T_decode_per_token": ms.get("decode", 0.0) / (n_out - 1) if n_out > 1 else None,
        "output_tokens": n_out,
    }
    return gen, run


def is_oom(exc: BaseException) -> bool:
    """``torch.OutOfMemoryError``, or a RuntimeError saying "out of memory" (older torch, other backends)."""
    oom = getattr(torch, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


class ConfigOOM(Exception):
    """The configuration ran out of memory after ``done`` samples."""

    def __init__(self, message: str, done: int):
        super().__init__(message)
        self.done = done


def _median(values: list[Any]) -> Any:
    vals = [v for v in values if v is not None]
    return float(statistics.median(vals)) if vals else None


#: Keys of ``Prepared.extra`` that name the theoretical tiling (they go into the row under
#: the runner's own names, not as the adapter's extra fields).
_TILING_EXTRA = (
    "target_crops",
    "theoretical_num_crops",
    "theoretical_tiling",
    "theoretical_image_size",
)


def _sample_row(
    sample: Any,
    prepared: Prepared,
    gen: Any,
    knobs: Mapping[str, Any],
    effective: Mapping[str, Any],
    score: Callable[[str, str, Sequence[str]], float],
    metric: str,
) -> dict[str, Any]:
    """A sample's row without its timings: identity, knobs, tokens, tiling, answer, score."""
    extra = prepared.extra or {}
    get = extra.get
    row: dict[str, Any] = {
        "sample_id": sample.sample_id,
        "tier": knobs.get("tier"),
        "target_vision_tokens": prepared.target_vision_tokens
        if prepared.target_vision_tokens is not None
        else knobs.get("vision_tokens"),
        "target_crops": get("target_crops"),
        "actual_vision_tokens": prepared.actual_vision_tokens,
        "top_k": effective.get("top_k", knobs.get("top_k")),
        "num_active_blocks": effective.get("num_active_blocks", knobs.get("num_active_blocks")),
        "input_text_tokens": prepared.input_text_tokens,
        "output_tokens": gen.output_tokens,
        "theoretical_num_crops": get("theoretical_num_crops", prepared.num_crops),
        "theoretical_tiling": get("theoretical_tiling", prepared.tiling),
        "theoretical_image_size": get("theoretical_image_size", prepared.image_size),
        "theoretical_vision_tokens": prepared.theoretical_vision_tokens,
        "actual_num_crops": prepared.num_crops,
        "actual_tiling": prepared.tiling,
        "actual_image_size": prepared.image_size,
        # A sample may name its own metric (shapes-vqa's "read the code": anls).
        "accuracy": float(score(sample_metric(sample, metric), gen.text, sample.answers)),
        "pred": gen.text,
        "metadata": {
            "question": sample.question,
            "answers": list(sample.answers),
            "image_id": sample.image_id,
            **dict(sample.metadata or {}),
        },
    }
    return row


def _finish_row(row: dict[str, Any], prepared: Prepared, runs: list[dict[str, Any]]) -> dict:
    # The adapter's own per-sample fields (e.g. actual_image_size of the content) win,
    # except those the runner measures itself.
    if prepared.extra:
        row.update(
            {
                k: v
                for k, v in prepared.extra.items()
                if k not in RUNNER_FIELDS and k not in _TILING_EXTRA
            }
        )
    row["runs"] = runs
    row["status"] = "ok"
    row["error"] = None
    return row


def _failed_row(sample_id: Any, knobs: Mapping[str, Any], exc: BaseException) -> dict[str, Any]:
    return {
        "sample_id": sample_id,
        "tier": knobs.get("tier"),
        "target_vision_tokens": knobs.get("vision_tokens"),
        "top_k": knobs.get("top_k"),
        "num_active_blocks": knobs.get("num_active_blocks"),
        "accuracy": None,
        "pred": None,
        **{k: None for k in rec.LATENCY_FIELDS},
        "runs": [],
        "status": "failed",
        "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:500],
    }


def warm_up(
    adapter: ModelAdapter,
    dataset: Any,
    stream: Sequence[tuple[int, int, int]],
    *,
    runs: int,
    max_new_tokens: int,
    timer: StageTimer,
) -> None:
    """``runs`` unrecorded inferences on the first of ``stream[:3]`` that loads and runs.

    Raises:
        ConfigOOM: the model ran out of memory.
    """
    for _, _, idx in stream[:3]:
        if runs == 0:
            break
        try:
            prepared = adapter.preprocess(dataset[idx])
            for _ in range(runs):
                infer(adapter, prepared, timer, max_new_tokens)
            break
        except Exception as exc:  # noqa: BLE001 - a bad sample is recorded when measured
            if is_oom(exc):
                raise ConfigOOM(f"{type(exc).__name__}: {exc}".splitlines()[0], 0) from exc


#: Per-sample figures of a timed batch whose median over ``run.num_runs_per_sample`` runs
#: is the row's value (``itl_ms`` is the median run's own list).
BATCH_FIGURES: tuple[str, ...] = tuple(
    dict.fromkeys((*rec.LATENCY_FIELDS, *COST_LATENCY_FIELDS, *COST_FIELDS))
)


#: BATCH_FIGURES but the peak memory (the runner's, per configuration).
_ROW_FIGURES = tuple(k for k in BATCH_FIGURES if k != "peak_memory_bytes")


def _batch_rows(runs: list[list[dict[str, Any]]], i: int) -> dict[str, Any]:
    """Sample ``i``'s timing fields over the runs (each ``BatchMeasurement.rows()``):
    medians, the median run's ITLs."""
    per = [rows[i] for rows in runs]
    if len(per) == 1:  # the default (one run per sample): the median is the value
        mid = per[0]
        out: dict[str, Any] = {
            k: None if (v := mid.get(k)) is None else float(v) for k in _ROW_FIGURES
        }
    else:
        out = {k: _median([r.get(k) for r in per]) for k in _ROW_FIGURES}
        order = sorted(range(len(per)), key=lambda j: per[j]["T_total"])
        mid = per[order[(len(order) - 1) // 2]]
    out[ITL_FIELD] = mid.get(ITL_FIELD)
    out["output_tokens"] = mid["output_tokens"]
    out["batch_size"], out["batched"] = mid["batch_size"], mid["batched"]
    out["energy_unavailable_reason"] = mid["energy_unavailable_reason"]
    out["runs"] = [{k: r.get(k) for k in BATCH_FIGURES if k in r} for r in per]
    return out


def _prepare_batch(
    adapter: ModelAdapter,
    dataset: Any,
    stream: Sequence[tuple[int, int, int]],
    knobs: Mapping[str, Any],
) -> tuple[list[tuple[int, Any, Prepared]], dict[int, dict[str, Any]]]:
    """(the samples that loaded and preprocessed: (stream index, sample, prepared), the
    failed rows by stream index). A sample whose preprocess fails leaves the batch."""
    ready, failed = [], {}
    for j, (_, _, idx) in enumerate(stream):
        sample_id: Any = idx
        try:
            sample = dataset[idx]
            sample_id = sample.sample_id
            ready.append((j, sample, adapter.preprocess(sample)))
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - one failing sample must not stop the sweep
            if is_oom(exc):
                raise ConfigOOM(f"{type(exc).__name__}: {exc}".splitlines()[0], 0) from exc
            real_id = getattr(exc, "sample_id", None)
            failed[j] = _failed_row(sample_id if real_id is None else real_id, knobs, exc)
    return ready, failed


def measure_batch_positions(
    adapter: ModelAdapter,
    dataset: Any,
    stream: Sequence[tuple[int, int, int]],
    knobs: Mapping[str, Any],
    effective: Mapping[str, Any],
    *,
    runs: int,
    max_new_tokens: int,
    advance: Callable[[], None],
    energy: Any = None,
    weights: Any = ...,
    batched: bool | None = None,
) -> list[dict[str, Any]]:
    """Per-sample rows of ``stream`` measured as ONE batch (``profiling.batch.measure_batch``).

    The runner's unit of work at ``knobs.batch_size`` = ``len(stream)``: the samples are
    preprocessed (untimed; one that fails there is a failed row and leaves the batch), then
    the batch runs ``runs`` times (``run.num_runs_per_sample``); each sample's figures are
    the medians over the runs (every run kept in ``runs``). An exception in the batch fails
    every sample of it; out of memory raises :class:`ConfigOOM`. ``energy``: the sweep's
    ``EnergyMeter``; ``weights``: the model's weight bytes when known; ``batched``:
    whether the adapter has batched stages, when the caller knows (both ``measure_batch``).
    ``peak_memory_bytes`` is the runner's (a ``MemorySpan`` per unit).
    """
    score = _scorer()
    metric = getattr(dataset, "metric", "exact_match")
    ready, rows_at = _prepare_batch(adapter, dataset, stream, knobs)
    if ready:
        prepared = [p for _, _, p in ready]
        try:
            ms = []
            for _ in range(runs):
                ms.append(
                    measure_batch(
                        adapter,
                        prepared,
                        max_new_tokens,
                        energy=energy,
                        weights=weights,
                        batched=batched,
                    )
                )
            per_run = [m.rows() for m in ms]
            for i, (j, sample, p) in enumerate(ready):
                row = _sample_row(sample, p, ms[0].generations[i], knobs, effective, score, metric)
                row.update(_batch_rows(per_run, i))
                rows_at[j] = _finish_row(row, p, row.pop("runs"))
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - a failing batch fails its samples, not the sweep
            if is_oom(exc):
                raise ConfigOOM(f"{type(exc).__name__}: {exc}".splitlines()[0], 0) from exc
            for j, sample, _ in ready:
                rows_at[j] = _failed_row(sample.sample_id, knobs, exc)
    rows = []
    for j, (pos, epoch, idx) in enumerate(stream):
        row = rows_at[j]
        row["position"], row["epoch"], row["dataset_index"] = pos, epoch, idx
        rows.append(row)
        advance()
    return rows


def warm_up_batch(
    adapter: ModelAdapter,
    dataset: Any,
    stream: Sequence[tuple[int, int, int]],
    *,
    batch_size: int,
    runs: int,
    max_new_tokens: int,
) -> None:
    """``runs`` unrecorded batches of the first ``batch_size`` samples that preprocess
    (the batch's shapes: allocator and kernel caches fill here). Failures are left to the
    measured batches to record, except out of memory (:class:`ConfigOOM`)."""
    prepared = []
    for _, _, idx in stream:
        if len(prepared) == batch_size or runs == 0:
            break
        try:
            prepared.append(adapter.preprocess(dataset[idx]))
        except Exception:  # noqa: BLE001, S112 - a bad sample is recorded when measured
            continue
    if not prepared:
        return
    try:
        for _ in range(runs):
            measure_batch(adapter, prepared, max_new_tokens)
    except Exception as exc:  # noqa: BLE001 - a bad batch is recorded when measured
        if is_oom(exc):
            raise ConfigOOM(f"{type(exc).__name__}: {exc}".splitlines()[0], 0) from exc
