"""Shared helpers for the profiling tests: a synthetic model and dataset, a sweep config."""

from __future__ import annotations

from typing import Any

import pytest

from knoblab.profiling.synthetic import ListDataset, WaitAdapter

KNOBS = {"tier": ["low", "medium", "high"], "top_k": [1, 2, 4], "num_active_blocks": [2, 4, 6]}


def _sweep_cfg(out: Any, n: int | None = 6, design: str = "balanced", **run: Any) -> dict[str, Any]:
    """A ``profile`` config for ``run_sweep`` with a synthetic dataset."""
    return {
        "dataset": {
            "name": "synthetic",
            "sampling": {
                "num_samples_per_epoch": n,
                "num_epochs": 1,
                "randomize": False,
                "seed": 1,
            },
        },
        "knobs": dict(KNOBS),
        "design": {"name": design},
        "run": {
            "output_dir": str(out),
            "warmup_runs": 1,
            "num_runs_per_sample": 2,
            "progress": False,
            **run,
        },
    }


@pytest.fixture
def adapter() -> WaitAdapter:
    return WaitAdapter(vision_ms=0, prefill_ms=0, decode_ms=0)


@pytest.fixture
def dataset() -> ListDataset:
    return ListDataset.synthetic(10)


@pytest.fixture(name="sweep_cfg")
def sweep_cfg_fixture() -> Any:
    """``sweep_cfg(out, n=6, design="balanced", **run)``: a profile config (a function)."""
    return _sweep_cfg
