"""E1 — stage decomposition: each stage's share of ``T_total`` and how stages scale with tokens.

Two questions a sweep answers here: which stage dominates each configuration
(vision encoder, LLM prefill, LLM decode, and the rest of ``T_total``), and how
prefill grows with input tokens (vision + text) and decode with output tokens.

NOTE: scaling fits are made within groups of equal values of the knobs other than
the vision-token budget (``top_k``, ``num_active_blocks``, or whatever knobs the
records list), because those knobs change the cost per token; a fit pooled over all
configurations mixes slopes and says little (it is reported too, as ``all``). A sweep
of the vision knob alone has only the ``all`` group; token counts a model does not
report leave that fit empty (NaN), never an error.
The other share is ``T_total`` minus the three stages (pre/post-processing, Python
overhead); it can be slightly negative from rounding and is kept as measured.

Example:
    >>> from knoblab.analysis.synthetic import write_synthetic_results
    >>> from knoblab.analysis.load import load_results
    >>> import tempfile
    >>> res = load_results(write_synthetic_results(tempfile.mkdtemp(), num_samples=8))
    >>> fits = scaling_fits(res)
    >>> bool((fits[fits.group != "all"].r2 > 0.999).all())
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from knoblab.analysis.load import SweepResults
from knoblab.records import STAGE_NAMES as _STAGE_NAMES
from knoblab.records import STAGES, VISION_KNOBS

STAGE_NAMES = {**_STAGE_NAMES, "other": "other"}
#: The knobs that group the scaling fits when the records have them (seed 002's E1).
GROUP_KNOBS = ("top_k", "num_active_blocks")
SHORT = {"top_k": "k", "num_active_blocks": "B"}


def group_knobs(res: SweepResults) -> list[str]:
    """The knobs that change the cost per token: every knob but the vision-token budget."""
    return [k for k in res.knobs if k not in VISION_KNOBS and k in res.samples]


@dataclass(frozen=True)
class LinearFit:
    """``y = slope * x + intercept`` by least squares, with R² and the number of points."""

    slope: float
    intercept: float
    r2: float
    n: int

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        return self.slope * np.asarray(x, dtype=float) + self.intercept


def fit_line(x: np.ndarray, y: np.ndarray) -> LinearFit:
    """Ordinary least squares line via ``scipy.stats.linregress``; NaN slope when x is constant."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)  # tokens a model does not report are NaN
    x, y = x[keep], y[keep]
    if x.size < 2 or np.ptp(x) == 0:
        return LinearFit(math.nan, float(np.mean(y)) if y.size else math.nan, math.nan, int(x.size))
    r = stats.linregress(x, y)
    r2 = float(r.rvalue**2) if np.ptp(y) > 0 else 1.0
    return LinearFit(float(r.slope), float(r.intercept), r2, int(x.size))


def stage_shares(res: SweepResults) -> pd.DataFrame:
    """Per configuration: mean of each stage (ms), its share of mean ``T_total``, the dominant stage.

    Columns: ``config``, ``label``, ``T_total_mean``, ``<stage>_mean`` and ``share_<name>``
    for name in vision, prefill, decode, other; ``dominant``; ``T_total_count``; and the
    records' intervals of the means, ``<figure>_mean_lo`` / ``_hi`` (NaN when absent).
    Sorted by ``T_total_mean``.
    """
    c = res.configs
    means = ["T_total_mean", *[f"{s}_mean" for s in STAGES]]
    out = c[["config", "label", *means]].copy()
    total = out["T_total_mean"].replace(0, np.nan)
    for s in STAGES:
        out[f"share_{STAGE_NAMES[s]}"] = out[f"{s}_mean"] / total
    out["other_mean"] = out["T_total_mean"] - out[[f"{s}_mean" for s in STAGES]].sum(axis=1)
    out["share_other"] = out["other_mean"] / total
    shares = out[[f"share_{n}" for n in STAGE_NAMES.values()]]
    out["dominant"] = shares.idxmax(axis=1).str.removeprefix("share_")
    out["T_total_count"] = c["T_total_count"] if "T_total_count" in c else c["num_valid_samples"]
    for m in means:
        for side in ("lo", "hi"):
            col = f"{m}_{side}"
            out[col] = c[col].astype(float) if col in c else np.nan
    return out.sort_values("T_total_mean").reset_index(drop=True)


def _group_label(knobs: list[str], values: tuple[Any, ...]) -> str:
    return " ".join(f"{SHORT.get(k, k)}={v}" for k, v in zip(knobs, values, strict=True))


def scaling_data(res: SweepResults) -> pd.DataFrame:
    """Per-sample rows with ``input_tokens`` (actual vision + text) and a ``group`` label."""
    s = res.samples.copy()
    s["input_tokens"] = s["actual_vision_tokens"] + s["input_text_tokens"]
    knobs = group_knobs(res)
    if knobs:
        s["group"] = [_group_label(knobs, tuple(v)) for v in s[knobs].itertuples(index=False)]
    else:
        s["group"] = "all"
    return s


def scaling_fits(res: SweepResults) -> pd.DataFrame:
    """Prefill vs input tokens and decode vs output tokens, per knob group and pooled.

    Columns: ``stage`` (prefill/decode), ``x`` (input_tokens/output_tokens), ``group``
    (``k=4 B=12`` or ``all``), one column per grouping knob (``top_k``,
    ``num_active_blocks`` when the sweep has them), ``slope`` (ms per token),
    ``intercept`` (ms), ``r2``, ``n``.
    """
    s = scaling_data(res)
    knobs = group_knobs(res)
    rows = []
    for stage, x in (("T_LLM_prefill", "input_tokens"), ("T_LLM_decode", "output_tokens")):
        groups: list[tuple[str, tuple[Any, ...], pd.DataFrame]] = [("all", (None,) * len(knobs), s)]
        if knobs:
            for values, g in s.groupby(knobs, sort=True, dropna=False):
                vals = values if isinstance(values, tuple) else (values,)
                groups.append((_group_label(knobs, vals), vals, g))
        for label, vals, g in groups:
            f = fit_line(g[x].to_numpy(), g[stage].to_numpy())
            row = {"stage": STAGE_NAMES[stage], "x": x, "group": label}
            row |= {k: _plain(v) for k, v in zip(knobs, vals, strict=True)}
            for k in GROUP_KNOBS:
                row.setdefault(k, None)
            row |= {"slope": f.slope, "intercept": f.intercept, "r2": f.r2, "n": f.n}
            rows.append(row)
    return pd.DataFrame(rows)


def _plain(v: Any) -> Any:
    """numpy scalars as Python values (JSON-friendly table cells)."""
    return v.item() if isinstance(v, np.generic) else v
