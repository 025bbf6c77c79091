"""Sweep tracking: a sweep's configurations as rows in TensorBoard, MLflow or W&B.

``run.logger=tensorboard|mlflow|wandb`` (default ``none``) makes ``knoblab profile`` log,
on rank 0 only:

- one row per configuration, as soon as its record is written: its knobs, status,
  sample counts, accuracy (its standard error and interval), the mean and every recorded
  percentile (``run.percentiles``) of every stage latency with their intervals (seed
  002's names: ``T_total_p95``, ``T_LLM_prefill_p50``, ``T_total_p95_lo``, ...) and any
  memory figure the record carries (a key with ``mem`` in its name);
- the environment (package versions, device, dtype, seed, sampling plan, git revision);
- at the end, the table of all configurations and the files ``report.md``,
  ``environment.json`` (and ``report.html`` when ``knoblab analyze`` wrote one) as
  artifacts.

The run's id goes to ``<results dir>/tracking.json``: a rerun into the same directory
(a resumed sweep) continues the same run, and ``knoblab analyze RESULTS run.logger=...``
logs the analysis (estimator figures, fronts, ``report.html``) into it.

What a "row" is in each tool:

- TensorBoard (``torch.utils.tensorboard``): one HParams session per configuration
  (knobs as hyperparameters, figures as metrics; the HPARAMS tab's table), plus
  scalars stepped by configuration index; artifacts are copied into the log folder,
  ``.md`` files also shown in the TEXT tab. Default folder: ``<output_dir>/tensorboard/<task>``.
- MLflow (``MlflowClient``): a parent run per sweep and one child run per
  configuration (knobs as params, figures as metrics). Default store:
  ``$MLFLOW_TRACKING_URI``, else ``file:<output_dir>/mlruns``.
  NOTE: MLflow 3 refuses the file store unless ``MLFLOW_ALLOW_FILE_STORE=true``; for a
  ``file:`` URI knoblab sets that variable when it is unset (the file store is the one
  that works with no server and no network).
- W&B (``wandb``): one run per sweep, one ``run.log`` per configuration and a
  ``wandb.Table`` of all of them at the end; artifacts via ``run.save``. Offline with
  ``WANDB_MODE=offline`` (or ``tracking.mode=offline``); files under ``<output_dir>/wandb``.

A tracking failure (a server that went away) prints one warning and stops the
tracking; the sweep goes on and its records are on disk either way.

Example:
    >>> t = open_tracking({"run": {"logger": "none"}}, "results/profile/shapes-vqa", {})
    >>> t.enabled
    False
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from knoblab.config import plain, to_dataclass
from knoblab.errors import ConfigError
from knoblab.records import percentile_name, record_percentiles

LOGGERS = ("none", "tensorboard", "mlflow", "wandb")
#: logger -> (module that must import, the knoblab extra that installs it)
PACKAGES = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "mlflow": ("mlflow", "mlflow"),
    "wandb": ("wandb", "wandb"),
}
STATE_FILE = "tracking.json"
_STAGE_FIELDS = ("T_total", "T_vision_total", "T_LLM_prefill", "T_LLM_decode", "T_decode_per_token")


@dataclass
class TrackingConfig:
    """The ``tracking`` config section: where ``run.logger`` logs.

    Attributes:
        project: W&B project and MLflow experiment name.
        run_name: the run's name; null: the task (dataset) name, e.g. ``shapes-vqa``.
        dir: TensorBoard log folder / W&B folder; null: under the results root.
        uri: MLflow tracking URI; null: ``$MLFLOW_TRACKING_URI``, else ``file:<root>/mlruns``.
        mode: W&B mode (``online``, ``offline``, ``disabled``); null: W&B's default
            (``$WANDB_MODE``).
        tags: extra tags of the run (MLflow tags, W&B tags, TensorBoard text).
    """

    project: str = "knoblab"
    run_name: str | None = None
    dir: str | None = None
    uri: str | None = None
    mode: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


class Backend(Protocol):
    """What a tracking tool does for knoblab: one class per tool below."""

    run_id: str

    def log_row(self, index: int, row: Mapping[str, Any]) -> None:
        """One configuration's row (``record_row``); ``index`` counts rows of this run."""

    def log_metrics(self, metrics: Mapping[str, float], prefix: str) -> None:
        """Run-level figures (the analysis), named ``<prefix>/<key>``."""

    def log_table(self, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """A whole table (all configurations, a front) under ``name``."""

    def attach(self, path: Path) -> None:
        """Attach a file (``report.md``, ``report.html``, ...) to the run."""

    def finish(self) -> None:
        """Close the run (flush files, mark it finished)."""


def require(logger: str, key: str = "run.logger") -> None:
    """Check ``logger`` is known and its package importable; one line naming the extra."""
    if logger not in LOGGERS:
        raise ConfigError(key, logger, f"one of {', '.join(LOGGERS)}")
    if logger == "none":
        return
    module, extra = PACKAGES[logger]
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            key,
            logger,
            f"a logger whose package is installed ({module} is not)",
            f"pip install 'knoblab[{extra}]'",
        )


