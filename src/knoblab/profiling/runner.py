"""Stage 1: the accuracy x stage-latency sweep over knob configurations.

``run_sweeps(cfg)`` (what ``knoblab profile`` calls) loads the model once, then for each
dataset runs :func:`run_sweep`: every configuration of the design, on the same samples
(the dataset sampling plan, ``dataset.sampling.*`` or legacy ``repeats``), knobs applied
in place, with ``run.warmup_runs`` unrecorded inferences before a configuration's first
measurement and ``run.num_runs_per_sample`` timed runs per sample (every run kept,
medians aggregated). The profiler is never on here (seed 003): stages are timed by
:class:`StageTimer`.

The run is a thin loop over four steps, each its own function with its own tests:
setup (``profiling.prepare.setup_sweep``: config, dataset, plan, model, design),
resume state (``profiling.resume.resume_state``: the directory, its records and
journal), schedule (``profiling.schedule.units``) and, per unit of work, measure
(``profiling.measure.measure_batch_positions``: one batch of ``knobs.batch_size``
samples through ``profiling.batch.measure_batch``, a ``MemorySpan`` around it) and write
(the journal line; the record once the configuration's last sample landed,
:meth:`_Loop.finalise`, with ``records.cost.cost_aggregates``).

Batches (``knobs.batch_size``, a runner knob never passed to ``apply_knobs``; unset =
1): a configuration at batch size ``b`` measures rounds ``r .. r+b-1`` (this rank's
positions of them) as one batch at round ``r`` (``r % b == 0``) and skips the others.

Schedule (``run.schedule``): ``interleaved`` (the default) measures in rounds, round
``r`` being plan position ``r`` (one per process under torchrun), each round visiting
every configuration still measuring in a seeded random order (``run.schedule_seed``),
so load that comes and goes spreads over every configuration alike; ``sequential``
measures configuration after configuration (knoblab's order before). Knobs switch in
place (``adapter.apply_knobs``, no reload).

Warmup: ``run.warmup_runs`` unrecorded inferences at a configuration's first visit (its
shapes are new: allocator, kernel and oneDNN/cuBLAS plan caches fill here and stay
filled across later switches), and ``run.switch_warmup_runs`` (default 0) at every
later switch. NOTE: 0 on purpose: under interleaving every configuration is measured
right after a switch alike, so the switch's cold caches bias no configuration against
another, while one warmup inference per switch would double the sweep's cost.

Drift and load (``profiling.drift``): a probe, one unrecorded inference of the first
configuration on the plan's first sample, is timed about once per round
(``run.drift_probe_every`` rounds; 0: off); ``environment.json`` gets ``drift`` (did the
machine's speed move more than its noise, by how much) and ``load`` (load average,
CPU/wall per stage, other processes' CPU share); one console line warns on drift.

Early stopping (``run.precision``, ``profiling.precision``): a configuration stops once
its figure's confidence interval is narrow enough, between ``min`` and ``max`` samples.

Output directory ``<run.output_dir>/<task>/``:

- one JSON record per configuration (``records.record_filename``), written atomically
  when its last sample lands;
- ``journal.jsonl`` (``profiling.journal``) while the sweep runs: every measured unit,
  one line each, written before the next starts; removed once every record is final;
- ``sweep.json``: the sweep's identity (model, dataset, device, dtype, sample ids) and
  the knob lists and configurations asked for so far;
- ``samples.parquet``, ``environment.json``, ``report.md``: rebuilt from all records at
  the end of every run.

Crash safety: a configuration's record appears only complete (temporary file, then
``os.replace``); the journal keeps every sample measured before a kill (SIGKILL loses
at most the unit in flight). A rerun into the same directory skips configurations that
have a record and measures only the journal's missing positions of the others, so a
sweep killed and rerun ends complete with every sample exactly once. A directory
holding another sweep (other model, dataset, device, dtype, generation length or
samples) is refused before anything is written.

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
``plan.shard(rank, world_size)`` (rank k measures positions k, k + world, ...); every
rank walks the same schedule, and after each unit rank 0 gathers the rows, journals
them and alone writes files; its decisions (a configuration stopped) are broadcast.
Set ``dataset.sampling.seed`` when shuffling so that all ranks draw the same plan
(rank 0's seed is broadcast otherwise).

Usage (a whole sweep; not run as a doctest)::

    from knoblab.hydra_utils import compose
    results = run_sweeps(compose("profile", ["dataset.size=20"]))
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

from knoblab.atomic import sync_files
from knoblab.config import plain, to_dataclass
from knoblab.console import console as wide_console
from knoblab.console import progress_bar
from knoblab.errors import ConfigError, KnobLabError
from knoblab.models.adapter import ModelAdapter, supports_batching
from knoblab.profiling import records as rec
from knoblab.profiling.distributed import barrier, broadcast, dist_info, gather
from knoblab.profiling.drift import LoadMonitor, drift_statistic
from knoblab.profiling.energy import EnergyMeter
from knoblab.profiling.hardware import HardwareConfig, apply_hardware
from knoblab.profiling.measure import (
    ConfigOOM,
    is_oom,
    measure_batch_positions,
    warm_up,
    warm_up_batch,
)
from knoblab.profiling.memory import MemorySpan, weights_bytes
from knoblab.profiling.precision import PrecisionTracker
from knoblab.profiling.prepare import (
    RUNNER_KNOBS,
    RunConfig,
    SweepSetup,
    knob_lists,
    setup_sweep,
    sweep_identity,
)
from knoblab.profiling.report import summary_rows, write_report_md
from knoblab.profiling.resume import ResumeState, resume_state
from knoblab.profiling.schedule import units
from knoblab.profiling.timer import StageTimer
from knoblab.records.aggregate import IntervalSettings, Resampler
from knoblab.records.cost import cost_aggregates

__all__ = [
    "RunConfig",
    "SweepResult",
    "check_some_ok",
    "finish",
    "knob_lists",
    "run_sweep",
    "run_sweeps",
]


@dataclass
class SweepResult:
    """What one dataset's sweep produced.

    Attributes:
        out_dir: the sweep's directory.
        records: ``{file name: record}`` of every configuration in the directory.
        ran: file names of the configurations finished by this call.
        skipped: file names of configurations found finished and not rerun.
        rows: the summary table's rows (``report.summary_rows``).
        plan: ``plan.describe()`` of the sampling plan.
        seconds: wall time of ``setup`` (checks, plan, directory), ``measure`` (the
            configurations: knobs, warmup, timed runs, scoring, journal and record
            writes) and ``finish`` (parquet, report, table); ``measure_cpu``: this
            process's CPU time during ``measure`` (all its threads).
        drift: ``environment.json``'s ``drift`` (None when this call measured nothing).
        load: ``environment.json``'s ``load`` (None when this call measured nothing).
        probes: drift probe inferences made (model calls beyond the samples' own).
    """

    out_dir: Path
    records: dict[str, dict[str, Any]]
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    plan: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    drift: dict[str, Any] | None = None
    load: dict[str, Any] | None = None
    probes: int = 0


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

    ``adapter`` is loaded by the caller (once for all datasets); ``dataset`` defaults
    to ``build_dataset(cfg.dataset)``. ``model_config`` is the section the adapter was
    built from, when it was (its ``kind``/``path``/``weights`` join the sweep's identity);
    an adapter made by hand is identified by its name and weights fingerprint only.

    Rank 0 holds the output directory's lock (``profiling.lock.out_dir_lock``) from
    before the identity check until the report is written; a second sweep into the
    directory is refused with one line naming the holder (``DataError``).

    Raises:
        ConfigError: bad run/design/knob settings (before anything is written).
        DataError: an empty dataset.
        KnobLabError: the output directory holds another sweep.
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
    dataset: Any | None,
    console: Any | None,
    model_config: Mapping[str, Any] | None,
    locks: ExitStack,
) -> SweepResult:
    """setup -> resume state -> the loop (schedule, measure, write) -> finish."""
    t_setup, c_setup = time.perf_counter(), time.process_time()
    console = console or wide_console()
    s = setup_sweep(cfg, adapter=adapter, dataset=dataset)
    precision = s.run.precision_config()
    cap = len(s.plan) if precision is None else precision.cap(len(s.plan))
    sweep_identity(s, model_config)
    state = resume_state(s, locks)
    skipped = state.skipped(s.configs)
    if s.rank == 0 and state.damaged:
        console.print(
            f"[yellow]warning:[/yellow] {len(state.damaged)} record file(s) in {s.out_dir} are "
            f"not readable JSON ({', '.join(state.damaged[:3])}"
            f"{' ...' if len(state.damaged) > 3 else ''}): measured again"
        )
    if s.rank == 0 and skipped:
        console.print(f"[dim]{len(skipped)} configuration(s) already in {s.out_dir}: skipped[/dim]")

    t_measure, c_measure = time.perf_counter(), time.process_time()
    monitor = LoadMonitor()
    monitor.span("setup", t_measure - t_setup, c_measure - c_setup)
    loop = _Loop(s, state, PrecisionTracker(precision, cap), console)
    loop.run(monitor)
    t_finish, c_finish = time.perf_counter(), time.process_time()
    monitor.span("measure", t_finish - t_measure, c_finish - c_measure)
    result = SweepResult(
        out_dir=s.out_dir, records={}, ran=loop.ran, skipped=skipped, plan=s.plan_desc
    )
    if s.rank == 0:
        # The loop wrote its records without fsync (the journal backs them): made durable
        # here, together, before the journal may go.
        sync_files(s.out_dir / f for f in loop.ran)
        if state.journal is not None and len(loop.finished) == len(loop.todo):
            state.journal.remove()  # every record of this run's configurations is final
        environment = _with_drift(s, loop, monitor, result, console)
        finish(result, environment, console=console)
        state.tracking.on_end(result)
    # No rank returns before rank 0 has written the records, the table and the report.
    barrier(s.world)
    result.seconds = {
        "setup": t_measure - t_setup,
        "measure": t_finish - t_measure,
        "finish": time.perf_counter() - t_finish,
        "measure_cpu": c_finish - c_measure,
    }
    return result


def _with_drift(
    s: SweepSetup, loop: _Loop, monitor: LoadMonitor, result: SweepResult, console: Any
) -> dict[str, Any]:
    """The environment record with ``drift`` and ``load``; one console line on drift.

    A run that measured nothing keeps the figures of the run that did (environment.json).
    """
    env = dict(s.environment)
    if not loop.measured:
        old = s.out_dir / "environment.json"
        try:
            prev = rec.read_json(old) if old.is_file() else {}
        except KnobLabError:
            prev = {}
        for key in ("drift", "load"):
            if isinstance(prev, dict) and key in prev:
                env[key] = prev[key]
        return env
    what = _label(loop.todo[0]) if loop.todo else "control configuration"
    drift = drift_statistic(loop.probes, what=what)
    if loop.probe_error:
        drift["message"] += f"; probes stopped: {loop.probe_error}"
    load = monitor.summary(loop.timer.cpu_totals)
    result.drift, result.load, result.probes = drift, load, len(loop.probes)
    if drift["detected"]:
        console.print(
            f"[yellow]warning:[/yellow] the machine's speed drifted by "
            f"{100 * drift['magnitude']:.0f}% (noise {100 * drift['noise']:.0f}%) during the "
            f"sweep: {drift['message']}; see environment.json"
        )
    return env | {"drift": drift, "load": load}


class _Loop:
    """The measurement loop of one run: units in schedule order, each measured and written.

    Every rank walks the same units; rank 0 owns the rows, the journal and the records.
    """

    def __init__(self, s: SweepSetup, state: ResumeState, tracker: PrecisionTracker, console: Any):
        self.s, self.state, self.tracker, self.console = s, state, tracker, console
        self.adapter = s.adapter
        self.todo = state.todo(s.configs)
        self.keys = [rec.config_key(c) for c in self.todo]
        self.stream = s.stream()
        self.rounds = s.rounds()
        journal = state.journal
        self.rows: dict[str, dict[int, dict[str, Any]]] = {
            k: dict(journal.state.rows.get(k, {})) if journal is not None else {} for k in self.keys
        }
        self.effective: dict[str, dict[str, Any]] = (
            {k: journal.state.effective[k] for k in self.keys if k in journal.state.effective}
            if journal is not None
            else {}
        )
        self.finished: set[int] = set()
        self.current: int | None = None
        self.warmed: set[int] = set()
        device = getattr(self.adapter, "device", "cpu")
        self.timer = StageTimer(device, track_cpu=True)
        self.probe_timer = StageTimer(device)
        self.device = device
        # knobs.batch_size (a runner knob, never passed to apply_knobs): configuration c
        # measures batch_size consecutive rounds as one batch, at the first of them.
        self.batch = [int(k.get("batch_size", 1)) for k in self.todo]
        # what apply_knobs is given: the knobs but the runner's own (batch_size)
        self.model_knobs = [
            {k: v for k, v in knobs.items() if k not in RUNNER_KNOBS} for knobs in self.todo
        ]
        self.meter = EnergyMeter(device)
        self.batched_stages = supports_batching(self.adapter)  # asked once, not per unit
        self.weights_at: dict[str, int | None] = {}  # weight bytes per configuration key
        s.environment["energy"] = self.meter.describe()
        hw = to_dataclass(s.data.get("hardware") or {}, HardwareConfig, "hardware")
        self.empty_cache = hw.memory_savings.empty_cache_between_configs
        self.ran: list[str] = []
        self.measured = False
        self.probes: list[float] = []
        self.probe_error: str | None = None
        self._probe_prepared: Any = None
        self._since_probe = 0
        self._last_round = -1

    # -- the loop ------------------------------------------------------------------------
    def run(self, monitor: LoadMonitor) -> None:
        """Finish what the journal completed, then measure the schedule's units."""
        self._finish_journaled()
        journaled = self.state.journaled
        mine = {k: {p for p, _, _ in self.stream} - journaled.get(k, set()) for k in self.keys}
        quiet = self.s.rank != 0
        total = sum(len(mine[k]) for i, k in enumerate(self.keys) if i not in self.finished)
        with _progress(self.s.run.progress and not quiet and total > 0, self.console) as bar:
            task = bar.add_task(self.s.task, total=total)
            ticker = _Ticker(bar, task)
            shown = -1
            for c, r in units(
                len(self.todo),
                len(self.rounds),
                self.s.run.schedule,
                seed=self.s.run.schedule_seed,
                pending=self._pending,
                active=lambda c: c not in self.finished,
            ):
                self._maybe_probe(r)
                if r != shown:  # rich's update takes a lock: once per round, not per unit
                    shown = r
                    bar.update(task, description=f"{self.s.task} round {r + 1}/{len(self.rounds)}")
                self._unit(c, r, ticker)
                monitor.tick()
            ticker.flush()
            bar.update(task, completed=total)
        self._finish_rest()

    def _pending(self, c: int, r: int) -> bool:
        """Whether unit (c, r) starts a batch of configuration c with a position left to
        measure (not journaled by an earlier run)."""
        if r % self.batch[c]:
            return False
        done = self.state.journaled.get(self.keys[c])
        return not done or any(
            p not in done for rr in self.rounds[r : r + self.batch[c]] for p in rr
        )

    def _unit(self, c: int, r: int, ticker: Any) -> None:
        """Measure this rank's position of round ``r`` at configuration ``c``; land it."""
        key, knobs = self.keys[c], self.todo[c]
        status, error, rows = "ok", None, []
        entry = self.stream[r : r + self.batch[c]]  # this rank's batch of the unit
        done = self.state.journaled.get(key)
        mine = [e for e in entry if e[0] not in done] if done else entry
        try:
            self._switch(c)
            w0 = time.perf_counter()
            with MemorySpan(self.device) as span:
                rows = (
                    measure_batch_positions(
                        self.adapter,
                        self.s.dataset,
                        mine,
                        knobs,
                        self.effective.get(key, {}),
                        runs=self.s.run.num_runs_per_sample,
                        max_new_tokens=self.s.run.max_new_tokens,
                        advance=ticker,
                        energy=self.meter,
                        weights=self.weights_at[key],
                        batched=self.batched_stages,
                    )
                    if mine
                    else []
                )
            if span.cpu_s is not None:  # the load record: the unit's CPU and wall time
                self.timer.add_cpu("total", time.perf_counter() - w0, span.cpu_s)
            peak = span.result.peak_bytes if span.result is not None else None
            for row in rows:  # the unit's peak; the record's is the max over its units
                row["peak_memory_bytes"] = peak if row["status"] == "ok" else None
        except ConfigOOM as exc:
            status, error = "oom", str(exc)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - a configuration that cannot run is recorded
            status = "oom" if is_oom(exc) else "failed"
            error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        if status != "ok":
            self.current = None  # the model's state is unknown: apply the knobs again
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # free what the failed configuration held
        self.measured = True
        gathered = gather((status, error, self.effective.get(key, {}), rows), self.s.rank,
                          self.s.world)  # fmt: skip
        stop = self._land(c, gathered) if self.s.rank == 0 else False
        if broadcast(stop, self.s.world):
            self.finished.add(c)

    def _switch(self, c: int) -> None:
        """Apply configuration ``c``'s knobs in place (when not in effect); warm up."""
        if self.current == c:
            return
        key = self.keys[c]
        self.current = None
        self.effective[key] = dict(self.adapter.apply_knobs(dict(self.model_knobs[c])) or {})
        # Once per configuration (walking the parameters costs ~0.7 ms, and interleaving
        # switches at every unit; benchmarks/bench_overhead.py).
        if key not in self.weights_at:
            self.weights_at[key] = weights_bytes(self.adapter)
        self.current = c
        run = self.s.run
        runs = run.warmup_runs if c not in self.warmed else run.switch_warmup_runs
        self.warmed.add(c)
        if runs and self.batch[c] > 1:
            warm_up_batch(
                self.adapter,
                self.s.dataset,
                self.stream,
                batch_size=self.batch[c],
                runs=runs,
                max_new_tokens=run.max_new_tokens,
            )
        elif runs:
            warm_up(
                self.adapter,
                self.s.dataset,
                self.stream,
                runs=runs,
                max_new_tokens=run.max_new_tokens,
                timer=self.timer,
            )

    # -- write ---------------------------------------------------------------------------
    def _land(self, c: int, gathered: list[Any]) -> bool:
        """Rank 0: journal a unit's rows; finalise the configuration when it is done."""
        key = self.keys[c]
        statuses = [g[0] for g in gathered]
        if "oom" in statuses or "failed" in statuses:
            status = "oom" if "oom" in statuses else "failed"
            error = next((g[1] for g in gathered if g[1]), None)
            self.finalise(c, status, error, [])
            return True
        rows = [r for g in gathered for r in g[3]]
        if rows:
            assert self.state.journal is not None
            self.state.journal.append(key, gathered[0][2], rows)
            self.rows[key].update((int(r["position"]), r) for r in rows)
        return self._maybe_finalise(c)

    def _maybe_finalise(self, c: int) -> bool:
        """Finalise configuration ``c`` when every position is in, or it measured enough."""
        key = self.keys[c]
        n = len(self.rows[key])
        complete = n >= len(self.s.plan)
        if not complete and not self.tracker.due(key, n):
            return False  # most units: no list to build, no rule to check
        rows = [self.rows[key][p] for p in sorted(self.rows[key])]
        if self.tracker.done(key, rows) or complete:
            self.finalise(c, "ok", None, rows)
            return True
        return False

    def finalise(self, c: int, status: str, error: str | None, rows: list[dict[str, Any]]) -> None:
        """Rank 0: build and write configuration ``c``'s record (the existing record builder)."""
        key, knobs = self.keys[c], self.todo[c]
        if status == "ok" and rows and all(r["status"] == "failed" for r in rows):
            status, error = "failed", f"every sample failed; first: {rows[0]['error']}"
        resampler = Resampler(IntervalSettings())  # one draw for latency and cost figures
        record = rec.build_record(
            task=self.s.task,
            model=self.adapter.name,
            knobs=knobs,
            effective=self.effective.get(key, {}),
            rows=rows,
            status=status,
            error=error,
            environment=self.s.environment,
            percentiles=self.s.run.percentiles,
            sampling={
                **self.s.plan_desc,
                "effective_samples": len(self.s.plan),
                "sample_ids": self.s.identity["sample_ids"],
            },
            intervals=resampler,
        )
        _add_costs(record, rows, self.s.run.percentiles, resampler)
        entry = self.tracker.record_entry(key, rows) if status == "ok" else None
        if entry is not None:
            record["precision"] = entry  # type: ignore[typeddict-unknown-key]
        fname = _write_record(self.s.out_dir, self.s.task, record, self.state.previous)
        self.ran.append(fname)
        self.finished.add(c)
        if self.empty_cache and torch.cuda.is_available():
            torch.cuda.empty_cache()  # after each configuration (hardware.memory_savings)
        self.state.tracking.on_record(record)
        for w in record["warnings"]:
            if not rec.is_percentile_warning(w):  # those: once, at the end
                self.console.print(f"[yellow]warning:[/yellow] {_label(knobs)}: {w}")
        if status != "ok":
            self.console.print(f"[red]{_label(knobs)}: {status}[/red] ({error})")

    def _finish_journaled(self) -> None:
        """Finalise the configurations whose journaled rows already finish them (a rerun)."""
        done: list[int] = []
        if self.s.rank == 0:
            done = [c for c, k in enumerate(self.keys) if self.rows[k] and self._maybe_finalise(c)]
        self.finished.update(broadcast(done, self.s.world))

    def _finish_rest(self) -> None:
        """Rank 0: finalise what the schedule completed without a last unit landing here."""
        if self.s.rank != 0:
            return
        for c, key in enumerate(self.keys):
            if c not in self.finished and len(self.rows[key]) >= len(self.s.plan):
                self._maybe_finalise(c)

    # -- drift probes --------------------------------------------------------------------
    def _maybe_probe(self, r: int) -> None:
        """Time the control probe at the start of every ``run.drift_probe_every``-th round.

        Sequential: every ``len(todo) * drift_probe_every`` units (a round's worth of work).
        """
        every = self.s.run.drift_probe_every
        if not every or self.probe_error is not None or not self.stream or not self.todo:
            return
        if self.s.run.schedule == "interleaved":
            due = r != self._last_round and r % every == 0
            self._last_round = r
        else:
            due = self._since_probe % (every * len(self.todo)) == 0
            self._since_probe += 1
        if not due:
            return
        try:
            self._switch(0)  # the control: the run's first configuration
            if self._probe_prepared is None:
                self._probe_prepared = self.adapter.preprocess(self.s.dataset[self.stream[0][2]])
            # One stage on its own timer: the probe is not a measured sample (its CPU time
            # stays out of the stages' load record) and costs one timer span, not four.
            timer, prepared, adapter = self.probe_timer, self._probe_prepared, self.adapter
            timer.reset()
            with timer.stage("total"):
                adapter.decode(
                    adapter.prefill(prepared, adapter.encode_vision(prepared)),
                    self.s.run.max_new_tokens,
                )
            self.probes.append(float(timer.read()["total"]))
        except Exception as exc:  # noqa: BLE001 - no probe, no drift figure; the sweep goes on
            self.current = None
            self.probe_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]


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


