"""Stage 2: the Stage-1 workload of chosen configurations under ``torch.profiler`` (or nsys).

``deep_profile(cfg)`` (what ``knoblab deep-profile`` calls) runs, for each chosen
configuration, the same inference the sweep times (vision, prefill, decode; each
stage a ``record_function`` range and, on CUDA, an NVTX range) under the profiler, and
writes per configuration ``i``:

- ``trace_config_<i>.json.gz``: a gzip'd Chrome trace (Perfetto and ``chrome://tracing``
  open it as is; ``deep.gzip=false`` writes plain ``.json``), until the traces written
  reach ``deep.max_trace_mb`` MB: after that no more traces are written (one line says
  so, ``deep_profile.json`` lists the skipped ones), the tables below still are;
- ``profiler_results_config_<i>_sample_<id>.txt`` (first sample only) or
  ``profiler_results_config_<i>_all.txt`` (all samples): the operator table
  (``key_averages().table``), as seed 002 names it;
- ``operators_config_<i>.csv``: the same table as data;
- ``operators_by_stage_config_<i>.csv``: self times per (stage, operator): every event is
  charged to the ``vision``/``prefill``/``decode`` range above it (``other`` when none);
  the range's own self time (Python and glue between operators) is the row
  ``(untracked: Python and glue)``. ``knoblab analyze`` reads it (operator-level E1);

plus ``deep_profile.json`` (configurations, files, mode, sampling plan, environment).

Modes (seed 003): ``minimal`` records no shapes, no stacks, no memory (a few % of
overhead); ``full`` records shapes, stacks and memory (10-30 %): never use its
timings as latencies. ``deep.samples``: ``first`` profiles one inference of the
first sample after warmup; ``all`` profiles every sample of the plan. A rich progress
bar counts configurations x samples (``run.progress``).

Sampling: the workload's samples come from ``dataset.sampling.*`` exactly as in
Stage 1. The legacy ``run.stage1_repeats`` maps to it with a FutureWarning (seed 000,
via ``resolve_sampling``); ``deep_profile.json`` records, as ``stage1_overrides``, the
explicit ``dataset.sampling.*`` overrides that rebuild the plan in effect in a Stage-1
process (``knoblab.sampling.legacy.sampling_overrides``).

nsys: with ``deep.nsys=true`` and ``nsys`` on the PATH, ``knoblab deep-profile`` reruns
itself under ``nsys profile --trace=cuda,nvtx,osrt`` (:func:`nsys_command`), so the
report shows the ``vision``/``prefill``/``decode`` NVTX ranges; without nsys it warns and
runs the torch profiler alone.

Usage (a whole deep profile; not run as a doctest)::

    from knoblab.hydra_utils import compose
    deep_profile(compose("deep_profile", ["deep.mode=full"]))
"""

from __future__ import annotations

import csv
import gzip
import io
import shutil
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from knoblab.atomic import ensure_dir
from knoblab.config import plain, to_dataclass
from knoblab.errors import ConfigError
from knoblab.models.adapter import ModelAdapter, Prepared
from knoblab.profiling import records as rec
from knoblab.profiling.design import DesignConfig, make_design
from knoblab.profiling.hardware import apply_hardware
from knoblab.profiling.prepare import RUNNER_KNOBS, SweepSetup, knob_lists, setup_sweep
from knoblab.profiling.timer import StageTimer

MODES = ("minimal", "full")
SAMPLES = ("first", "all")
NSYS_ENV = "KNOBLAB_UNDER_NSYS"


