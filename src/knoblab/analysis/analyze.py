"""The whole analysis of a results directory: E1, E2, E3, the budget answer, the report.

``analyze(results_dir)`` is what ``knoblab analyze`` runs; a user can call it from
Python and get the tables back. Per dataset (``task``) of the directory it computes the
Pareto front and knob coupling (E2); over all usable samples it computes stage shares
and scaling fits (E1) and fits the latency estimator with its leave-configurations-out
evaluation (E3); with ``budget_ms`` it answers the budget question. With ``out_dir``
(default ``<results_dir>/analysis``) it writes ``report.html``, ``analysis.md``,
``analysis.json``, ``estimator.json`` and the plots as PNG.

NOTE: a percentile is flagged in ``notes`` when fewer than 5 samples lie above it
(p95 needs 100 samples, p99 500): such a tail figure is one or two unlucky samples.

Example:
    >>> from knoblab.analysis.synthetic import write_synthetic_results
    >>> import tempfile
    >>> a = analyze(write_synthetic_results(tempfile.mkdtemp(), num_samples=8), write=False)
    >>> int(a.fronts["shapes-vqa"]["on_front"].sum()) > 0
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from knoblab.analysis.budget import BudgetAnswer, answer_budget
from knoblab.analysis.estimator import (
    VISION_TOKEN_MODES,
    Evaluation,
    LatencyEstimator,
    fit_and_evaluate,
)
from knoblab.analysis.load import SweepResults, load_results
from knoblab.analysis.operators import OperatorShares, load_operator_shares
from knoblab.analysis.pareto import coupling, latency_column, pareto_front, reference_point
from knoblab.analysis.stages import scaling_data, scaling_fits, stage_shares
from knoblab.errors import ConfigError, DataError

MIN_TAIL_SAMPLES = 5


@dataclass
class Analysis:
    """Everything ``analyze`` computed; ``files`` lists what it wrote."""

    results: SweepResults
    percentile: str
    shares: pd.DataFrame
    fits: pd.DataFrame
    fronts: dict[str, pd.DataFrame]
    coupling: dict[str, pd.DataFrame]
    reference: dict[str, tuple[float, float]]
    estimator: LatencyEstimator | None
    evaluation: Evaluation | None
    budget: BudgetAnswer | None
    notes: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    operators: OperatorShares | None = None  # operator-level E1, from knoblab deep-profile


def analyze(
    results_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    percentile: str = "p95",
    budget_ms: float | None = None,
    vision_tokens: str = "actual",
    deep: str | Path | bool | None = None,
    write: bool = True,
) -> Analysis:
    """Analyse a results directory; with ``write``, write the report into ``out_dir``.

    ``deep``: the ``knoblab deep-profile`` output for operator-level E1 (a
    ``deep_profile.json`` or a folder); None looks beside ``results_dir``, False skips it
    (``knoblab.analysis.operators``).

    Raises:
        DataError: no usable record in ``results_dir``.
        ConfigError: an unknown percentile or vision_tokens mode, a non-positive budget.
    """
    latency_column(percentile)  # validates before any work
    if vision_tokens not in VISION_TOKEN_MODES:
        raise ConfigError("vision_tokens", vision_tokens, f"one of {', '.join(VISION_TOKEN_MODES)}")
    res = load_results(results_dir)
    notes = list(res.notes)
    q = float(percentile[1:]) / 100
    thin = res.configs[res.configs["num_valid_samples"] * (1 - q) < MIN_TAIL_SAMPLES]
    if len(thin):
        need = int(round(MIN_TAIL_SAMPLES / (1 - q)))
        notes.append(
            f"T_total {percentile} of {len(thin)} configuration(s) rests on fewer than {MIN_TAIL_SAMPLES} "
            f"samples above it (min {int(thin['num_valid_samples'].min())} samples; {need} wanted)"
        )
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
    estimator, evaluation = fit_and_evaluate(res, vision_tokens)
    budget = answer_budget(res, budget_ms, percentile, estimator) if budget_ms is not None else None
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


def scaling_points(a: Analysis) -> pd.DataFrame:
    """Per-sample points behind the scaling plot (input and output tokens, stage times, group)."""
    return scaling_data(a.results)
