"""E1 — stage decomposition: each stage's share of ``T_total`` and how stages scale with tokens.

Two questions a sweep answers here: which stage dominates each configuration
(vision encoder, LLM prefill, LLM decode, and the rest of ``T_total``), and how
prefill grows with input tokens (vision + text) and decode with output tokens.

NOTE: scaling fits are made within groups of equal ``(top_k, num_active_blocks)``,
because those knobs change the cost per token; a fit pooled over all
configurations mixes slopes and says little (it is reported too, as ``all``).
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

import numpy as np
import pandas as pd
from scipy import stats

from knoblab.analysis.load import STAGES, SweepResults

STAGE_NAMES = {
    "T_vision_total": "vision",
    "T_LLM_prefill": "prefill",
    "T_LLM_decode": "decode",
    "other": "other",
}
GROUP_KNOBS = ("top_k", "num_active_blocks")


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
    if x.size < 2 or np.ptp(x) == 0:
        return LinearFit(math.nan, float(np.mean(y)) if y.size else math.nan, math.nan, int(x.size))
    r = stats.linregress(x, y)
    r2 = float(r.rvalue**2) if np.ptp(y) > 0 else 1.0
    return LinearFit(float(r.slope), float(r.intercept), r2, int(x.size))


def stage_shares(res: SweepResults) -> pd.DataFrame:
    """Per configuration: mean of each stage (ms), its share of mean ``T_total``, the dominant stage.

    Columns: ``config``, ``label``, ``T_total_mean``, ``<stage>_mean`` and ``share_<name>``
    for name in vision, prefill, decode, other; ``dominant``. Sorted by ``T_total_mean``.
    """
    c = res.configs
    out = c[["config", "label", "T_total_mean", *[f"{s}_mean" for s in STAGES]]].copy()
    total = out["T_total_mean"].replace(0, np.nan)
    for s in STAGES:
        out[f"share_{STAGE_NAMES[s]}"] = out[f"{s}_mean"] / total
    out["other_mean"] = out["T_total_mean"] - out[[f"{s}_mean" for s in STAGES]].sum(axis=1)
    out["share_other"] = out["other_mean"] / total
    shares = out[[f"share_{n}" for n in STAGE_NAMES.values()]]
    out["dominant"] = shares.idxmax(axis=1).str.removeprefix("share_")
    return out.sort_values("T_total_mean").reset_index(drop=True)


def scaling_data(res: SweepResults) -> pd.DataFrame:
    """Per-sample rows with ``input_tokens`` (actual vision + text) and a ``group`` label."""
    s = res.samples.copy()
    s["input_tokens"] = s["actual_vision_tokens"] + s["input_text_tokens"]
    s["group"] = [f"k={k} B={b}" for k, b in zip(s["top_k"], s["num_active_blocks"], strict=True)]
    return s


def scaling_fits(res: SweepResults) -> pd.DataFrame:
    """Prefill vs input tokens and decode vs output tokens, per ``(top_k, blocks)`` group and pooled.

    Columns: ``stage`` (prefill/decode), ``x`` (input_tokens/output_tokens), ``group``
    (``k=4 B=12`` or ``all``), ``top_k``, ``num_active_blocks``, ``slope`` (ms per token),
    ``intercept`` (ms), ``r2``, ``n``.
    """
    s = scaling_data(res)
    rows = []
    for stage, x in (("T_LLM_prefill", "input_tokens"), ("T_LLM_decode", "output_tokens")):
        groups = [("all", None, None, s)]
        groups += [
            (f"k={k} B={b}", k, b, g)
            for (k, b), g in s.groupby(list(GROUP_KNOBS), sort=True)  # type: ignore[misc]
        ]
        for label, k, b, g in groups:
            f = fit_line(g[x].to_numpy(), g[stage].to_numpy())
            rows.append(
                {
                    "stage": STAGE_NAMES[stage],
                    "x": x,
                    "group": label,
                    "top_k": k,
                    "num_active_blocks": b,
                    "slope": f.slope,
                    "intercept": f.intercept,
                    "r2": f.r2,
                    "n": f.n,
                }
            )
    return pd.DataFrame(rows)