@dataclass
class DeepConfig:
    """The ``deep`` config section of ``knoblab deep-profile``.

    Attributes:
        mode: ``minimal`` (no shapes, stacks, memory) or ``full`` (all of them).
        samples: ``first`` (one inference of the first sample) or ``all`` (the whole plan).
        configurations: knob settings to profile; null: every configuration of the design.
        output_dir: traces and tables go to ``<output_dir>/<task>/``.
        nsys: rerun under ``nsys profile`` when nsys is on the PATH.
        row_limit: rows of the operator table.
        gzip: write traces gzip'd (``.json.gz``, ~10x smaller); false: plain ``.json``.
        max_trace_mb: stop writing traces once those written add up to this many MB
            (on disk); the operator tables and CSVs are still written. Null: no cap.
    """

    mode: str = "minimal"
    samples: str = "first"
    configurations: list[dict[str, Any]] | None = None
    output_dir: str = "results/deep_profile"
    nsys: bool = False
    row_limit: int = 40
    gzip: bool = True
    max_trace_mb: float | None = 200.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError("mode", self.mode, f"one of {', '.join(MODES)}")
        if self.samples not in SAMPLES:
            raise ConfigError("samples", self.samples, f"one of {', '.join(SAMPLES)}")
        if self.configurations is not None and not self.configurations:
            raise ConfigError(
                "configurations", [], "a non-empty list of knob settings, or null for the design"
            )
        if self.row_limit < 1:
            raise ConfigError("row_limit", self.row_limit, "an integer >= 1")
        if self.max_trace_mb is not None and (
            isinstance(self.max_trace_mb, bool) or not self.max_trace_mb > 0
        ):
            raise ConfigError(
                "deep.max_trace_mb", self.max_trace_mb, "a number of MB > 0, or null (no cap)"
            )


def nsys_command(argv: Sequence[str], out_dir: str | Path) -> list[str] | None:
    """``nsys profile ... python -m knoblab.cli deep-profile <argv>``, or None without nsys."""
    nsys = shutil.which("nsys")
    if nsys is None:
        return None
    report = Path(out_dir) / "nsys_report"
    return [
        nsys,
        "profile",
        "--trace=cuda,nvtx,osrt",
        "--force-overwrite=true",
        f"--output={report}",
        sys.executable,
        "-m",
        "knoblab.cli",
        "deep-profile",
        *argv,
    ]


def _stages(adapter: ModelAdapter, prepared: Prepared, timer: StageTimer, max_new: int) -> None:
    from torch.profiler import record_function

    with record_function("vision"), timer.stage("vision"):
        vision = adapter.encode_vision(prepared)
    with record_function("prefill"), timer.stage("prefill"):
        state = adapter.prefill(prepared, vision)
    with record_function("decode"), timer.stage("decode"):
        adapter.decode(state, max_new)


def _operator_rows(prof: Any) -> list[dict[str, Any]]:
    rows = []
    for e in prof.key_averages():
        rows.append(
            {
                "name": e.key,
                "count": e.count,
                "self_cpu_time_us": e.self_cpu_time_total,
                "cpu_time_total_us": e.cpu_time_total,
                "self_device_time_us": getattr(e, "self_device_time_total", 0.0),
                "device_time_total_us": getattr(e, "device_time_total", 0.0),
            }
        )
    rows.sort(key=lambda r: -r["self_cpu_time_us"])
    return rows


STAGE_RANGES = rec.STAGE_SHORT_NAMES  # the stages' record_function range names
UNTRACKED = "(untracked: Python and glue)"
STAGE_CSV_FIELDS = ("stage", "name", "count", "self_cpu_time_us", "self_device_time_us")


def _stage_of(event: Any) -> tuple[str, str]:
    """(stage, operator name) of a profiler event: the stage range above it, else ``other``."""
    if event.name in STAGE_RANGES:
        return event.name, UNTRACKED
    parent = event.cpu_parent
    while parent is not None:
        if parent.name in STAGE_RANGES:
            return parent.name, event.name
        parent = parent.cpu_parent
    return "other", event.name


