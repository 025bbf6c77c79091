"""Figures as a reader sees them: each with its confidence interval and its sample count.

The tables of ``analysis.md`` and the uncertainty parts of ``analysis.json`` are built
here from what the analysis read (the records' intervals: ``knoblab.records.aggregate``;
nothing is recomputed). A cell reads ``12.34 [11.90, 12.81]``: the figure, then its
interval at the records' confidence; a figure without an interval (a record written
before intervals and not migrated, or a figure computed from samples) shows alone.

Example:
    >>> ci_cell(12.3456, 11.9, 12.81, 2)
    '12.35 [11.90, 12.81]'
    >>> ci_cell(0.5, float("nan"), float("nan"))
    '0.500'
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from knoblab.analysis.budget import BudgetAnswer
    from knoblab.analysis.load import SweepResults

#: How ``tied_with_front`` is decided (written into analysis.json beside the fronts).
TIED_RULE = (
    "a configuration off the front is tied_with_front when no configuration beats it "
    "beyond noise: A beats D when A dominates D on the estimates and, on accuracy or "
    "latency, A's confidence interval lies wholly on the better side of D's "
    "(knoblab.analysis.pareto.tied_mask); front points are false"
)


def _nan(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def ci_cell(value: Any, lo: Any = None, hi: Any = None, digits: int = 3) -> str:
    """``value [lo, hi]`` with ``digits`` decimals; ``value`` alone when no interval."""
    if _nan(value):
        return "-"
    text = f"{float(value):.{digits}f}"
    if _nan(lo) or _nan(hi):
        return text
    return f"{text} [{float(lo):.{digits}f}, {float(hi):.{digits}f}]"


def _cell(row: pd.Series, col: str, digits: int) -> str:
    return ci_cell(row.get(col), row.get(f"{col}_lo"), row.get(f"{col}_hi"), digits)


def front_table(front: pd.DataFrame, percentile: str) -> pd.DataFrame:
    """The Markdown front: every figure with its interval, the count, front and tie marks."""
    rows = []
    for _, r in front.iterrows():
        mark = "*" if r["on_front"] else ("≈" if r.get("tied_with_front", False) else "")
        rows.append(
            {
                "front": mark,
                "configuration": r["label"],
                "accuracy": _cell(r, "accuracy", 3),
                f"T_total {percentile} ms": ci_cell(
                    r["latency"], r.get("latency_lo"), r.get("latency_hi"), 2
                ),
                "T_total mean ms": _cell(r, "T_total_mean", 2),
                "n": int(r["num_valid_samples"]),
            }
        )
    return pd.DataFrame(rows)


def shares_table(shares: pd.DataFrame) -> pd.DataFrame:
    """The Markdown stage shares: mean ``T_total`` with its interval and count, shares in %."""
    out = pd.DataFrame(
        {
            "configuration": shares["label"],
            "T_total mean ms": [_cell(r, "T_total_mean", 2) for _, r in shares.iterrows()],
            "n": shares["T_total_count"].astype(int),
        }
    )
    for n in ("vision", "prefill", "decode", "other"):
        out[f"{n} %"] = [f"{100 * v:.1f}" for v in shares[f"share_{n}"]]
    out["dominant"] = shares["dominant"]
    return out


def intervals_text(res: SweepResults) -> str:
    """One line: how the intervals of the figures were computed (from the records)."""
    if not res.intervals:
        return "no intervals in these records"
    names = {"wilson": "Wilson score (0/1 scores)", "bootstrap": "bootstrap of the mean"}
    settings = dict.fromkeys(
        f"{b.get('method')}, {100 * float(b.get('confidence') or 0):g}% confidence, "
        f"{b.get('resamples')} resamples, seed {b.get('seed')}"
        for b in res.intervals
    )
    acc = dict.fromkeys(
        names.get(str(b.get("accuracy")), str(b.get("accuracy"))) for b in res.intervals
    )
    migrated = any(b.get("migrated_from") for b in res.intervals)
    return (
        "; ".join(settings)
        + f"; accuracy: {' or '.join(acc)} by configuration"
        + ("; some computed when a v2 record was read" if migrated else "")
    )


def uncertainty_json(res: SweepResults) -> dict[str, Any]:
    """analysis.json's ``intervals`` block: settings, percentiles, and the tie rule."""
    return {
        "records": res.intervals,
        "description": intervals_text(res),
        "percentiles": list(res.percentiles),
        "tied_with_front": TIED_RULE,
    }


def budget_json(b: BudgetAnswer | None) -> dict[str, Any] | None:
    """The budget answer for analysis.json, with its intervals and confidence."""
    if b is None:
        return None
    keys = (
        "budget_ms",
        "percentile",
        "label",
        "knobs",
        "accuracy",
        "latency_ms",
        "source",
        "latency_band",
        "note",
        "num_samples",
        "confidence",
        "confidence_best",
        "resamples",
    )
    d = {k: getattr(b, k) for k in keys}
    for name in ("accuracy", "latency"):
        bounds = getattr(b, f"{name}_interval")
        key = "latency_ms" if name == "latency" else name
        d[f"{key}_lo"], d[f"{key}_hi"] = bounds if bounds is not None else (None, None)
    d["confidence_method"] = (
        "share of paired bootstrap resamples of the per-sample rows in which the chosen "
        "configuration meets the budget (confidence) and is still the pick (confidence_best)"
        if b.confidence is not None
        else "none: the answer is predicted, not measured"
    )
    d["message"] = b.message()
    return d
