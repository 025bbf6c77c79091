"""The per-chunk log lines of `knoblab train`: a train chunk line with weighted mixing too."""

from __future__ import annotations

import logging
import re

import lightning.pytorch as L
import numpy as np

from knoblab.training.callbacks import weighted_chunk_line
from knoblab.training.runner import run_training

from .conftest import toy_cfg


class DrawnCounts(L.Callback):
    """Per epoch: the draws per dataset the training sampler actually served."""

    def __init__(self) -> None:
        self.counts: dict[int, list[int]] = {}

    def on_train_epoch_end(self, trainer, pl_module):
        s = trainer.datamodule.sampler
        drawn = s.dataset_of(np.fromiter(iter(s), dtype=np.int64))
        self.counts[trainer.current_epoch] = np.bincount(drawn, minlength=len(s.names)).tolist()


def test_weighted_mixing_logs_train_and_val_chunks(tmp_path, caplog):
    seen = DrawnCounts()
    over = [
        "train.train_chunk_size=3",
        "train.val_chunk_size=2",
        "train.trainer.max_epochs=3",
        "train.datasets.noisy.weight=3.0",
    ]
    with caplog.at_level(logging.INFO, logger="knoblab"):
        run_training(toy_cfg(tmp_path, *over), callbacks=[seen])
    train = [m for m in caplog.messages if m.startswith("train chunk")]
    val = [m for m in caplog.messages if m.startswith("val chunk")]
    assert len(train) == 3 and len(val) == 3
    for k, line in enumerate(train):
        m = re.fullmatch(
            rf"train chunk {k}, weighted draws: 48 samples \(clean (\d+), noisy (\d+)\)", line
        )
        assert m, line
        assert [int(m.group(1)), int(m.group(2))] == seen.counts[k]  # what was served
    assert sum(seen.counts[0]) == 48 and seen.counts[0][1] > seen.counts[0][0]  # weight 3:1


def test_no_weighted_line_without_chunks_or_with_sequential_mixing() -> None:
    class DM:
        mixing, train_chunk_size, sampler = "weighted", None, object()

    assert weighted_chunk_line(DM(), 0) is None
    DM.mixing, DM.train_chunk_size = "sequential", 3
    assert weighted_chunk_line(DM(), 0) is None
    assert weighted_chunk_line(None, 0) is None