def _label(knobs: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in knobs.items()) or "default"


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return None if math.isnan(v) or math.isinf(v) else float(v)


def _memory(record: Mapping[str, Any]) -> dict[str, float]:
    """Every numeric figure with ``mem`` in its key: top level, nested, aggregate stats."""
    out: dict[str, float] = {}

    def walk(prefix: str, obj: Any, inside: bool) -> None:
        if isinstance(obj, Mapping):
            for k, v in obj.items():
                walk(
                    f"{prefix}{k}" if not prefix else f"{prefix}/{k}",
                    v,
                    inside or "mem" in str(k).lower(),
                )
        elif inside and _number(obj) is not None:
            out[prefix] = float(obj)

    for k, v in record.items():
        if k in ("per_sample_results", "environment", "sampling"):
            continue
        if k == "aggregate_stats" and isinstance(v, Mapping):
            for sk, sv in v.items():
                if "mem" in sk.lower() and _number(sv) is not None:
                    out[sk] = float(sv)
            continue
        walk(k, v, "mem" in k.lower())
    return out


def record_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """One configuration's row: ``knob/<name>``, status, counts, accuracy, stage figures, memory."""
    knobs = dict(record.get("knobs") or {})
    row: dict[str, Any] = {"configuration": _label(knobs)}
    row |= {f"knob/{k}": v for k, v in knobs.items()}
    row |= {
        "status": record.get("status"),
        "num_samples": record.get("num_samples"),
        "num_failed_samples": record.get("num_failed_samples", 0),
        "accuracy": record.get("accuracy"),
        "accuracy_stderr": record.get("accuracy_stderr"),
        "accuracy_lo": record.get("accuracy_lo"),
        "accuracy_hi": record.get("accuracy_hi"),
    }
    stats = record.get("aggregate_stats") or {}
    names = ("mean", *(percentile_name(q) for q in record_percentiles(record)))
    for f in _STAGE_FIELDS:
        for s in names:
            for key in (f"{f}_{s}", f"{f}_{s}_lo", f"{f}_{s}_hi"):  # the figure, its interval
                if _number(stats.get(key)) is not None:
                    row[key] = float(stats[key])
    row |= _memory(record)
    return row


