"""Fails loudly when a Lightning release changes how knoblab._compat.lightning gets Ctrl-C back."""

from __future__ import annotations

import logging

import lightning.pytorch as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from knoblab._compat.lightning import fit_interrupt_as_keyboard_interrupt, rank_zero_logger


class _CtrlC(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        raise KeyboardInterrupt

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _trainer():
    return L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def _loader():
    return DataLoader(TensorDataset(torch.zeros(4, 2)), batch_size=2)


def test_lightning_still_exits_1_on_ctrl_c_and_marks_the_trainer_interrupted():
    trainer = _trainer()
    with pytest.raises(SystemExit) as exc:
        trainer.fit(_CtrlC(), _loader())
    assert exc.value.code == 1 and trainer.interrupted


def test_the_exit_becomes_a_keyboard_interrupt_again():
    trainer = _trainer()
    with pytest.raises(KeyboardInterrupt):
        with fit_interrupt_as_keyboard_interrupt(trainer):
            trainer.fit(_CtrlC(), _loader())


def test_other_exits_pass_unchanged():
    with pytest.raises(SystemExit):
        with fit_interrupt_as_keyboard_interrupt(_trainer()):
            raise SystemExit(3)


def test_rank_zero_info_writes_to_the_logger(caplog):
    from lightning.pytorch.utilities import rank_zero_info

    assert isinstance(rank_zero_logger(), logging.Logger)
    seen = []

    class Keep(logging.Filter):
        def filter(self, record):
            seen.append(str(record.msg))
            return True

    f = Keep()
    rank_zero_logger().addFilter(f)
    try:
        with caplog.at_level(logging.INFO):
            rank_zero_info("knoblab compat probe")
    finally:
        rank_zero_logger().removeFilter(f)
    assert "knoblab compat probe" in seen
