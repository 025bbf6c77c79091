"""E2 — Pareto fronts of accuracy (higher is better) against latency (lower is better).

``pareto_mask`` is the primitive the sweep runner uses for its report; the rest is the
analysis: the front of a sweep with each point's knobs (latency = ``T_total`` at p50,
p95 (default) or p99), its hypervolume, and knob coupling — the front with one knob
held at each of its values against the free front.

Hypervolume reference point: accuracy 0 and 1.1 x the slowest configuration's latency
(at the chosen percentile) among all configurations analysed together, so the
hypervolumes of the free and every restricted front share one reference.

Noise: each configuration off the front is marked ``tied_with_front`` when no
configuration beats it beyond noise (:func:`tied_mask`, from the records' confidence
intervals): a configuration the measurement cannot tell apart from the front.

Example:
    >>> import pandas as pd
    >>> c = pd.DataFrame({"accuracy": [0.5, 0.8, 0.7], "T_total_p95": [10.0, 20.0, 30.0]})
    >>> pareto_front(c)["on_front"].tolist()
    [True, True, False]
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from knoblab.errors import ConfigError
from knoblab.front import pareto_mask
from knoblab.records import percentile_name

# --- E2: fronts with knob values, hypervolume, knob coupling -----------------------------

#: The percentiles of records that do not name theirs (``run.percentiles``' default).
LATENCY_PERCENTILES = ("p50", "p95", "p99")
#: The reference point's latency is this factor times the slowest configuration's latency,
#: so that the slowest point still adds a strip of area (as in pymoo's common practice of a
#: reference slightly worse than the nadir); its accuracy is 0.
REFERENCE_LATENCY_FACTOR = 1.1


def check_percentile(percentile: str, available: Sequence[str] | None = None) -> str:
    """``percentile`` as its canonical name (``p90``); one line when it is malformed or,
    with ``available`` (the percentiles the records hold), not measured.

    Raises:
        ConfigError: not ``p<q>`` with 0 < q < 100, or not among ``available``.

    Example:
        >>> check_percentile("p90.0", ["p50", "p90"])
        'p90'
    """
    m = re.fullmatch(r"p(\d+(?:\.\d+)?)", str(percentile))
    if not m or not 0 < float(m.group(1)) < 100:
        raise ConfigError(
            "percentile", percentile, "p<q> with 0 < q < 100, e.g. p50, p90, p95, p99"
        )
    name = percentile_name(float(m.group(1)))
    if available is not None and name not in available:
        raise ConfigError(
            "percentile",
            percentile,
            f"one the records hold: {', '.join(available) or 'none'}",
            f"measure it with knoblab profile run.percentiles=[..., {name[1:]}]",
        )
    return name


def available_percentiles(configs: pd.DataFrame, metric: str = "T_total") -> list[str]:
    """The percentile names with a ``<metric>_p<q>`` column in ``configs``, in order."""
    pat = re.compile(rf"{re.escape(metric)}_(p\d+(?:\.\d+)?)")
    names = [m.group(1) for c in configs.columns if (m := pat.fullmatch(str(c)))]
    return sorted(names, key=lambda p: float(p[1:]))


def latency_column(
    percentile: str = "p95", metric: str = "T_total", available: Sequence[str] | None = None
) -> str:
    """The configs column for a latency percentile: ``T_total_p95``.

    Raises:
        ConfigError: ``percentile`` is malformed or (with ``available``) not measured.
    """
    return f"{metric}_{check_percentile(percentile, available)}"


def _bounds(df: pd.DataFrame, col: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(estimate, lo, hi) of ``col``; a missing interval is the estimate itself."""
    x = df[col].to_numpy(float)
    lo = df[f"{col}_lo"].to_numpy(float) if f"{col}_lo" in df else np.full_like(x, np.nan)
    hi = df[f"{col}_hi"].to_numpy(float) if f"{col}_hi" in df else np.full_like(x, np.nan)
    return x, np.where(np.isnan(lo), x, lo), np.where(np.isnan(hi), x, hi)


