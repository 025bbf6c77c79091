"""E2 — Pareto fronts of accuracy (higher is better) against latency (lower is better).

``pareto_mask`` is the primitive the sweep runner uses for its report; the rest is the
analysis: the front of a sweep with each point's knobs (latency = ``T_total`` at p50,
p95 (default) or p99), its hypervolume, and knob coupling — the front with one knob
held at each of its values against the free front.

Hypervolume reference point: accuracy 0 and 1.1 x the slowest configuration's latency
(at the chosen percentile) among all configurations analysed together, so the
hypervolumes of the free and every restricted front share one reference.

Example:
    >>> import pandas as pd
    >>> c = pd.DataFrame({"accuracy": [0.5, 0.8, 0.7], "T_total_p95": [10.0, 20.0, 30.0]})
    >>> pareto_front(c)["on_front"].tolist()
    [True, True, False]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def pareto_mask(accuracy: Sequence[float], latency: Sequence[float]) -> np.ndarray:
    """True for each point that no other point dominates.

    A point is dominated when another is at least as accurate and at least as fast,
    and strictly better in one of the two. Ties (same accuracy and latency) are all
    kept. NaN points are never on the front.

    Example:
        >>> pareto_mask([0.5, 0.8, 0.7], [10, 20, 30]).tolist()
        [True, True, False]
    """
    acc = np.asarray(accuracy, dtype=float)
    lat = np.asarray(latency, dtype=float)
    if acc.shape != lat.shape:
        raise ValueError(f"accuracy and latency differ in length: {acc.shape} vs {lat.shape}")
    valid = ~(np.isnan(acc) | np.isnan(lat))
    mask = np.zeros(acc.shape, dtype=bool)
    for i in np.nonzero(valid)[0]:
        better_eq = valid & (acc >= acc[i]) & (lat <= lat[i])
        strictly = (acc > acc[i]) | (lat < lat[i])
        mask[i] = not np.any(better_eq & strictly)
    return mask


# --- E2: fronts with knob values, hypervolume, knob coupling -----------------------------

LATENCY_PERCENTILES = ("p50", "p95", "p99")
#: The reference point's latency is this factor times the slowest configuration's latency,
#: so that the slowest point still adds a strip of area (as in pymoo's common practice of a
#: reference slightly worse than the nadir); its accuracy is 0.
REFERENCE_LATENCY_FACTOR = 1.1


def latency_column(percentile: str = "p95", metric: str = "T_total") -> str:
    """The configs column for a latency percentile: ``T_total_p95``.

    Raises:
        ConfigError: ``percentile`` is not one of p50, p95, p99.
    """
    if percentile not in LATENCY_PERCENTILES:
        from knoblab.errors import ConfigError

        raise ConfigError("percentile", percentile, f"one of {', '.join(LATENCY_PERCENTILES)}")
    return f"{metric}_{percentile}"


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

    Keeps every input column (knob values, label, accuracy) and adds ``latency`` and
    ``on_front``.
    """
    col = latency_column(percentile)
    out = configs.copy()
    out["latency"] = out[col].astype(float)
    out["on_front"] = pareto_mask(out["accuracy"].to_numpy(float), out["latency"].to_numpy(float))
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