def _split(row: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """(knobs and status as parameters, numeric figures as metrics)."""
    params = {
        k: v for k, v in row.items() if k.startswith("knob/") or k in ("status", "configuration")
    }
    metrics = {k: float(v) for k, v in row.items() if k not in params and _number(v) is not None}
    return params, metrics


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a/b": v}`` for nested mappings; lists longer than 16 items left out (sample ids)."""
    out: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            out |= _flat(v, f"{prefix}/{k}" if prefix else str(k))
    elif not (isinstance(obj, (list, tuple)) and len(obj) > 16):
        out[prefix] = obj
    return out


# -- the backends ---------------------------------------------------------------------
class TensorBoardBackend:
    """TensorBoard: HParams session per configuration, scalars by index, files copied."""

    def __init__(self, logdir: Path, environment: Mapping[str, Any], cfg: TrackingConfig):
        from torch.utils.tensorboard import SummaryWriter

        self.logdir = Path(logdir)
        self.writer = SummaryWriter(log_dir=str(self.logdir))
        self.run_id = str(self.logdir)
        env = json.dumps(dict(environment), indent=1, default=str)
        self.writer.add_text("environment", "    " + env.replace("\n", "\n    "))
        if cfg.tags:
            self.writer.add_text("tags", ", ".join(f"{k}={v}" for k, v in cfg.tags.items()))

    def log_row(self, index: int, row: Mapping[str, Any]) -> None:
        params, metrics = _split(row)
        for k, v in metrics.items():
            self.writer.add_scalar(f"configurations/{k}", v, index)
        self.writer.add_text("configurations/label", str(row["configuration"]), index)
        hparams = {
            k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in params.items()
        }
        safe = "".join(c if c.isalnum() or c in "-_=." else "_" for c in str(row["configuration"]))
        self.writer.add_hparams(
            hparams, {f"hparam/{k}": v for k, v in metrics.items()}, run_name=f"config_{safe}"
        )
        self.writer.flush()

    def log_metrics(self, metrics: Mapping[str, float], prefix: str) -> None:
        for k, v in metrics.items():
            self.writer.add_scalar(f"{prefix}/{k}", v, 0)

    def log_table(self, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
        self.writer.add_text(name, _markdown_table(rows))

    def attach(self, path: Path) -> None:
        from knoblab.atomic import atomic_write

        atomic_write(self.logdir / "artifacts" / path.name, path.read_bytes())
        if path.suffix == ".md":
            self.writer.add_text(f"artifacts/{path.name}", path.read_text(encoding="utf-8"))

    def finish(self) -> None:
        self.writer.close()


class MLflowBackend:
    """MLflow: a parent run per sweep, a child run per configuration."""

    def __init__(
        self,
        uri: str,
        environment: Mapping[str, Any],
        cfg: TrackingConfig,
        name: str,
        resume: str | None,
    ):
        if uri.startswith("file:") or "://" not in uri:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # see the module NOTE
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        self.uri = uri
        exp = self.client.get_experiment_by_name(cfg.project)
        self.experiment_id = (
            exp.experiment_id if exp else self.client.create_experiment(cfg.project)
        )
        if resume:
            self.run_id = resume
            self.client.update_run(resume, status="RUNNING")
            return
        run = self.client.create_run(self.experiment_id, run_name=name, tags=dict(cfg.tags))
        self.run_id = run.info.run_id
        params = {f"env/{k}": str(v)[:500] for k, v in _flat(environment).items() if v is not None}
        self._batch(self.run_id, params, {})

    def _batch(self, run_id: str, params: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        import time

        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        ps = [Param(k, str(v)) for k, v in params.items()]
        ms = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        for i in range(0, max(len(ps), len(ms)), 100):  # MLflow's batch limit is 100 params
            self.client.log_batch(run_id, metrics=ms[i : i + 100], params=ps[i : i + 100])

    def log_row(self, index: int, row: Mapping[str, Any]) -> None:
        params, metrics = _split(row)
        child = self.client.create_run(
            self.experiment_id,
            run_name=str(row["configuration"]),
            tags={"mlflow.parentRunId": self.run_id, "knoblab.configuration_index": str(index)},
        )
        self._batch(child.info.run_id, params, metrics)
        self.client.set_terminated(child.info.run_id)

    def log_metrics(self, metrics: Mapping[str, float], prefix: str) -> None:
        self._batch(self.run_id, {}, {f"{prefix}/{k}": v for k, v in metrics.items()})

    def log_table(self, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
        self.client.log_text(
            self.run_id, json.dumps(list(rows), indent=1, default=str), f"{name}.json"
        )

    def attach(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def finish(self) -> None:
        self.client.set_terminated(self.run_id)


class WandbBackend:
    """W&B: one run per sweep, one ``log`` per configuration, a ``Table`` at the end."""

    def __init__(
        self,
        folder: Path,
        environment: Mapping[str, Any],
        cfg: TrackingConfig,
        name: str,
        resume: str | None,
    ):
        import wandb

        Path(folder).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=cfg.project,
            name=name,
            dir=str(folder),
            mode=cfg.mode,
            id=resume,
            resume="allow" if resume else None,
            tags=[f"{k}={v}" for k, v in cfg.tags.items()] or None,
            config={"environment": dict(environment)},
            reinit="create_new",
        )
        self.run_id = self.run.id
        self.wandb = wandb

    def log_row(self, index: int, row: Mapping[str, Any]) -> None:
        self.run.log({"configuration_index": index, **row})

    def log_metrics(self, metrics: Mapping[str, float], prefix: str) -> None:
        self.run.log({f"{prefix}/{k}": v for k, v in metrics.items()})

    def log_table(self, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
        data = [[r.get(c) for c in columns] for r in rows]
        self.run.log({name: self.wandb.Table(columns=columns, data=data, allow_mixed_types=True)})

    def attach(self, path: Path) -> None:
        self.run.save(str(path), base_path=str(path.parent), policy="now")

    def finish(self) -> None:
        self.run.finish()


def _markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [
            f"{v:.4g}" if isinstance(v, float) else str(v) for v in (r.get(c, "") for c in columns)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- opening a run, the runner's hook ---------------------------------------------------
def _open_backend(
    logger: str,
    cfg: TrackingConfig,
    root: Path,
    task: str,
    environment: Mapping[str, Any],
    resume: str | None,
) -> Backend:
    name = cfg.run_name or task
    if logger == "tensorboard":
        logdir = (
            Path(resume) if resume else (Path(cfg.dir or root / "tensorboard") / task).resolve()
        )
        return TensorBoardBackend(logdir, environment, cfg)
    if logger == "mlflow":
        uri = (
            cfg.uri or os.environ.get("MLFLOW_TRACKING_URI") or (root.resolve() / "mlruns").as_uri()
        )
        return MLflowBackend(uri, environment, cfg, name, resume)
    return WandbBackend(Path(cfg.dir or root), environment, cfg, name, resume)


def _read_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


class SweepTracking:
    """The runner's hook: :meth:`on_record` per finalised configuration, :meth:`on_end` once.

    Disabled (every call does nothing) for ``run.logger=none`` and on ranks other than 0.
    """

    def __init__(
        self, backend: Backend | None = None, out_dir: Path | None = None, logger: str = "none"
    ):
        self.backend, self.out_dir, self.logger = backend, out_dir, logger
        self.rows = 0

    @property
    def enabled(self) -> bool:
        return self.backend is not None

    def _guard(self, what: str, fn: Any, *args: Any) -> None:
        if self.backend is None:
            return
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - tracking never stops a sweep
            from knoblab.console import console

            console().print(
                f"[yellow]warning:[/yellow] run.logger={self.logger}: {what} failed "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); tracking stops, "
                "the records are on disk"
            )
            self.backend = None

    def on_record(self, record: Mapping[str, Any]) -> None:
        """Log one configuration's row as soon as its record is written."""
        if self.backend is not None:
            self._guard(
                "logging a configuration", self.backend.log_row, self.rows, record_row(record)
            )
            self.rows += 1

    def on_end(self, result: Any) -> None:
        """Log the table of every configuration, attach the reports, close the run."""
        self._guard("finishing the run", self._end, result)

    def _end(self, result: Any) -> None:
        assert self.backend is not None and self.out_dir is not None
        records = getattr(result, "records", {}) or {}
        self.backend.log_table("configurations", [record_row(r) for r in records.values()])
        for name in ("report.md", "report.html", "environment.json"):
            for path in (self.out_dir / name, self.out_dir / "analysis" / name):
                if path.is_file():
                    self.backend.attach(path)
        self.backend.finish()


def open_tracking(
    cfg: Mapping[str, Any] | Any,
    out_dir: str | os.PathLike[str],
    environment: Mapping[str, Any],
    rank: int = 0,
) -> SweepTracking:
    """The sweep's tracking per ``run.logger`` and ``tracking.*``; saves the run id on rank 0.

    Every rank checks the logger and its package (so all raise alike); only rank 0 logs.

    Raises:
        ConfigError: an unknown logger, or its package missing (naming the extra to install).
    """
    data = plain(cfg) or {}
    logger = str((data.get("run") or {}).get("logger") or "none")
    require(logger)
    if logger == "none" or rank != 0:
        return SweepTracking()
    tcfg = to_dataclass(data.get("tracking") or {}, TrackingConfig, "tracking")
    out = Path(out_dir)
    state_path = out / STATE_FILE
    state = _read_state(state_path)
    resume = state.get("run_id") if state.get("logger") == logger else None
    try:
        backend = _open_backend(logger, tcfg, out.parent, out.name, environment, resume)
    except Exception as exc:  # noqa: BLE001 - a login prompt, a refused URI: one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ConfigError(
            "run.logger", logger, "a logger that can start its run (see tracking.*)", first
        ) from exc
    from knoblab.atomic import atomic_write

    new = {"logger": logger, "run_id": backend.run_id}
    new |= {"uri": backend.uri} if isinstance(backend, MLflowBackend) else {}
    new |= {"experiment_id": backend.experiment_id} if isinstance(backend, MLflowBackend) else {}
    atomic_write(state_path, json.dumps(new, indent=1) + "\n")
    return SweepTracking(backend, out, logger)


# -- knoblab analyze --------------------------------------------------------------------
def log_analysis(
    results_dir: str | os.PathLike[str],
    logger: str,
    tracking: Mapping[str, Any] | None,
    metrics: Mapping[str, float],
    tables: Mapping[str, Sequence[Mapping[str, Any]]],
    files: Sequence[str | os.PathLike[str]],
) -> list[str]:
    """Log an analysis into the sweep runs found under ``results_dir``; their run ids.

    The runs are those named by ``tracking.json`` in ``results_dir`` or one folder
    below it (the task folders of a results root) and made with this ``logger``; with
    none, a new run named ``analysis`` is opened under ``results_dir``.
    """
    require(logger)
    if logger == "none":
        return []
    tcfg = to_dataclass(dict(tracking or {}), TrackingConfig, "tracking")
    root = Path(results_dir)
    states = [root / STATE_FILE, *sorted(root.glob(f"*/{STATE_FILE}"))]
    found = [(p.parent, s) for p in states if (s := _read_state(p)).get("logger") == logger]
    targets = found or [(root / "analysis", {})]
    ids = []
    for out, state in targets:
        if logger == "mlflow" and state.get("uri") and not tcfg.uri:
            tcfg = TrackingConfig(**{**tcfg.__dict__, "uri": state["uri"]})
        backend = _open_backend(logger, tcfg, out.parent, out.name, {}, state.get("run_id") or None)
        if isinstance(backend, TensorBoardBackend) and not state:
            backend.writer.add_text("analysis", f"analysis of {root}")
        numbers = {k: float(v) for k, v in metrics.items() if _number(v) is not None}
        backend.log_metrics(numbers, "analysis")
        for name, rows in tables.items():
            backend.log_table(f"analysis/{name}", rows)
        for f in files:
            if Path(f).is_file():
                backend.attach(Path(f))
        backend.finish()
        ids.append(backend.run_id)
    return ids