def stage_operator_rows(prof: Any) -> list[dict[str, Any]]:
    """Self CPU / device time per (stage, operator), stages in order, largest first."""
    agg: dict[tuple[str, str], dict[str, Any]] = {}
    for e in prof.events():
        stage, name = _stage_of(e)
        row = agg.setdefault(
            (stage, name),
            {"stage": stage, "name": name, "count": 0, "self_cpu_time_us": 0.0,
             "self_device_time_us": 0.0},
        )  # fmt: skip
        row["count"] += 1
        row["self_cpu_time_us"] += float(e.self_cpu_time_total)
        row["self_device_time_us"] += float(getattr(e, "self_device_time_total", 0.0) or 0.0)
    order = {s: i for i, s in enumerate((*STAGE_RANGES, "other"))}
    return sorted(agg.values(), key=lambda r: (order[r["stage"]], -r["self_cpu_time_us"]))


def _write_stage_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    import io

    from knoblab.atomic import atomic_write

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(STAGE_CSV_FIELDS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write(path, buf.getvalue())


def _chosen_configs(
    deep: DeepConfig, data: Mapping[str, Any], adapter: ModelAdapter, design: DesignConfig
) -> list[dict[str, Any]]:
    """``deep.configurations`` checked against the model, else the design's configurations."""
    if deep.configurations is None:
        # deep profiling runs batch 1: the runner's knobs (batch_size) are not profiled
        lists = {
            k: v for k, v in knob_lists(data.get("knobs"), adapter).items() if k not in RUNNER_KNOBS
        }
        return make_design(
            design.name, lists, levels=design.levels, num_points=design.num_points, seed=design.seed
        )
    from knoblab.models.adapter import check_knob

    specs = adapter.knobs()
    configs = []
    for i, c in enumerate(deep.configurations):
        for k, v in c.items():
            try:
                check_knob(specs, k, v, adapter.name)
            except ConfigError as exc:
                raise ConfigError(
                    f"deep.configurations[{i}].{k}", v, exc.allowed, exc.hint
                ) from None
        configs.append(dict(c))
    return configs


def _export_trace(prof: Any, path: Path, compress: bool) -> None:
    """Write ``prof``'s Chrome trace to ``path`` (atomically), gzip'd when ``compress``.

    NOTE: torch's ``export_chrome_trace`` gzips only when its path ends in ``.gz``; the
    atomic writer's temporary name does not, so the plain JSON goes to a temporary file
    first and is streamed through gzip (level 6: ~10x smaller than the JSON at a few
    times less CPU than gzip's default level 9).
    """
    from knoblab.atomic import atomic_write

    if not compress:
        atomic_write(path, lambda p: prof.export_chrome_trace(str(p)))
        return

    def write(p: Path) -> None:
        plain_json = p.with_name(p.name + ".json")
        try:
            prof.export_chrome_trace(str(plain_json))
            with open(plain_json, "rb") as src, gzip.open(p, "wb", compresslevel=6) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        finally:
            plain_json.unlink(missing_ok=True)

    atomic_write(path, write)


class _TraceBudget:
    """Counts the MB of traces written; says once when ``max_mb`` is reached."""

    def __init__(self, max_mb: float | None, console: Any):
        self.max_mb, self.console = max_mb, console
        self.written_mb = 0.0
        self.skipped: list[int] = []

    @property
    def full(self) -> bool:
        return self.max_mb is not None and self.written_mb >= self.max_mb

    def add(self, path: Path) -> None:
        self.written_mb += path.stat().st_size / 2**20

    def skip(self, ci: int) -> None:
        if not self.skipped:
            self.console.print(
                f"[yellow]deep.max_trace_mb={self.max_mb:g} reached ({self.written_mb:.1f} MB of "
                "traces written): no more traces from configuration "
                f"{ci} on; operator tables are still written[/yellow]"
            )
        self.skipped.append(ci)


def _progress(enabled: bool, console: Any) -> Any:
    """A rich progress bar (configurations x samples) with elapsed time and ETA.

    NOTE: no auto-refresh thread: with ``with_stack`` (full mode) the profiler traces the
    Python calls of every thread, and a render thread would land in each trace. The
    loop refreshes it (:func:`_tick`) at most twice a second instead.
    """
    from knoblab.console import progress_bar

    return progress_bar(enabled, console, auto_refresh=False)


def _tick(progress: Any, bar: Any, last: list[float]) -> None:
    """Advance the bar by one sample; redraw when 0.5 s passed since the last redraw."""
    progress.advance(bar)
    now = time.perf_counter()
    if now - last[0] >= 0.5:
        progress.refresh()
        last[0] = now


def _write_tables(
    prof: Any, out_dir: Path, ci: int, knobs: Mapping[str, Any], sample_ids: list[Any], deep: Any
) -> tuple[Path, Path]:
    """The operator table (text, seed 002's name) and the same rows as CSV."""
    from knoblab.atomic import atomic_write

    sort_by = "self_cuda_time_total" if deep.cuda else "self_cpu_time_total"
    suffix = f"sample_{sample_ids[0]}" if deep.samples == "first" else "all"
    table_path = out_dir / f"profiler_results_config_{ci}_{suffix}.txt"
    more = "..." if len(sample_ids) > 20 else ""
    header = (
        f"# configuration {ci}: {dict(knobs)}; mode={deep.mode}; samples={sample_ids[:20]}{more}\n"
    )
    table = prof.key_averages().table(sort_by=sort_by, row_limit=deep.row_limit)
    atomic_write(table_path, header + table + "\n")
    rows = _operator_rows(prof)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["name"])
    writer.writeheader()
    writer.writerows(rows)
    csv_path = out_dir / f"operators_config_{ci}.csv"
    atomic_write(csv_path, buf.getvalue())
    return table_path, csv_path


