"""The whole analysis of a results directory: E1, E2, E3, the budget answer, the report.

``analyze(results_dir)`` is what ``knoblab analyze`` runs; a user can call it from
Python and get the tables back. Per dataset (``task``) of the directory it computes the
Pareto front and knob coupling (E2); over all usable samples it computes stage shares
and scaling fits (E1) and fits the latency estimator with its leave-configurations-out
evaluation (E3); with ``budget_ms`` it answers the budget question. With ``out_dir``
(default ``<results_dir>/analysis``) it writes ``report.html``, ``analysis.md``,
``analysis.json``, ``estimator.json`` and the plots as PNG.

NOTE: a percentile is flagged in ``notes`` by knoblab's one rule
(:func:`knoblab.records.min_samples_for`, the same the records' warnings use): the
``q``-th percentile needs at least one value above it, ``ceil(100 / (100 - q))``
values (p95 needs 20, p99 100); the note quotes each configuration's own count of
``T_total`` values. Any subset of knobs works; when the estimator cannot be fitted on
these records (e.g. a knob it does not model), the rest of the analysis goes on and a
one-line note says why.

Example:
    >>> from knoblab.analysis.synthetic import write_synthetic_results
    >>> import tempfile
    >>> a = analyze(write_synthetic_results(tempfile.mkdtemp(), num_samples=8), write=False)
    >>> int(a.fronts["shapes-vqa"]["on_front"].sum()) > 0
    True
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from knoblab.analysis.budget import answer_budget, check_memory_cap
from knoblab.analysis.estimator import (
    VISION_TOKEN_MODES,
    Evaluation,
    LatencyEstimator,
    fit_and_evaluate,
)
from knoblab.analysis.load import SweepResults, load_results
from knoblab.analysis.operators import OperatorShares, load_operator_shares
from knoblab.analysis.pareto import check_percentile, coupling, pareto_front, reference_point
from knoblab.analysis.result import Analysis
from knoblab.analysis.stages import scaling_data, scaling_fits, stage_shares
from knoblab.errors import ConfigError, DataError
from knoblab.records import min_samples_for

__all__ = ["Analysis", "analyze", "scaling_points"]


def analyze(
    results_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    percentile: str = "p95",
    budget_ms: float | None = None,
    max_memory_mb: float | None = None,
    vision_tokens: str = "actual",
    deep: str | Path | bool | None = None,
    write: bool = True,
) -> Analysis:
    """Analyse a results directory; with ``write``, write the report into ``out_dir``.

    ``deep``: the ``knoblab deep-profile`` output for operator-level E1 (a
    ``deep_profile.json`` or a folder); None looks beside ``results_dir``, False skips it
    (``knoblab.analysis.operators``).

    ``max_memory_mb``: with ``budget_ms``, the budget answer also keeps the configuration's
    measured peak memory within this many MiB (``analysis.budget.answer_budget``).

    ``percentile``: any the records hold (``run.percentiles`` of the sweep; p50, p95 and
    p99 by default), e.g. ``p90``.

    Raises:
        DataError: no usable record in ``results_dir``.
        ConfigError: a malformed percentile or one the records do not hold (the message
            names those they hold), an unknown vision_tokens mode, a non-positive budget.
    """
    check_percentile(percentile)  # its form, before any work
    check_memory_cap(max_memory_mb)
    if vision_tokens not in VISION_TOKEN_MODES:
        raise ConfigError("vision_tokens", vision_tokens, f"one of {', '.join(VISION_TOKEN_MODES)}")
    res = load_results(results_dir)
    percentile = check_percentile(percentile, res.percentiles)
    notes = list(res.notes)
    notes += tail_notes(res.configs, percentile)
    shares = stage_shares(res)
    fits = scaling_fits(res)
    fronts: dict[str, pd.DataFrame] = {}
    coup: dict[str, pd.DataFrame] = {}
    refs: dict[str, tuple[float, float]] = {}
    for task, cfg in res.configs.groupby("task", sort=False):
        front = pareto_front(cfg, percentile)
        refs[str(task)] = reference_point(front["latency"])
        fronts[str(task)] = front
        coup[str(task)] = coupling(cfg, res.knobs, percentile, refs[str(task)])
    models = sorted({str(m) for m in res.configs["model"]})
    if len(models) > 1:
        notes.append(
            f"records of {len(models)} models ({', '.join(models)}): the estimator pools them; fit one per model"
        )
    estimator, evaluation = _fit_estimator(res, vision_tokens, notes)
    budget = None
    if budget_ms is not None:
        try:
            budget = answer_budget(
                res, budget_ms, percentile, estimator, max_memory_mb=max_memory_mb
            )
        except (KeyError, ValueError, TypeError) as exc:
            if isinstance(exc, ConfigError):
                raise
            notes.append(f"unmeasured configurations not predicted ({_why(exc)})")
            budget = answer_budget(res, budget_ms, percentile, None, max_memory_mb=max_memory_mb)
    a = Analysis(
        res, percentile, shares, fits, fronts, coup, refs, estimator, evaluation, budget, notes
    )
    a.operators = _operators(res, results_dir, deep, a.notes)
    if write:
        from knoblab.analysis.report import write_report

        out = Path(out_dir) if out_dir is not None else Path(results_dir) / "analysis"
        a.files = write_report(a, out)
    return a


def _operators(
    res: SweepResults, results_dir: str | Path, deep: str | Path | bool | None, notes: list[str]
) -> OperatorShares | None:
    """Operator shares; a broken deep profile found (not named) beside the results is a note."""
    labels = {str(t): set(map(str, g["label"])) for t, g in res.configs.groupby("task")}
    try:
        return load_operator_shares(results_dir, deep, tasks=list(labels), sweep_labels=labels)
    except DataError as exc:
        if deep is not None:
            raise
        notes.append(f"deep profile beside the results left out: {exc}")
        return None


def tail_notes(configs: pd.DataFrame, percentile: str) -> list[str]:
    """One note when ``T_total`` at ``percentile`` rests on too few values, with each count."""
    need = min_samples_for(float(percentile[1:]))
    col = "T_total_count" if "T_total_count" in configs else "num_valid_samples"
    thin = configs[configs[col] < need]
    if thin.empty:
        return []
    each = ", ".join(f"{r['label']} ({int(r[col])})" for _, r in thin.head(6).iterrows())
    more = f" and {len(thin) - 6} more" if len(thin) > 6 else ""
    return [
        f"T_total {percentile} needs >= {need} values (at least one above it); "
        f"{len(thin)} configuration(s) have fewer: {each}{more}"
    ]


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:160]


def _fit_estimator(
    res: SweepResults, vision_tokens: str, notes: list[str]
) -> tuple[LatencyEstimator | None, Evaluation | None]:
    """The estimator and its evaluation, or (None, None) and a note when it cannot be fitted."""
    try:
        return fit_and_evaluate(res, vision_tokens)
    except Exception as exc:  # noqa: BLE001 - E1/E2 stand without E3; the note says why
        notes.append(f"latency estimator not fitted on these records ({_why(exc)})")
        return None, None


def scaling_points(a: Analysis) -> pd.DataFrame:
    """Per-sample points behind the scaling plot (input and output tokens, stage times, group)."""
    return scaling_data(a.results)