def tied_mask(
    accuracy: tuple[np.ndarray, np.ndarray, np.ndarray],
    latency: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> np.ndarray:
    """True for each configuration off the front that no configuration beats beyond noise.

    ``accuracy`` and ``latency`` are ``(estimate, lo, hi)`` arrays (the confidence
    intervals). Configuration A *beats D beyond noise* when A dominates D on the
    estimates (as in :func:`pareto_mask`) and, on at least one objective, A's interval
    lies wholly on the better side of D's: ``A.acc_lo > D.acc_hi`` or
    ``A.lat_hi < D.lat_lo``. A dominated configuration that nothing beats beyond noise
    is ``tied_with_front``: its intervals overlap those of every configuration that
    dominates it on both objectives, so the measurement cannot rule it off the front.
    Points on the front are False (they are the front); NaN estimates are False.

    Example:
        >>> est = lambda x, w: (np.array(x), np.array(x) - w, np.array(x) + w)
        >>> tied_mask(est([0.80, 0.79, 0.50], 0.02), est([10.0, 10.5, 30.0], 1.0)).tolist()
        [False, True, False]
    """
    acc, acc_lo, acc_hi = accuracy
    lat, lat_lo, lat_hi = latency
    front = pareto_mask(acc, lat)
    valid = ~(np.isnan(acc) | np.isnan(lat))
    # [a, d]: configuration a against configuration d
    dominates = (
        (acc[:, None] >= acc[None, :])
        & (lat[:, None] <= lat[None, :])
        & ((acc[:, None] > acc[None, :]) | (lat[:, None] < lat[None, :]))
    )
    beyond = (acc_lo[:, None] > acc_hi[None, :]) | (lat_hi[:, None] < lat_lo[None, :])
    beaten = (dominates & beyond & valid[:, None]).any(axis=0)
    return valid & ~front & ~beaten


def reference_point(latency: Sequence[float]) -> tuple[float, float]:
    """(accuracy, latency) reference for hypervolume: (0, 1.1 x the slowest latency)."""
    lat = np.asarray(latency, dtype=float)
    return 0.0, float(np.nanmax(lat)) * REFERENCE_LATENCY_FACTOR


def hypervolume(
    accuracy: Sequence[float], latency: Sequence[float], ref: tuple[float, float]
) -> float:
    """Area (accuracy x ms) that the points dominate inside the box bounded by ``ref``.

    ``ref = (ref_accuracy, ref_latency)``: only points more accurate than ``ref_accuracy`` and
    faster than ``ref_latency`` count. Larger is better; it is comparable only between
    fronts measured against the same reference point.

    Example:
        >>> hypervolume([0.5, 0.8], [10, 20], ref=(0.0, 30.0))
        13.0
    """
    acc = np.asarray(accuracy, dtype=float)
    lat = np.asarray(latency, dtype=float)
    ref_acc, ref_lat = ref
    keep = pareto_mask(acc, lat) & (acc > ref_acc) & (lat < ref_lat)
    a, t = acc[keep], lat[keep]
    order = np.lexsort((-a, t))  # by latency, then most accurate first
    area, prev = 0.0, ref_acc
    for i in order:
        if a[i] > prev:
            area += (a[i] - prev) * (ref_lat - t[i])
            prev = a[i]
    return float(area)


def pareto_front(configs: pd.DataFrame, percentile: str = "p95") -> pd.DataFrame:
    """Configurations with ``latency`` (T_total at ``percentile``) and ``on_front``, fastest first.

    Keeps every input column (knob values, label, accuracy) and adds ``latency``,
    ``latency_lo`` / ``latency_hi`` (its interval: NaN when the configs have none),
    ``on_front`` and ``tied_with_front`` (:func:`tied_mask`).

    Raises:
        ConfigError: a percentile the configs do not hold (names those they hold).
    """
    col = latency_column(percentile, available=available_percentiles(configs))
    out = configs.copy()
    out["latency"] = out[col].astype(float)
    nan = np.full(len(out), np.nan)
    out["latency_lo"] = out[f"{col}_lo"].astype(float) if f"{col}_lo" in out else nan
    out["latency_hi"] = out[f"{col}_hi"].astype(float) if f"{col}_hi" in out else nan
    acc, lat = _bounds(out, "accuracy"), _bounds(out, col)
    out["on_front"] = pareto_mask(acc[0], lat[0])
    out["tied_with_front"] = tied_mask(acc, lat)
    return out.sort_values(["latency", "accuracy"], ascending=[True, False]).reset_index(drop=True)


def coupling(
    configs: pd.DataFrame,
    knobs: Sequence[str],
    percentile: str = "p95",
    ref: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """The front with each knob held at each of its values, against the free front.

    One row per (knob, value): ``n_configs``, ``n_front`` (points on the restricted front),
    ``n_on_free_front`` (of those, how many are also on the free front), ``hypervolume``,
    ``hv_ratio`` (restricted / free: 1.0 means holding the knob there costs nothing),
    ``acc_max`` and ``latency_min`` reachable with the knob held. A first row with
    knob ``free`` gives the free front. ``ref`` defaults to :func:`reference_point` of all
    configurations, so every row is measured against the same point.

    NOTE: a knob whose every value keeps hv_ratio near 1 barely matters; a value with a
    small ratio is one the front avoids, and where its restricted front meets the free
    front (``n_on_free_front``) shows in which latency range that value is optimal.
    """
    from knoblab.analysis.load import knob_values

    front = pareto_front(configs, percentile)
    ref = ref or reference_point(front["latency"])
    free_hv = hypervolume(front["accuracy"], front["latency"], ref)
    rows = [
        {
            "knob": "free",
            "value": "",
            "n_configs": len(front),
            "n_front": int(front["on_front"].sum()),
            "n_on_free_front": int(front["on_front"].sum()),
            "hypervolume": free_hv,
            "hv_ratio": 1.0,
            "acc_max": float(front["accuracy"].max()),
            "latency_min": float(front["latency"].min()),
        }
    ]
    for knob in knobs:
        for value in knob_values(front, knob):
            sub = front[front[knob] == value]
            mask = pareto_mask(sub["accuracy"].to_numpy(float), sub["latency"].to_numpy(float))
            hv = hypervolume(sub["accuracy"], sub["latency"], ref)
            rows.append(
                {
                    "knob": knob,
                    "value": value,
                    "n_configs": len(sub),
                    "n_front": int(mask.sum()),
                    "n_on_free_front": int((mask & sub["on_front"].to_numpy(bool)).sum()),
                    "hypervolume": hv,
                    "hv_ratio": hv / free_hv if free_hv > 0 else float("nan"),
                    "acc_max": float(sub["accuracy"].max()),
                    "latency_min": float(sub["latency"].min()),
                }
            )
    return pd.DataFrame(rows)