def _save_config(
    prof: Any,
    out_dir: Path,
    ci: int,
    knobs: Mapping[str, Any],
    sample_ids: list[Any],
    budget: _TraceBudget,
    opts: Any,
) -> dict[str, Any]:
    """Write one configuration's trace (unless the cap is reached) and tables; its index entry."""
    trace: Path | None = out_dir / f"trace_config_{ci}{'.json.gz' if opts.gzip else '.json'}"
    if budget.full:
        budget.skip(ci)
        trace = None
    else:
        _export_trace(prof, trace, opts.gzip)
        budget.add(trace)
    table_path, csv_path = _write_tables(prof, out_dir, ci, knobs, sample_ids, opts)
    by_stage = _write_stage_csv(
        out_dir / f"operators_by_stage_config_{ci}.csv", stage_operator_rows(prof)
    )
    return {
        "index": ci,
        "knobs": dict(knobs),
        "trace": trace.name if trace is not None else None,
        "operator_table": table_path.name,
        "operators_csv": csv_path.name,
        "operators_by_stage_csv": by_stage.name,
    }


def _profile_config(
    s: SweepSetup, knobs: Mapping[str, Any], chosen: list[int], tick: Any, opts: Any
) -> tuple[Any, list[Any]]:
    """Warm up outside the profiler, then profile ``chosen`` samples at ``knobs``."""
    from torch.profiler import profile

    adapter, run = s.adapter, s.run
    timer = StageTimer(getattr(adapter, "device", "cpu"))
    adapter.apply_knobs(knobs)
    prepared_first = adapter.preprocess(s.dataset[chosen[0]])
    for _ in range(max(run.warmup_runs, 1)):
        _stages(adapter, prepared_first, timer, run.max_new_tokens)
    sample_ids = []
    full = opts.mode == "full"
    with profile(
        activities=opts.activities, record_shapes=full, with_stack=full, profile_memory=full
    ) as prof:
        for idx in chosen:
            sample = s.dataset[idx]
            prepared = prepared_first if idx == chosen[0] else adapter.preprocess(sample)
            _stages(adapter, prepared, timer, run.max_new_tokens)
            sample_ids.append(sample.sample_id)
            tick()
    return prof, sample_ids