def _add_costs(
    record: dict[str, Any], rows: list[dict[str, Any]], percentiles: Any, resampler: Resampler
) -> None:
    """The configuration's peak memory (max over its units) on every ok row, and the cost
    figures' aggregates (``records.cost.cost_aggregates``) into ``aggregate_stats``."""
    ok = [r for r in rows if r.get("status") == "ok"]
    peaks = [r["peak_memory_bytes"] for r in ok if r.get("peak_memory_bytes") is not None]
    peak = max(peaks) if peaks else None  # once: in the loop it was quadratic in the rows
    for r in ok:
        r["peak_memory_bytes"] = peak
    stats, _ = cost_aggregates(ok, percentiles, resampler)
    record["aggregate_stats"].update(stats)  # type: ignore[typeddict-item]


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
    # NOTE: not durable yet (two fsyncs, ~1-2 ms, at every configuration's end, up to
    # 40 us per sample of a 60-sample configuration): the journal holds the rows until
    # _run_sweep syncs every record it wrote (atomic.sync_files) and only then removes it.
    rec.write_json_atomic(out_dir / fname, record, durable=False)
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
        out_dir,
        records,
        result.rows,
        result.plan,
        ran=result.ran,
        skipped=result.skipped,
        environment=environment,
    )
    from knoblab.profiling.report import summary_table

    console.print(summary_table(result.rows, title=f"{out_dir}"))
    for w in sorted(
        {w for r in records.values() for w in r.get("warnings", []) if rec.is_percentile_warning(w)}
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
