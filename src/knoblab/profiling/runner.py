"""Stage 1: the accuracy x stage-latency sweep over knob configurations.

``run_sweeps(cfg)`` (what ``knoblab profile`` calls) loads the model once, then for each
dataset runs :func:`run_sweep`: every configuration of the design, on the same samples
(the dataset sampling plan, ``dataset.sampling.*`` or legacy ``repeats``), knobs applied
in place, with ``run.warmup_runs`` unrecorded inferences before measuring and
``run.num_runs_per_sample`` timed runs per sample (every run kept, medians aggregated).
The profiler is never on here (seed 003): stages are timed by :class:`StageTimer`.

Output directory ``<run.output_dir>/<task>/``:

- one JSON record per configuration (``records.record_filename``), written atomically;
- ``sweep.json``: the sweep's identity (model, dataset, device, dtype, sample ids) and
  the knob lists and configurations asked for so far;
- ``samples.parquet``, ``environment.json``, ``report.md``: rebuilt from all records at
  the end of every run.

Crash safety: a configuration's record appears only complete (temporary file, then
``os.replace``); a rerun into the same directory skips configurations that have a
record, so a sweep killed (even with SIGKILL) and rerun ends complete with every
configuration exactly once. A directory holding another sweep (other model, dataset,
device, dtype, generation length or samples) is refused before anything is written.

Failures: a sample that raises (corrupt image, any exception) is recorded with
``status: "failed"`` and its ``error`` and the sweep goes on; scores and latency
aggregates cover the samples that ran (``num_failed_samples`` says how many did not).
A configuration that runs out of memory is recorded with ``status: "oom"``, one whose
every sample failed (or whose knobs could not be applied) with ``status: "failed"``;
both count as finished unless ``run.retry_failed=true``.

Several processes (``torchrun``): ranks split the plan's positions with
``plan.shard(rank, world_size)``; rank 0 gathers the per-sample results, puts them back
in plan order and alone writes files. Set ``dataset.sampling.seed`` when shuffling so
that all ranks draw the same plan (rank 0's seed is broadcast otherwise).

Example:
    >>> from knoblab.hydra_utils import compose
    >>> results = run_sweeps(compose("profile", ["dataset.size=20"]))  # doctest: +SKIP
"""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from knoblab.config import plain, to_dataclass
from knoblab.errors import ConfigError, DataError, KnobLabError
from knoblab.models.adapter import ModelAdapter, Prepared, check_knob
from knoblab.profiling import records as rec
from knoblab.profiling.design import DesignConfig, make_design
from knoblab.profiling.hardware import HardwareConfig, apply_hardware
from knoblab.profiling.report import summary_rows, write_report_md
from knoblab.profiling.timer import StageTimer

_RUNNER_FIELDS = frozenset(
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
    )
)


@dataclass
class RunConfig:
    """The ``run`` config section of ``knoblab profile``.

    Attributes:
        output_dir: results root; each dataset writes into ``<output_dir>/<task>/``.
        num_runs_per_sample: timed runs per sample; the per-sample latency is their median.
        warmup_runs: unrecorded inferences after each knob change, before measuring.
        max_new_tokens: generation length cap (output tokens, the prefill's token included).
        retry_failed: rerun configurations recorded as ``oom`` or ``failed``.
        progress: show the rich progress bar (rank 0 only).
        stage1_repeats: deprecated (Stage-2's old key); use ``dataset.sampling.*``.
    """

    output_dir: str = "results/profile"
    num_runs_per_sample: int = 1
    warmup_runs: int = 2
    max_new_tokens: int = 8
    retry_failed: bool = False
    progress: bool = True
    stage1_repeats: int | None = None

    def __post_init__(self) -> None:
        if self.num_runs_per_sample < 1:
            raise ConfigError("num_runs_per_sample", self.num_runs_per_sample, "an integer >= 1")
        if self.warmup_runs < 0:
            raise ConfigError("warmup_runs", self.warmup_runs, "an integer >= 0")
        if self.max_new_tokens < 1:
            raise ConfigError("max_new_tokens", self.max_new_tokens, "an integer >= 1")