def deep_profile(
    cfg: Mapping[str, Any] | Any,
    *,
    adapter: ModelAdapter | None = None,
    dataset: Any | None = None,
    console: Any | None = None,
) -> dict[str, Any]:
    """Profile the chosen configurations; returns the ``deep_profile.json`` index.

    The setup (config, dataset, plan, model, prompt) is the sweep runner's
    (``profiling.prepare.setup_sweep``); the configurations are ``deep.configurations``
    or the design's.
    """
    from torch.profiler import ProfilerActivity

    from knoblab.console import console as wide_console
    from knoblab.sampling.legacy import sampling_overrides

    data = plain(cfg)
    deep = to_dataclass(data.get("deep"), DeepConfig, "deep")
    console = console or wide_console()
    apply_hardware(data.get("hardware"))
    s = setup_sweep(
        data,
        adapter=adapter,
        dataset=dataset,
        choose=lambda d, ad, design: _chosen_configs(deep, d, ad, design),
    )
    out_dir = Path(deep.output_dir) / s.task
    ensure_dir(out_dir, "deep.output_dir")
    device = str(getattr(s.adapter, "device", "cpu"))
    cuda = device.startswith("cuda") and torch.cuda.is_available()
    indices = [int(i) for i in s.plan.indices().tolist()]
    chosen = indices[:1] if deep.samples == "first" else indices
    index: dict[str, Any] = {
        "task": s.task,
        "model": s.adapter.name,
        "mode": deep.mode,
        "samples": deep.samples,
        "profiled_sample_ids": [],
        "sampling": s.plan_desc,
        "stage1_overrides": sampling_overrides(s.plan),
        "configurations": [],
    }
    budget = _TraceBudget(deep.max_trace_mb, console)
    opts = SimpleNamespace(
        cuda=cuda,
        samples=deep.samples,
        mode=deep.mode,
        row_limit=deep.row_limit,
        gzip=deep.gzip,
        activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else []),
    )
    with _progress(s.run.progress, console) as progress:
        bar = progress.add_task(s.task, total=len(s.configs) * len(chosen))
        last = [0.0]
        for ci, knobs in enumerate(s.configs):
            progress.update(bar, description=f"[{ci + 1}/{len(s.configs)}] {_label(knobs)}")
            prof, sample_ids = _profile_config(
                s, knobs, chosen, lambda: _tick(progress, bar, last), opts
            )
            index["profiled_sample_ids"] = sample_ids
            index["configurations"].append(
                _save_config(prof, out_dir, ci, knobs, sample_ids, budget, opts)
            )
        progress.refresh()
    index["traces"] = {
        "gzip": deep.gzip,
        "written_mb": round(budget.written_mb, 3),
        "max_trace_mb": deep.max_trace_mb,
        "skipped_configurations": budget.skipped,
    }
    index["environment"] = rec.environment_info(
        device=device,
        dtype=str(getattr(s.adapter, "dtype", "float32")),
        seed=s.plan.seed,
        sampling=s.plan_desc,
    )
    rec.write_json_atomic(out_dir / "deep_profile.json", index)
    index["out_dir"] = str(out_dir)
    return index


def _label(knobs: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in knobs.items())


def maybe_wrap_in_nsys(cfg: Mapping[str, Any] | Any, argv: Sequence[str]) -> int | None:
    """Rerun the command under nsys when ``deep.nsys`` asks and nsys exists; else None.

    Returns the child's exit code, or None when the caller should profile in-process.
    """
    import os
    import subprocess

    data = plain(cfg)
    deep = to_dataclass(data.get("deep"), DeepConfig, "deep")
    if not deep.nsys or os.environ.get(NSYS_ENV):
        return None
    cmd = nsys_command(argv, Path(deep.output_dir))
    if cmd is None:
        warnings.warn(
            "deep.nsys=true but nsys is not on the PATH; running torch.profiler only", stacklevel=2
        )
        return None
    Path(deep.output_dir).mkdir(parents=True, exist_ok=True)
    return subprocess.run(cmd, env={**os.environ, NSYS_ENV: "1"}, check=False).returncode
