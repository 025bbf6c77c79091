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


@pytest.fixture(scope="session")
def real_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Records of the REAL runner: the shipped reference model on shapes-vqa, run once.

    2 tiers x top_k 1/2 x blocks 1/2 (8 configurations) of 4 samples, warmup 0: small
    enough for a 2-core CI machine, with every knob varying so E1/E2/E3 have work.
    """
    import torch

    from knoblab.hydra_utils import compose
    from knoblab.profiling.runner import run_sweeps

    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("real")
    cfg = compose(
        "profile",
        [
            "dataset.size=40",
            "dataset.sampling.num_samples_per_epoch=4",
            "knobs.tier=[low,high]",
            "knobs.top_k=[1,2]",
            "knobs.num_active_blocks=[1,2]",
            "design=full",
            "run.warmup_runs=0",
            "run.max_new_tokens=3",
            "run.progress=false",
            f"run.output_dir={out}",
        ],
    )
    try:
        (res,) = run_sweeps(cfg)
    finally:
        torch.set_num_threads(threads)  # the cpu hardware preset sets it process-wide
    return res.out_dir
