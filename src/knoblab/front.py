"""The Pareto front of (accuracy, latency) points: the one definition of dominance.

A pure function of two arrays, below every layer that marks a front (the sweep's
``report.md`` in :mod:`knoblab.profiling.report`, the analysis' fronts in
:mod:`knoblab.analysis.pareto`), so that profiling never imports analysis.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["pareto_mask"]


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