@dataclass
class SweepResult:
    """What one dataset's sweep produced.

    Attributes:
        out_dir: the sweep's directory.
        records: ``{file name: record}`` of every configuration in the directory.
        ran: file names of the configurations measured by this call.
        skipped: file names of configurations found finished and not rerun.
        rows: the summary table's rows (``report.summary_rows``).
        plan: ``plan.describe()`` of the sampling plan.
        seconds: wall time of ``setup`` (checks, plan, directory), ``measure`` (the
            configurations: knobs, warmup, timed runs, scoring, record writes) and
            ``finish`` (parquet, report, table); ``measure_cpu``: this process's CPU
            time during ``measure`` (all its threads).
    """

    out_dir: Path
    records: dict[str, dict[str, Any]]
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    plan: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


# -- distributed helpers ----------------------------------------------------------------
def _dist() -> tuple[int, int]:
    """(rank, world_size); initialises the process group under torchrun (gloo on CPU)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return 0, 1
    if not dist.is_initialized():
        backend = (
            "nccl"
            if torch.cuda.is_available() and os.environ.get("KNOBLAB_BACKEND") != "gloo"
            else "gloo"
        )
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def _broadcast(obj: Any, world: int) -> Any:
    if world == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _gather(obj: Any, rank: int, world: int) -> list[Any]:
    if world == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] | None = [None] * world if rank == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out or []


# -- scoring ----------------------------------------------------------------------------
def _scorer() -> Callable[[str, str, Sequence[str]], float]:
    try:
        from knoblab.data.scoring import score

        return score
    except ImportError:  # pragma: no cover - scoring ships with knoblab.data

        def exact(metric: str, pred: str, answers: Sequence[str]) -> float:
            return float(pred.strip().lower() in {a.strip().lower() for a in answers})

        return exact


# -- one inference ----------------------------------------------------------------------
def _infer(
    adapter: ModelAdapter, prepared: Prepared, timer: StageTimer, max_new: int
) -> tuple[Any, dict[str, float]]:
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


def _is_oom(exc: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


class _OOM(Exception):
    def __init__(self, message: str, done: int):
        super().__init__(message)
        self.done = done


def _median(values: list[Any]) -> Any:
    vals = [v for v in values if v is not None]
    return float(statistics.median(vals)) if vals else None


def _measure_sample(
    adapter: ModelAdapter,
    sample: Any,
    knobs: Mapping[str, Any],
    effective: Mapping[str, Any],
    run_cfg: RunConfig,
    timer: StageTimer,
    score: Callable[[str, str, Sequence[str]], float],
    metric: str,
) -> dict[str, Any]:
    prepared = adapter.preprocess(sample)
    runs = []
    gen = None
    for _ in range(run_cfg.num_runs_per_sample):
        g, run = _infer(adapter, prepared, timer, run_cfg.max_new_tokens)
        gen = gen or g
        runs.append(run)
    assert gen is not None
    extra = dict(prepared.extra or {})
    row: dict[str, Any] = {
        "sample_id": sample.sample_id,
        "tier": knobs.get("tier"),
        "target_vision_tokens": prepared.target_vision_tokens
        if prepared.target_vision_tokens is not None
        else knobs.get("vision_tokens"),
        "target_crops": extra.pop("target_crops", None),
        "actual_vision_tokens": prepared.actual_vision_tokens,
        "top_k": effective.get("top_k", knobs.get("top_k")),
        "num_active_blocks": effective.get("num_active_blocks", knobs.get("num_active_blocks")),
        "input_text_tokens": prepared.input_text_tokens,
        "output_tokens": gen.output_tokens,
        "theoretical_num_crops": extra.pop("theoretical_num_crops", prepared.num_crops),
        "theoretical_tiling": extra.pop("theoretical_tiling", prepared.tiling),
        "theoretical_image_size": extra.pop("theoretical_image_size", prepared.image_size),
        "theoretical_vision_tokens": prepared.theoretical_vision_tokens,
        "actual_num_crops": prepared.num_crops,
        "actual_tiling": prepared.tiling,
        "actual_image_size": prepared.image_size,
        "accuracy": float(score(metric, gen.text, sample.answers)),
        "pred": gen.text,
        "metadata": {
            "question": sample.question,
            "answers": list(sample.answers),
            "image_id": sample.image_id,
            **dict(sample.metadata or {}),
        },
    }
    for k in rec.LATENCY_FIELDS:
        row[k] = _median([r[k] for r in runs])
    # The adapter's own per-sample fields (e.g. actual_image_size of the content) win,
    # except those the runner measures itself.
    row.update({k: v for k, v in extra.items() if k not in _RUNNER_FIELDS})
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


def _run_positions(
    adapter: ModelAdapter,
    dataset: Any,
    stream: Sequence[tuple[int, int, int]],
    knobs: Mapping[str, Any],
    effective: Mapping[str, Any],
    run_cfg: RunConfig,
    timer: StageTimer,
    advance: Callable[[], None],
) -> list[dict[str, Any]]:
    """Measure ``stream`` = [(position, epoch, dataset index)]; raises ``_OOM``."""
    score = _scorer()
    metric = getattr(dataset, "metric", "exact_match")
    # Warm up on the first sample that loads and runs (shapes change with the knobs).
    for _, _, idx in stream[:3]:
        if run_cfg.warmup_runs == 0:
            break
        try:
            prepared = adapter.preprocess(dataset[idx])
            for _ in range(run_cfg.warmup_runs):
                _infer(adapter, prepared, timer, run_cfg.max_new_tokens)
            break
        except Exception as exc:  # noqa: BLE001 - a bad sample is recorded when measured
            if _is_oom(exc):
                raise _OOM(f"{type(exc).__name__}: {exc}".splitlines()[0], 0) from exc
    rows = []
    for pos, epoch, idx in stream:
        sample_id: Any = idx
        try:
            sample = dataset[idx]
            sample_id = sample.sample_id
            row = _measure_sample(adapter, sample, knobs, effective, run_cfg, timer, score, metric)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - one failing sample must not stop the sweep
            if _is_oom(exc):
                raise _OOM(f"{type(exc).__name__}: {exc}".splitlines()[0], len(rows)) from exc
            row = _failed_row(sample_id, knobs, exc)
        row["position"] = pos
        row["epoch"] = epoch
        row["dataset_index"] = idx
        rows.append(row)
        advance()
    return rows


# -- records ----------------------------------------------------------------------------
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
    stats, warns = rec.aggregate_stats(ok)
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


# -- identity ---------------------------------------------------------------------------
def _identity_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    for key in ("model", "dataset", "device", "dtype", "max_new_tokens"):
        if old.get(key) != new.get(key):
            return f"{key} differs: {old.get(key)!r} there, {new.get(key)!r} now"
    a, b = old.get("sample_ids") or [], new.get("sample_ids") or []
    if a != b:
        if len(a) != len(b):
            return f"samples differ: {len(a)} samples there, {len(b)} now"
        i = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
        return f"samples differ: position {i} is sample {a[i]!r} there, {b[i]!r} now"
    return None


def _check_out_dir(out_dir: Path, identity: Mapping[str, Any]) -> dict[str, Any] | None:
    """The existing sweep.json, or None; raises when the directory holds another sweep."""
    path = out_dir / "sweep.json"
    if not path.exists():
        if rec.load_records(out_dir):
            raise KnobLabError(
                f"run.output_dir={str(out_dir.parent)!r}: {out_dir} holds configuration records "
                "but no sweep.json, so they cannot be matched to this sweep; "
                "choose a new directory (run.output_dir=...)"
            )
        return None
    import json

    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise KnobLabError(
            f"run.output_dir={str(out_dir.parent)!r}: {path} is unreadable ({exc})"
        ) from exc
    diff = _identity_diff(old.get("identity", {}), identity)
    if diff:
        raise KnobLabError(
            f"run.output_dir={str(out_dir.parent)!r}: {out_dir} holds another sweep's results "
            f"({diff}); nothing was overwritten; choose a new directory, "
            f"e.g. run.output_dir={str(out_dir.parent)}-2"
        )
    return old


def _stream(plan: Any, rank: int, world: int) -> list[tuple[int, int, int]]:
    """This rank's [(plan position, epoch, dataset index)]."""
    shard = plan.shard(rank, world)
    positions = shard.positions().tolist()
    indices = shard.indices().tolist()
    per_epoch = max(1, int(plan.describe()["samples_per_epoch"]))
    return [
        (p, min(p // per_epoch, plan.num_epochs - 1), i)
        for p, i in zip(positions, indices, strict=True)
    ]


def knob_lists(cfg_knobs: Mapping[str, Any] | None, adapter: ModelAdapter) -> dict[str, list[Any]]:
    """The ``knobs`` section as {name: values}, null lists dropped, checked against the model.

    Raises:
        ConfigError: an unknown knob, a value the model does not allow, an empty list,
            or both ``tier`` and ``vision_tokens`` (they are two modes of one knob).
    """
    specs = adapter.knobs()
    lists: dict[str, list[Any]] = {}
    for name, values in (plain(cfg_knobs) or {}).items():
        if values is None:
            continue
        vals = list(values) if isinstance(values, (list, tuple)) else [values]
        if not vals:
            raise ConfigError(
                f"knobs.{name}",
                [],
                "a non-empty list of values, or null to leave the knob at its default",
            )
        for v in vals:
            check_knob(specs, name, v, adapter.name)
        lists[name] = vals
    if "tier" in lists and "vision_tokens" in lists:
        raise ConfigError(
            "knobs.vision_tokens",
            lists["vision_tokens"],
            "null when knobs.tier is set (tier mode and target-tokens mode exclude each other)",
        )
    if not lists:
        raise ConfigError(
            "knobs",
            {},
            f"at least one knob list; model {adapter.name!r} has {', '.join(specs) or 'none'}",
        )
    return lists


# -- the sweep --------------------------------------------------------------------------
def _progress(enabled: bool, console: Any) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    # Two refreshes a second: the bar's rendering thread must not steal the cores we time.
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        refresh_per_second=2,
        transient=False,
    )


def weights_digest(module: torch.nn.Module, values_per_tensor: int = 64) -> str:
    """A cheap digest of a module's weights: names, shapes, dtypes and a few values each.

    NOTE: reads at most ``values_per_tensor`` values of each tensor (the first ones), so
    it costs milliseconds even for billions of parameters; it tells apart checkpoints
    (random init vs trained, another fine-tune), not two weights differing only deep
    inside one tensor. Meta tensors (offloaded shards) contribute their shape only.
    """
    import hashlib

    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        if t.device.type != "meta" and t.numel():
            head = t.detach().reshape(-1)[:values_per_tensor].to("cpu", torch.float64)
            h.update(head.numpy().tobytes())
    return h.hexdigest()[:16]


def _model_identity(adapter: ModelAdapter, model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Name, config keys naming the weights, and a fingerprint of the weights themselves.

    The fingerprint is ``adapter.fingerprint`` (attribute or method) when the adapter
    has one, else :func:`weights_digest` of ``adapter.model`` when that is a module: a
    results directory of random-init weights is then not mistaken for trained ones.
    """
    ident: dict[str, Any] = {"name": adapter.name}
    fingerprint = getattr(adapter, "fingerprint", None)
    if callable(fingerprint):
        fingerprint = fingerprint()
    if fingerprint is None and isinstance(getattr(adapter, "model", None), torch.nn.Module):
        fingerprint = weights_digest(adapter.model)  # type: ignore[attr-defined]
    if fingerprint is not None:
        ident["fingerprint"] = fingerprint
    for key in ("kind", "checkpoint", "path", "name_or_path", "weights"):
        if model_cfg.get(key) is not None:
            ident[key] = model_cfg[key]
    return ident


def run_sweep(
    cfg: Mapping[str, Any] | Any,
    *,
    adapter: ModelAdapter,
    dataset: Any | None = None,
    console: Any | None = None,
) -> SweepResult:
    """Run one dataset's sweep described by ``cfg`` (the composed ``profile`` config).

    ``adapter`` is loaded by the caller (once for all datasets); ``dataset`` defaults
    to ``build_dataset(cfg.dataset)``.

    Raises:
        ConfigError: bad run/design/knob settings (before anything is written).
        DataError: an empty dataset.
        KnobLabError: the output directory holds another sweep.
    """

    from knoblab.data.registry import build_dataset
    from knoblab.sampling import resolve_sampling

    t_setup = time.perf_counter()
    data = plain(cfg)
    run_cfg = to_dataclass(data.get("run"), RunConfig, "run")
    design = to_dataclass(data.get("design"), DesignConfig, "design")
    rank, world = _dist()
    hw = to_dataclass(data.get("hardware") or {}, HardwareConfig, "hardware")
    empty_cache = hw.memory_savings.empty_cache_between_configs
    console = console or _console()
    quiet = rank != 0

    if dataset is None:
        dataset = build_dataset(data.get("dataset") or {})
    ds_name = getattr(dataset, "name", None) or (data.get("dataset") or {}).get("name", "dataset")
    if len(dataset) == 0:
        raise DataError(
            f"dataset.name={ds_name!r} has no samples: allowed is a dataset with >= 1 sample"
        )
    lists = knob_lists(data.get("knobs"), adapter)
    configs = make_design(
        design.name, lists, levels=design.levels, num_points=design.num_points, seed=design.seed
    )
    if not configs:
        raise ConfigError(
            "design.name",
            design.name,
            "a design that yields at least one configuration for these knob lists",
        )

    plan = resolve_sampling(data, len(dataset))
    if world > 1:
        # Every rank must walk the same plan: adopt rank 0's seed (drawn when none was set).
        seed = _broadcast(plan.seed, world)
        if seed != plan.seed:
            plan.load_state_dict({**plan.state_dict(), "seed": seed})
    plan_desc = plan.describe()
    task = rec.task_name(ds_name)
    out_dir = Path(run_cfg.output_dir) / task
    sample_ids = [int(i) for i in plan.indices().tolist()]
    identity = {
        "model": _model_identity(adapter, data.get("model") or {}),
        "dataset": {k: v for k, v in (data.get("dataset") or {}).items() if k != "sampling"}
        | {"name": ds_name, "size": len(dataset)},
        "device": getattr(adapter, "device", "cpu"),
        "dtype": getattr(adapter, "dtype", "float32"),
        "max_new_tokens": run_cfg.max_new_tokens,
        "sample_ids": sample_ids,
    }
    environment = rec.environment_info(
        device=identity["device"],
        dtype=identity["dtype"],
        seed=plan.seed,
        sampling=plan_desc,
        extra={"world_size": world},
    )

    # Rank 0 checks the directory and decides what is left; the others follow.
    decision: dict[str, Any] | Exception
    previous: dict[str, str] = {}  # config key -> file name of every record already there
    if rank == 0:
        try:
            old = _check_out_dir(out_dir, identity)
            rec.remove_stale_tmp(out_dir)
            existing = rec.load_records(out_dir)
            done: dict[str, str] = {}
            for fname, r in existing.items():
                key = rec.config_key(r.get("knobs") or {})
                previous[key] = fname
                if run_cfg.retry_failed and r.get("status") != "ok":
                    continue
                done[key] = fname
            asked = list((old or {}).get("configurations") or [])
            for c in configs:
                if c not in asked:
                    asked.append(c)
            lists_seen = list((old or {}).get("knob_lists") or [])
            if lists not in lists_seen:
                lists_seen.append(lists)
            rec.write_json_atomic(
                out_dir / "sweep.json",
                {
                    "identity": identity,
                    "knob_lists": lists_seen,
                    "design": design.__dict__,
                    "configurations": asked,
                },
            )
            decision = {"done": done}
        except KnobLabError as exc:
            decision = exc
    else:
        decision = {}
    decision = _broadcast(decision, world)
    if isinstance(decision, Exception):
        raise decision
    done = decision["done"]

    todo = [c for c in configs if rec.config_key(c) not in done]
    skipped = [done[rec.config_key(c)] for c in configs if rec.config_key(c) in done]
    stream = _stream(plan, rank, world)
    timer = StageTimer(getattr(adapter, "device", "cpu"))
    sampling_info = {**plan_desc, "effective_samples": len(plan), "sample_ids": sample_ids}
    if not quiet and skipped:
        console.print(f"[dim]{len(skipped)} configuration(s) already in {out_dir}: skipped[/dim]")

    ran: list[str] = []
    t_measure, c_measure = time.perf_counter(), time.process_time()
    with _progress(run_cfg.progress and not quiet and bool(todo), console) as progress:
        bar = progress.add_task(f"{task}", total=len(todo) * len(stream))
        ticker = _Ticker(progress, bar)
        for i, knobs in enumerate(todo):
            progress.update(bar, description=f"{task} [{i + 1}/{len(todo)}] {_label(knobs)}")
            status, error = "ok", None
            effective: dict[str, Any] = {}
            rows: list[dict[str, Any]] = []
            try:
                effective = dict(adapter.apply_knobs(knobs) or {})
                rows = _run_positions(
                    adapter,
                    dataset,
                    stream,
                    knobs,
                    effective,
                    run_cfg,
                    timer,
                    ticker,
                )
            except _OOM as exc:
                status, error = "oom", str(exc)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()  # free what the failed configuration held
            except ConfigError:
                raise
            except Exception as exc:  # noqa: BLE001 - a configuration that cannot run is recorded
                if _is_oom(exc):
                    status = "oom"
                else:
                    status = "failed"
                error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            if empty_cache and torch.cuda.is_available():
                torch.cuda.empty_cache()
            ticker.flush()
            gathered = _gather((status, error, effective, rows), rank, world)
            if rank == 0:
                statuses = [g[0] for g in gathered]
                status = (
                    "oom" if "oom" in statuses else ("failed" if "failed" in statuses else "ok")
                )
                error = next((g[1] for g in gathered if g[1]), None)
                effective = gathered[0][2]
                rows = sorted((r for g in gathered for r in g[3]), key=lambda r: r["position"])
                if status != "ok":
                    progress.advance(bar, len(stream) - len(gathered[0][3]))
                    rows = []
                elif rows and all(r["status"] == "failed" for r in rows):
                    status, error = "failed", f"every sample failed; first: {rows[0]['error']}"
                record = build_record(
                    task=task,
                    model=adapter.name,
                    knobs=knobs,
                    effective=effective,
                    rows=rows,
                    status=status,
                    error=error,
                    environment=environment,
                    sampling=sampling_info,
                )
                fname = _write_record(out_dir, task, record, previous)
                ran.append(fname)
                for w in record["warnings"]:
                    if not w.startswith(("p50 ", "p95 ", "p99 ")):  # those: once, at the end
                        console.print(f"[yellow]warning:[/yellow] {_label(knobs)}: {w}")
                if status != "ok":
                    console.print(f"[red]{_label(knobs)}: {status}[/red] ({error})")

    t_finish, c_finish = time.perf_counter(), time.process_time()
    result = SweepResult(out_dir=out_dir, records={}, ran=ran, skipped=skipped, plan=plan_desc)
    if rank == 0:
        finish(result, environment, console=console)
    result.seconds = {
        "setup": t_measure - t_setup,
        "measure": t_finish - t_measure,
        "finish": time.perf_counter() - t_finish,
        "measure_cpu": c_finish - c_measure,
    }
    return result


def _console() -> Any:
    """A rich console; 120 columns when not a terminal (logs, CI) so the table fits."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=120)


class _Ticker:
    """Advances the progress bar at most 4 times a second.

    NOTE: rich's ``advance`` takes a lock and wakes the render thread; called per sample
    it cost ~0.3 ms, 1 % of a 30 ms inference (benchmarks/bench_overhead.py).
    """

    def __init__(self, progress: Any, bar: Any):
        self.progress, self.bar = progress, bar
        self.pending = 0
        self.last = time.perf_counter()

    def __call__(self) -> None:
        self.pending += 1
        now = time.perf_counter()
        if now - self.last >= 0.25:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        if self.pending:
            self.progress.advance(self.bar, self.pending)
            self.pending = 0
        self.last = time.perf_counter() if now is None else now


def _label(knobs: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in knobs.items())


def _write_record(
    out_dir: Path, task: str, record: dict[str, Any], previous: dict[str, str]
) -> str:
    fname = rec.record_filename(task, record["knobs"], record["selected_crops_mean"])
    # The same knobs map to one file. A retried (oom/failed) configuration's old record
    # goes first: a crash right after loses only that verdict, which a rerun measures
    # again, whereas removing it after the new write could leave two records of one key.
    key = rec.config_key(record["knobs"])
    old = previous.get(key)
    if old is not None and old != fname:
        (out_dir / old).unlink(missing_ok=True)
    rec.write_json_atomic(out_dir / fname, record)
    previous[key] = fname
    return fname


def finish(result: SweepResult, environment: Mapping[str, Any], console: Any | None = None) -> None:
    """Rebuild samples.parquet, environment.json and report.md from every record; print the table."""

    console = console or _console()
    out_dir = result.out_dir
    records = rec.load_records(out_dir)
    result.records = records
    result.rows = summary_rows(records)
    rec.write_samples_parquet(out_dir, records)
    rec.write_json_atomic(out_dir / "environment.json", environment)
    write_report_md(
        out_dir, records, result.rows, result.plan, ran=result.ran, skipped=result.skipped
    )
    from knoblab.profiling.report import summary_table

    console.print(summary_table(result.rows, title=f"{out_dir}"))
    for w in sorted(
        {
            w
            for r in records.values()
            for w in r.get("warnings", [])
            if w.startswith(("p50 ", "p95 ", "p99 "))
        }
    ):
        console.print(f"[yellow]warning:[/yellow] {w}: read that percentile with care")
    console.print(f"records, samples.parquet and report.md in [bold]{out_dir}[/bold]")


def _dataset_sections(data: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The dataset sections of ``cfg``: ``datasets`` entries (names or mappings) or ``dataset``."""
    from omegaconf import OmegaConf

    base = dict(data.get("dataset") or {})
    entries = data.get("datasets") or []
    if not entries:
        yield base
        return
    conf_dir = Path(__file__).resolve().parents[1] / "conf" / "dataset"
    for entry in entries:
        if isinstance(entry, str):
            path = conf_dir / f"{entry}.yaml"
            if not path.exists():
                options = sorted(p.stem for p in conf_dir.glob("*.yaml"))
                raise ConfigError(
                    "datasets", entry, f"names of conf/dataset options: {', '.join(options)}"
                )
            section = plain(OmegaConf.load(path))
        elif isinstance(entry, Mapping):
            section = dict(entry)
        else:
            raise ConfigError("datasets", entry, "a dataset config name or mapping")
        section.setdefault("sampling", base.get("sampling"))
        yield section


def run_sweeps(
    cfg: Mapping[str, Any] | Any,
    *,
    adapter: ModelAdapter | None = None,
    console: Any | None = None,
) -> list[SweepResult]:
    """Run the sweep of every dataset in ``cfg`` (``datasets`` list, else ``dataset``).

    The model is built once (``build_adapter(cfg.model, cfg.hardware)``) unless given.
    """
    from knoblab.models.registry import build_adapter

    data = plain(cfg)
    sections = list(_dataset_sections(data))
    apply_hardware(data.get("hardware"))
    _dist()
    if adapter is None:
        adapter = build_adapter(data.get("model") or {}, data.get("hardware") or {})
    results = []
    t0 = time.perf_counter()
    for section in sections:
        results.append(run_sweep({**data, "dataset": section}, adapter=adapter, console=console))
    if console is not None and len(results) > 1:
        console.print(f"{len(results)} datasets in {time.perf_counter() - t0:.0f} s")
    return results
