"""Early stopping: measure a configuration only until its figure is known well enough.

``run.precision`` (null: measure every sample of the plan) states the precision::

    run:
      precision:
        field: T_total            # the latency figure (a per-sample field of the records)
        stat: p95                 # mean or p<q> (p50, p95, p99, p90, ...)
        rel_half_width: 0.03      # bootstrap CI half-width / the figure; null: no latency rule
        accuracy_half_width: null # Wilson half-width of accuracy (absolute, e.g. 0.05); null: none
        confidence: 0.95
        min: 20                   # never stop before this many samples
        max: null                 # stop here even when not reached; null: the plan's samples

A configuration stops as soon as every rule set holds on its ``status: ok`` samples
(``knoblab.records.intervals``: seeded percentile bootstrap for the latency figure,
Wilson score interval for accuracy), never before ``min`` samples and never after
``max``. Its record says ``precision: {rule, reached, samples_needed, ...}``: how many
samples it took, and whether the rule held (``reached: false`` at ``max``).

NOTE: the rule is checked at ``min`` samples and then each time the count grew by 5 %
(at least one sample): a bootstrap of 1,000 resamples costs milliseconds, too much
after every sample of a fast model; stopping later than needed by at most 5 % of the
samples is the price. Under interleaving a configuration that stops drops out of the
rounds that follow; every configuration still sees a prefix of the same plan order.

Example:
    >>> p = PrecisionConfig(rel_half_width=0.5, min=5)
    >>> p.rule()
    'T_total p95: 95% bootstrap CI half-width <= 50% of the figure; 5..plan samples'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from knoblab.errors import ConfigError
from knoblab.records import LATENCY_FIELDS
from knoblab.records.intervals import (
    bootstrap_ci,
    relative_half_width,
    stat_quantile,
    wilson_interval,
)

#: Growth of the sample count between two checks of the rule.
CHECK_GROWTH = 1.05


@dataclass
class PrecisionConfig:
    """The ``run.precision`` section (see the module docstring).

    Attributes:
        field: the per-sample latency field whose statistic must be precise.
        stat: ``mean`` or ``p<q>``.
        rel_half_width: bootstrap CI half-width over the figure; null: no latency rule.
        accuracy_half_width: Wilson interval half-width of accuracy; null: no accuracy rule.
        confidence: the intervals' confidence level.
        min: fewest samples before stopping.
        max: most samples (null: the plan's).
        resamples: bootstrap resamples per check.
    """

    field: str = "T_total"
    stat: str = "p95"
    rel_half_width: float | None = 0.03
    accuracy_half_width: float | None = None
    confidence: float = 0.95
    min: int = 20
    max: int | None = None
    resamples: int = 1000

    def __post_init__(self) -> None:
        k = "run.precision"
        if self.field not in LATENCY_FIELDS:
            raise ConfigError(f"{k}.field", self.field, f"one of {', '.join(LATENCY_FIELDS)}")
        try:
            stat_quantile(self.stat)
        except ValueError:
            raise ConfigError(f"{k}.stat", self.stat, "mean or p<q> with 0 < q < 100") from None
        for name in ("rel_half_width", "accuracy_half_width"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not 0 < float(v) < 1):
                raise ConfigError(f"{k}.{name}", v, "a number in (0, 1), or null")
        if self.rel_half_width is None and self.accuracy_half_width is None:
            raise ConfigError(
                f"{k}.rel_half_width", None, "a number in (0, 1) when accuracy_half_width is null"
            )
        if not 0 < self.confidence < 1:
            raise ConfigError(f"{k}.confidence", self.confidence, "a number in (0, 1)")
        if isinstance(self.min, bool) or int(self.min) < 2:
            raise ConfigError(f"{k}.min", self.min, "an integer >= 2")
        if self.max is not None and (isinstance(self.max, bool) or int(self.max) < self.min):
            raise ConfigError(f"{k}.max", self.max, f"an integer >= min ({self.min}), or null")
        if self.resamples < 100:
            raise ConfigError(f"{k}.resamples", self.resamples, "an integer >= 100")

    def rule(self) -> str:
        """The rule in words (records' ``precision.rule``)."""
        parts = []
        conf = f"{100 * self.confidence:g}%"
        if self.rel_half_width is not None:
            parts.append(
                f"{self.field} {self.stat}: {conf} bootstrap CI half-width <= "
                f"{100 * self.rel_half_width:g}% of the figure"
            )
        if self.accuracy_half_width is not None:
            parts.append(f"accuracy: {conf} Wilson half-width <= {self.accuracy_half_width:g}")
        top = "plan" if self.max is None else str(self.max)
        return "; ".join(parts) + f"; {self.min}..{top} samples"

    def cap(self, plan_samples: int) -> int:
        """The most samples a configuration takes; raises when ``max`` exceeds the plan."""
        if self.max is not None and self.max > plan_samples:
            raise ConfigError(
                "run.precision.max",
                self.max,
                f"<= the plan's {plan_samples} samples (dataset.sampling.*), or null",
            )
        return plan_samples if self.max is None else int(self.max)


def precision_of(
    rows: Sequence[Mapping[str, Any]], cfg: PrecisionConfig, seed: int = 0
) -> dict[str, Any]:
    """The half-widths the rules test, over the ``ok`` rows, and whether both hold."""
    ok = [r for r in rows if r.get("status") == "ok"]
    out: dict[str, Any] = {"reached": len(rows) >= cfg.min}
    if cfg.rel_half_width is not None:
        vals = [float(r[cfg.field]) for r in ok if r.get(cfg.field) is not None]
        rel = math.inf
        if len(vals) >= 2:
            lo, hi = bootstrap_ci(
                vals, cfg.stat, confidence=cfg.confidence, resamples=cfg.resamples, seed=seed
            )
            point = _point(vals, cfg.stat)
            rel = relative_half_width(lo, hi, point)
            rel = math.inf if rel is None else rel
        out["half_width_rel"] = None if math.isinf(rel) else round(rel, 5)
        out["reached"] = out["reached"] and rel <= cfg.rel_half_width
    if cfg.accuracy_half_width is not None:
        acc = [float(r["accuracy"]) for r in ok if r.get("accuracy") is not None]
        lo, hi = wilson_interval(min(max(sum(acc), 0.0), len(acc)), len(acc), cfg.confidence)
        half = math.inf if lo is None or hi is None else (hi - lo) / 2
        out["accuracy_half_width"] = None if math.isinf(half) else round(half, 5)
        out["reached"] = out["reached"] and half <= cfg.accuracy_half_width
    return out


def _point(vals: Sequence[float], stat: str) -> float:
    import numpy as np

    q = stat_quantile(stat)
    return float(np.mean(vals)) if q is None else float(np.percentile(vals, q, method="linear"))


class PrecisionTracker:
    """Decides, per configuration, when to check the rule and whether it stopped."""

    def __init__(self, cfg: PrecisionConfig | None, cap: int):
        self.cfg, self.cap = cfg, cap
        self._next: dict[str, int] = {}
        self.status: dict[str, dict[str, Any]] = {}

    def due(self, key: str, n: int) -> bool:
        """Whether :meth:`done` may say yes at ``n`` samples (cheap: no rows needed)."""
        if self.cfg is None or n >= self.cap:
            return n >= self.cap
        return n >= self._next.get(key, self.cfg.min)

    def done(self, key: str, rows: Sequence[Mapping[str, Any]]) -> bool:
        """True when ``key`` measured enough: the rule holds, or ``cap`` samples."""
        n = len(rows)
        if self.cfg is None:
            return n >= self.cap
        if n >= self._next.get(key, self.cfg.min) or n >= self.cap:
            state = precision_of(rows, self.cfg)
            self._next[key] = max(n + 1, math.ceil(n * CHECK_GROWTH))
            self.status[key] = state | {"samples_needed": n}
            if state["reached"] or n >= self.cap:
                return True
        return False

    def record_entry(self, key: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
        """The record's ``precision`` block (None without ``run.precision``)."""
        if self.cfg is None:
            return None
        state = self.status.get(key) or precision_of(rows, self.cfg) | {"samples_needed": len(rows)}
        return {"rule": self.cfg.rule(), **state}
