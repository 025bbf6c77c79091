"""Answer the user's question: the most accurate configuration that meets a latency budget.

``answer_budget(res, 40, "p95")`` looks first at measured configurations (accuracy and
``T_total`` percentile both measured). With an estimator it also looks at the
configurations of the sweep's knob grid that were not measured (a ``stratified`` or
``lhs`` design leaves many out): their latency percentile is predicted by the
estimator on the sweep's own samples, and their accuracy by an additive model of the
knobs' main effects fitted on the measured configurations. Every answer says which
figures are measured and which predicted.

NOTE: a predicted configuration never replaces a measured one silently: the measured
pick stays the answer and a better predicted one is offered as ``alternative`` (run it
to confirm). Only when no measured configuration meets the budget is a predicted one
the answer.

How sure (:func:`budget_confidence`, measured answers only): the per-sample rows of
each configuration are resampled with replacement, ``resamples`` times with a fixed
seed (the records' ``intervals`` settings), **paired**: every configuration draws the
same samples in a resample when the configurations share their sample ids (they do in a
sweep). ``confidence`` is the share of resamples in which the chosen configuration's
``T_total`` percentile meets the budget; ``confidence_best`` the share in which it
meets the budget *and* is still the pick (the most accurate of those meeting it, ties
to the faster). The competitors resampled are the configurations that could take its
place: latency interval's low end within the budget and accuracy interval's high end at
or above the chosen one's low end (the records' 95 % intervals); the others are taken
never to beat it.

Example:
    >>> from knoblab.analysis.synthetic import write_synthetic_results
    >>> from knoblab.analysis.load import load_results
    >>> import tempfile
    >>> res = load_results(write_synthetic_results(tempfile.mkdtemp(), num_samples=8))
    >>> a = answer_budget(res, budget_ms=5.0, percentile="p95")
    >>> a.source, a.latency_ms <= 5.0
    ('measured', True)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from knoblab.analysis.estimator import LatencyEstimator
from knoblab.analysis.load import SweepResults, knob_label, knob_values
from knoblab.analysis.pareto import latency_column
from knoblab.errors import ConfigError
from knoblab.records.aggregate import IntervalSettings, Resampler
from knoblab.records.intervals import bootstrap_distributions


@dataclass
class BudgetAnswer:
    """The configuration to run under a budget, or None, and where its figures come from.

    ``source`` is ``measured`` (accuracy and latency both measured) or ``predicted``
    (both predicted: an unmeasured configuration). ``latency_band`` is the estimator's
    band for a predicted latency. A measured answer carries the records' intervals
    (``accuracy_interval``, ``latency_interval``) and how sure it is: ``confidence``
    (share of bootstrap resamples in which it meets the budget) and ``confidence_best``
    (share in which it meets it and is still the pick), over ``resamples`` resamples
    (see the module's docstring); None for a predicted answer.
    """

    budget_ms: float
    percentile: str
    label: str | None
    knobs: dict[str, Any] | None
    accuracy: float | None
    latency_ms: float | None
    source: str
    latency_band: tuple[float, float] | None = None
    alternative: BudgetAnswer | None = None
    note: str = ""
    accuracy_interval: tuple[float, float] | None = None
    latency_interval: tuple[float, float] | None = None
    confidence: float | None = None
    confidence_best: float | None = None
    resamples: int | None = None
    num_samples: int | None = None

    def message(self) -> str:
        """One line for a human."""
        p = self.percentile
        if self.label is None:
            return (
                f"no configuration meets T_total {p} <= {self.budget_ms:g} ms. {self.note}".strip()
            )
        band = (
            f" (band {self.latency_band[0]:.2f}-{self.latency_band[1]:.2f})"
            if self.latency_band
            else ""
        )
        acc_ci = _ci(self.accuracy_interval, ".3f")
        lat_ci = _ci(self.latency_interval, ".2f")
        n = f", {self.num_samples} samples" if self.num_samples is not None else ""
        line = (
            f"{self.label}: accuracy {self.accuracy:.3f}{acc_ci}, T_total {p} "
            f"{self.latency_ms:.2f} ms{lat_ci}{band} <= {self.budget_ms:g} ms [{self.source}]{n}"
        )
        if self.confidence is not None and self.confidence_best is not None:
            line += (
                f"; meets the budget in {100 * self.confidence:.0f}% and is still the pick in "
                f"{100 * self.confidence_best:.0f}% of {self.resamples} bootstrap resamples"
            )
        if self.alternative is not None:
            line += f"; an unmeasured configuration may do better (run it to confirm): {self.alternative.message()}"
        return line


def _ci(bounds: tuple[float, float] | None, spec: str) -> str:
    if bounds is None or any(b != b for b in bounds):  # None or NaN
        return ""
    return f" [{bounds[0]:{spec}}, {bounds[1]:{spec}}]"


def _interval(row: pd.Series, col: str) -> tuple[float, float] | None:
    lo, hi = row.get(f"{col}_lo"), row.get(f"{col}_hi")
    if lo is None or hi is None or lo != lo or hi != hi:
        return None
    return float(lo), float(hi)


def _settings(res: SweepResults) -> IntervalSettings:
    """The records' interval settings (the first block), else the default."""
    for block in res.intervals:
        try:
            return IntervalSettings(
                float(block["confidence"]), int(block["resamples"]), int(block["seed"])
            )
        except (KeyError, TypeError, ValueError):
            continue
    return IntervalSettings()


def _per_config(res: SweepResults, config: str, column: str) -> np.ndarray:
    """One configuration's per-sample ``column``, ordered by sample id (for pairing)."""
    s = res.samples[res.samples["config"] == config]
    order = np.argsort(s["sample_id"].astype(str).to_numpy(), kind="stable")
    return s[column].to_numpy(float)[order]


def budget_confidence(
    res: SweepResults,
    configs: pd.DataFrame,
    chosen: pd.Series,
    budget_ms: float,
    percentile: str,
    settings: IntervalSettings | None = None,
) -> tuple[float, float]:
    """(confidence, confidence_best) of ``chosen`` under ``budget_ms``: see the module docstring."""
    settings = settings or _settings(res)
    col = latency_column(percentile)
    rs = Resampler(settings)

    def lo(r: pd.Series, c: str) -> float:
        v = r.get(f"{c}_lo")
        return float(r[c]) if v is None or v != v else float(v)

    def hi(r: pd.Series, c: str) -> float:
        v = r.get(f"{c}_hi")
        return float(r[c]) if v is None or v != v else float(v)

    def draws(r: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        lat = _per_config(res, r["config"], "T_total")
        lat_d = bootstrap_distributions(lat, [percentile], rs.indices(lat.size))[percentile]
        acc = _per_config(res, r["config"], "accuracy")
        acc = acc[~np.isnan(acc)]
        if not acc.size:
            return lat_d, np.full(lat_d.size, np.nan)
        return lat_d, bootstrap_distributions(acc, ["mean"], rs.indices(acc.size))["mean"]

    lat_c, acc_c = draws(chosen)
    meets = lat_c <= budget_ms
    still = meets.copy()
    floor = lo(chosen, "accuracy")
    for _, r in configs.iterrows():
        if r["config"] == chosen["config"] or lo(r, col) > budget_ms or hi(r, "accuracy") < floor:
            continue
        lat_r, acc_r = draws(r)
        better = (acc_r > acc_c) | ((acc_r == acc_c) & (lat_r < lat_c))
        still &= ~((lat_r <= budget_ms) & better)
    return float(meets.mean()), float(still.mean())


def accuracy_model(
    configs: pd.DataFrame, knobs: list[str]
) -> tuple[Callable[[Mapping[str, Any]], float] | None, str]:
    """An additive main-effects model of accuracy (one coefficient per knob level), by OLS.

    Returns ``(predict(knobs_dict) -> float, note)`` or ``(None, why not)`` when there are
    not more configurations than parameters.
    """
    levels = {k: knob_values(configs, k) for k in knobs}
    cols = [(k, v) for k in knobs for v in levels[k][1:]]
    if len(configs) <= len(cols) + 1:
        return None, f"too few measured configurations ({len(configs)}) to predict accuracy"

    def row(kv: Mapping[str, Any]) -> np.ndarray:
        return np.array([1.0] + [1.0 if kv.get(k) == v else 0.0 for k, v in cols])

    X = np.stack([row(dict(r)) for _, r in configs[knobs].iterrows()])
    beta, *_ = np.linalg.lstsq(X, configs["accuracy"].to_numpy(float), rcond=None)

    def predict(kv: Mapping[str, Any]) -> float:
        return float(np.clip(row(kv) @ beta, 0.0, 1.0))

    return predict, "accuracy predicted by an additive main-effects model of the knobs"


def sample_frame(
    res: SweepResults, knobs: Mapping[str, Any], configs: pd.DataFrame
) -> pd.DataFrame:
    """The sweep's samples as they would run with ``knobs``: per-sample tokens, new knob values.

    Vision tokens per sample come from the measured configurations with the same vision
    knob value (the same image gets the same crops whatever top_k or blocks are; every
    configuration when the sweep has no vision knob); text tokens are the sample's;
    output tokens are the sample's median over configurations. Every knob of ``knobs``
    becomes a column.
    """
    s = res.samples[res.samples["config"].isin(configs["config"])]
    vk = res.vision_knob
    same = s[s[vk] == knobs[vk]] if vk is not None and vk in knobs else s
    if same.empty:
        raise ConfigError(
            str(vk),
            knobs.get(str(vk)),
            f"one of the values measured: {', '.join(map(str, knob_values(configs, str(vk))))}",
        )
    vis = same.groupby("sample_id")[["target_vision_tokens", "actual_vision_tokens"]].mean()
    base = s.groupby("sample_id").agg(
        input_text_tokens=("input_text_tokens", "mean"), output_tokens=("output_tokens", "median")
    )
    frame = vis.join(base, how="inner").reset_index()
    for k, v in knobs.items():
        frame[k] = v
    return frame


def predict_percentile(
    est: LatencyEstimator, frame: pd.DataFrame, percentile: str
) -> tuple[float, tuple[float, float]]:
    """Predicted ``T_total`` percentile (ms) over a sample frame, and its band."""
    t = est.predict_frame(frame)["T_total"].to_numpy(float)
    q = float(np.percentile(t, float(percentile[1:]))) * est.tail_factor.get(percentile, 1.0)
    lo_e, hi_e = est.band.get("T_total", (0.0, 0.0))
    return q, (q / (1 + max(hi_e, 0.0)), q / (1 + min(lo_e, 0.0)) if lo_e > -1 else float("inf"))


def answer_budget(
    res: SweepResults,
    budget_ms: float,
    percentile: str = "p95",
    estimator: LatencyEstimator | None = None,
    task: str | None = None,
) -> BudgetAnswer:
    """The most accurate configuration whose ``T_total`` percentile is within ``budget_ms``.

    Ties in accuracy go to the faster configuration. ``task`` picks one dataset of a
    multi-dataset results directory (default: the first).

    Raises:
        ConfigError: a budget that is not a positive number, an unknown percentile or task.
    """
    if not isinstance(budget_ms, (int, float)) or isinstance(budget_ms, bool) or not budget_ms > 0:
        raise ConfigError("budget_ms", budget_ms, "a positive number of milliseconds")
    col = latency_column(percentile, available=res.percentiles)
    tasks = list(dict.fromkeys(res.configs["task"]))
    task = task if task is not None else tasks[0]
    if task not in tasks:
        raise ConfigError("task", task, f"one of {', '.join(tasks)}")
    configs = res.configs[res.configs["task"] == task]
    ok = configs[configs[col] <= budget_ms].sort_values(["accuracy", col], ascending=[False, True])
    measured = None
    if len(ok):
        r = ok.iloc[0]
        settings = _settings(res)
        conf, best = budget_confidence(res, configs, r, budget_ms, percentile, settings)
        measured = BudgetAnswer(
            float(budget_ms),
            percentile,
            r["label"],
            dict(r["knobs"]),
            float(r["accuracy"]),
            float(r[col]),
            "measured",
            accuracy_interval=_interval(r, "accuracy"),
            latency_interval=_interval(r, col),
            confidence=conf,
            confidence_best=best,
            resamples=settings.resamples,
            num_samples=int(r["num_valid_samples"]),
        )
    predicted, note = None, ""
    if estimator is not None:
        predicted, note = _best_unmeasured(res, configs, budget_ms, percentile, estimator)
    if measured is not None:
        if predicted is not None and _better(predicted, measured):
            measured.alternative = predicted
        return measured
    if predicted is not None:
        return predicted
    fastest = configs.sort_values(col).iloc[0]
    why = f"the fastest measured is {fastest['label']} at {fastest[col]:.2f} ms"
    return BudgetAnswer(
        float(budget_ms),
        percentile,
        None,
        None,
        None,
        None,
        "measured",
        note=f"{why}. {note}".strip(),
    )


def _better(a: BudgetAnswer, b: BudgetAnswer) -> bool:
    """More accurate, or as accurate (within 1e-9) and faster."""
    acc_a, acc_b = a.accuracy or 0.0, b.accuracy or 0.0
    if abs(acc_a - acc_b) > 1e-9:
        return acc_a > acc_b
    return (a.latency_ms or 0.0) < (b.latency_ms or 0.0)


def _best_unmeasured(
    res: SweepResults,
    configs: pd.DataFrame,
    budget_ms: float,
    percentile: str,
    est: LatencyEstimator,
) -> tuple[BudgetAnswer | None, str]:
    knobs = [k for k in res.knobs if k in configs and configs[k].notna().all()]
    measured = {tuple(r) for r in configs[knobs].itertuples(index=False)}
    grid = [
        c for c in itertools.product(*[knob_values(configs, k) for k in knobs]) if c not in measured
    ]
    if not grid:
        return None, "every configuration of the knob grid was measured"
    acc_fn, note = accuracy_model(configs, knobs)
    if acc_fn is None:
        return None, note
    best: BudgetAnswer | None = None
    for combo in grid:
        kv = dict(zip(knobs, combo, strict=True))
        lat, band = predict_percentile(est, sample_frame(res, kv, configs), percentile)
        if lat > budget_ms:
            continue
        acc = acc_fn(kv)
        cand = BudgetAnswer(
            float(budget_ms), percentile, knob_label(kv), kv, acc, lat, "predicted", band, note=note
        )
        if best is None or _better(cand, best):
            best = cand
    return best, note
