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
both count as finished unless ``run.retry_failed=true``. A sweep whose every
configuration failed raises one line (:func:`check_some_ok`; the CLI exits 2). A record
already in the directory that belongs to another sweep than ``sweep.json``'s, or has a
field of the wrong type, is refused by name before anything is written
(:func:`knoblab.records.check_belongs`).

Several processes (``torchrun``): ranks split the plan's positions with
``plan.shard(rank, world_size)``; rank 0 gathers the per-sample results, puts them back
in plan order and alone writes files. Set ``dataset.sampling.seed`` when shuffling so
that all ranks draw the same plan (rank 0's seed is broadcast otherwise).

Example:
    >>> from knoblab.hydra_utils import compose
    >>> results = run_sweeps(compose("profile", ["dataset.size=20"]))  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from knoblab.config import plain, to_dataclass
from knoblab.console import console as wide_console
from knoblab.console import progress_bar
from knoblab.data.prompt import prompt_for, with_prompt
from knoblab.errors import ConfigError, DataError, KnobLabError
from knoblab.models.adapter import ModelAdapter, check_knob
from knoblab.profiling import records as rec
from knoblab.profiling.design import DesignConfig, make_design
from knoblab.profiling.distributed import barrier, broadcast, dist_info, gather
from knoblab.profiling.hardware import HardwareConfig, apply_hardware
from knoblab.profiling.identity import check_out_dir, model_identity
from knoblab.profiling.lock import out_dir_lock
from knoblab.profiling.measure import ConfigOOM, check_metric, is_oom, measure_positions
from knoblab.profiling.report import summary_rows, write_report_md
from knoblab.profiling.timer import StageTimer
from knoblab.profiling.tracking import SweepTracking, open_tracking


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
        logger: ``none``, ``tensorboard``, ``mlflow`` or ``wandb``: log each configuration's
            row and the reports there (rank 0; ``profiling.tracking``, ``tracking.*``).
        percentiles: the latency percentiles recorded, e.g. ``[50, 90, 99]`` (``p90``).
    """

    output_dir: str = "results/profile"
    num_runs_per_sample: int = 1
    warmup_runs: int = 2
    max_new_tokens: int = 8
    retry_failed: bool = False
    progress: bool = True
    stage1_repeats: int | None = None
    logger: str = "none"
    percentiles: list[float] = field(default_factory=lambda: list(rec.DEFAULT_PERCENTILES))

    def __post_init__(self) -> None:
        self.percentiles = list(rec.check_percentiles(self.percentiles, "percentiles"))
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
            try:
                check_knob(specs, name, v, adapter.name)
            except ConfigError as exc:
                if name in specs or specs.get("tier") is not None:
                    raise
                # the default knobs=reference lists the reference model's tiers: say which
                # preset fits a model without them
                hint = "knobs=hf lists vision_tokens for Hugging Face models; docs/knobs.md"
                raise ConfigError(exc.key, exc.value, exc.allowed, exc.hint or hint) from None
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
    # Two refreshes a second: the bar's rendering thread must not steal the cores we time.
    return progress_bar(enabled, console)


def run_sweep(
    cfg: Mapping[str, Any] | Any,
    *,
    adapter: ModelAdapter,
    dataset: Any | None = None,
    console: Any | None = None,
    model_config: Mapping[str, Any] | None = None,
) -> SweepResult:
    """Run one dataset's sweep described by ``cfg`` (the composed ``profile`` config).

    Rank 0 holds the output directory's lock (``profiling.lock.out_dir_lock``) from
    before the identity check until the report is written; a second sweep into the
    directory is refused with one line naming the holder (``DataError``).

    See :func:`_run_sweep` for the arguments.
    """
    with ExitStack() as locks:
        return _run_sweep(
            cfg,
            adapter=adapter,
            dataset=dataset,
            console=console,
            model_config=model_config,
            locks=locks,
        )


def _run_sweep(
    cfg: Mapping[str, Any] | Any,
    *,
    adapter: ModelAdapter,
    dataset: Any | None = None,
    console: Any | None = None,
    model_config: Mapping[str, Any] | None = None,
    locks: ExitStack,
) -> SweepResult:
    """Run one dataset's sweep described by ``cfg`` (the composed ``profile`` config).

    ``adapter`` is loaded by the caller (once for all datasets); ``dataset`` defaults
    to ``build_dataset(cfg.dataset)``. ``model_config`` is the section the adapter was
    built from, when it was (its ``kind``/``path``/``weights`` join the sweep's identity);
    an adapter made by hand is identified by its name and weights fingerprint only.

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
    rank, world = dist_info()
    hw = to_dataclass(data.get("hardware") or {}, HardwareConfig, "hardware")
    empty_cache = hw.memory_savings.empty_cache_between_configs
    console = console or wide_console()
    quiet = rank != 0

    if dataset is None:
        dataset = build_dataset(data.get("dataset") or {})
    ds_name = getattr(dataset, "name", None) or (data.get("dataset") or {}).get("name", "dataset")
    if len(dataset) == 0:
        raise DataError(
            f"dataset.name={ds_name!r} has no samples: allowed is a dataset with >= 1 sample"
        )
    check_metric(getattr(dataset, "metric", "exact_match"))
    # dataset.prompt: text around every question (knoblab.data.prompt); part of the identity
    prompt = prompt_for(data.get("dataset"), dataset, adapter)
    dataset = with_prompt(dataset, prompt)
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
        seed = broadcast(plan.seed, world)
        if seed != plan.seed:
            plan.load_state_dict({**plan.state_dict(), "seed": seed})
    plan_desc = plan.describe()
    task = rec.task_name(ds_name)
    out_dir = Path(run_cfg.output_dir) / task
    sample_ids = [int(i) for i in plan.indices().tolist()]
    identity = {
        "model": model_identity(adapter, model_config or {}),
        "dataset": {
            k: v for k, v in (data.get("dataset") or {}).items() if k not in ("sampling", "prompt")
        }
        | {"name": ds_name, "size": len(dataset)}
        # only a prompt that is there: sweeps from before dataset.prompt stay resumable
        | ({"prompt": prompt.as_dict()} if prompt else {}),
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
        extra={"world_size": world, "prompt": prompt.as_dict()},
    )

    # Rank 0 checks the directory and decides what is left; the others follow.
    decision: dict[str, Any] | Exception
    previous: dict[str, str] = {}  # config key -> file name of every record already there
    tracking = SweepTracking()  # run.logger: rank 0 opens the run below
    if rank == 0:
        try:
            locks.enter_context(out_dir_lock(out_dir))  # until the report is written
            old = check_out_dir(out_dir, identity)
            rec.remove_stale_tmp(out_dir)
            damaged: list[str] = []  # not JSON at all: measured again, with a warning
            existing = rec.load_records(out_dir, strict=True, unreadable=damaged)
            if damaged and not quiet:
                console.print(
                    f"[yellow]warning:[/yellow] {len(damaged)} record file(s) in {out_dir} are "
                    f"not readable JSON ({', '.join(damaged[:3])}"
                    f"{' ...' if len(damaged) > 3 else ''}): measured again"
                )
            done: dict[str, str] = {}
            for fname, r in existing.items():
                if old is not None:  # a record of another sweep is refused, never merged
                    rec.check_belongs(r, old, str(out_dir / fname))
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
            rec.write_sweep(
                out_dir,
                {
                    "identity": identity,
                    "knob_lists": lists_seen,
                    "design": design.__dict__,
                    "configurations": asked,
                },
            )
            tracking = open_tracking(data, out_dir, environment)
            decision = {"done": done}
        except KnobLabError as exc:
            decision = exc
    else:
        decision = {}
    decision = broadcast(decision, world)
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
                rows = measure_positions(
                    adapter,
                    dataset,
                    stream,
                    knobs,
                    effective,
                    runs=run_cfg.num_runs_per_sample,
                    warmup=run_cfg.warmup_runs,
                    max_new_tokens=run_cfg.max_new_tokens,
                    timer=timer,
                    advance=ticker,
                )
            except ConfigOOM as exc:
                status, error = "oom", str(exc)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()  # free what the failed configuration held
            except ConfigError:
                raise
            except Exception as exc:  # noqa: BLE001 - a configuration that cannot run is recorded
                if is_oom(exc):
                    status = "oom"
                else:
                    status = "failed"
                error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            if empty_cache and torch.cuda.is_available():
                torch.cuda.empty_cache()
            ticker.flush()
            gathered = gather((status, error, effective, rows), rank, world)
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
                record = rec.build_record(
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
                tracking.on_record(record)
                for w in record["warnings"]:
                    if not w.startswith(("p50 ", "p95 ", "p99 ")):  # those: once, at the end
                        console.print(f"[yellow]warning:[/yellow] {_label(knobs)}: {w}")
                if status != "ok":
                    console.print(f"[red]{_label(knobs)}: {status}[/red] ({error})")

    t_finish, c_finish = time.perf_counter(), time.process_time()
    result = SweepResult(out_dir=out_dir, records={}, ran=ran, skipped=skipped, plan=plan_desc)
    if rank == 0:
        finish(result, environment, console=console)
        tracking.on_end(result)
    # No rank returns before rank 0 has written the records, the table and the report.
    barrier(world)
    result.seconds = {
        "setup": t_measure - t_setup,
        "measure": t_finish - t_measure,
        "finish": time.perf_counter() - t_finish,
        "measure_cpu": c_finish - c_measure,
    }
    return result


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

    console = console or wide_console()
    out_dir = result.out_dir
    sweep = rec.read_sweep(out_dir) or {}
    records = {  # a foreign record (copied in mid-run) never reaches samples.parquet
        f: r for f, r in rec.load_records(out_dir).items() if not rec.foreign_reason(r, sweep)
    }
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
    dist_info()
    model_config = None
    if adapter is None:
        model_config = data.get("model") or {}
        adapter = build_adapter(model_config, data.get("hardware") or {})
    results = []
    t0 = time.perf_counter()
    for section in sections:
        sweep_cfg = {**data, "dataset": section}
        results.append(
            run_sweep(sweep_cfg, adapter=adapter, console=console, model_config=model_config)
        )
    if console is not None and len(results) > 1:
        console.print(f"{len(results)} datasets in {time.perf_counter() - t0:.0f} s")
    check_some_ok(results)
    return results


def check_some_ok(results: list[SweepResult]) -> None:
    """Raise one line when every configuration of a sweep failed (the CLI exits 2).

    Raises:
        KnobLabError: a dataset whose records are all ``oom``/``failed``; names the
            counts per status and the first error.
    """
    for res in results:
        recs = list(res.records.values())
        if not recs or any(r.get("status") == "ok" for r in recs):
            continue
        counts = Counter(str(r.get("status")) for r in recs)
        first = next((r.get("error") for r in recs if r.get("error")), None)
        raise KnobLabError(
            f"every configuration of the sweep in {res.out_dir} failed "
            f"({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}); first: {first}"
        )
