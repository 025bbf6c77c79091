"""Shared fixtures: one short toy training run whose checkpoint several tests read."""

from __future__ import annotations

from pathlib import Path

import pytest

from knoblab.hydra_utils import compose


def toy_cfg(out: Path, *overrides: str):
    return compose(
        "train",
        [
            "train=toy",
            f"train.output_dir={out}",
            "train.logger=none",
            "train.heartbeat_every_n_steps=null",
            "train.trainer.max_epochs=2",
            "train.samples_per_epoch=64",
            *overrides,
        ],
    )


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory):
    from knoblab.training.runner import run_training

    out = tmp_path_factory.mktemp("toy_run")
    return run_training(toy_cfg(out))
