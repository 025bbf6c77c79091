"""What ``knoblab analyze`` computed: the one object its report is written from.

Its own module so that :mod:`knoblab.analysis.analyze` (which builds it and asks for the
report) and :mod:`knoblab.analysis.report` (which reads it) do not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from knoblab.analysis.budget import BudgetAnswer
from knoblab.analysis.estimator import Evaluation, LatencyEstimator
from knoblab.analysis.load import SweepResults
from knoblab.analysis.operators import OperatorShares


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
