"""Synthetic results directories shared by the analysis tests (written once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from knoblab.analysis.synthetic import write_synthetic_results


@pytest.fixture(scope="session")
def exact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tier sweep, 3 tiers x top_k 2/4/8 x blocks 4/8, latencies exactly the LatencyLaw."""
    return write_synthetic_results(tmp_path_factory.mktemp("exact"), num_samples=30, noise=0.0)


@pytest.fixture(scope="session")
def noisy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same sweep with 3% log-normal timing noise."""
    return write_synthetic_results(
        tmp_path_factory.mktemp("noisy"), num_samples=30, noise=0.03, seed=1
    )


@pytest.fixture(scope="session")
def small_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small noisy sweep (2 tiers x 2 top_k x 2 blocks, 12 samples) for report rendering."""
    return write_synthetic_results(
        tmp_path_factory.mktemp("small"),
        tiers=("low", "high"),
        top_ks=(2, 4),
        blocks=(4, 8),
        num_samples=12,
        noise=0.03,
        seed=2,
    )
