"""Resuming with more epochs: the restored cosine ends where it ended, unless optim.max_steps says."""

from __future__ import annotations

import math
import shutil
import warnings

import lightning.pytorch as L
import pytest

from knoblab.training.runner import run_training

from .conftest import toy_cfg


class LRs(L.Callback):
    """(global step, learning rate) at every training batch."""

    def __init__(self) -> None:
        self.lrs: list[tuple[int, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append((trainer.global_step, trainer.optimizers[0].param_groups[0]["lr"]))


def _resume(toy_run, tmp_path, *overrides: str) -> tuple[LRs, list[str]]:
    ckpt = tmp_path / "start.ckpt"
    shutil.copy(toy_run.last_checkpoint, ckpt)  # 2 epochs of 4 steps: the cosine ended at 8
    lrs = LRs()
    cfg = toy_cfg(tmp_path, f"train.resume={ckpt}", "train.trainer.max_epochs=4", *overrides)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_training(cfg, callbacks=[lrs])
    return lrs, [str(w.message) for w in caught if "train.resume" in str(w.message)]


def test_longer_resume_keeps_the_finished_cosine_and_warns(toy_run, tmp_path) -> None:
    lrs, msgs = _resume(toy_run, tmp_path)
    assert [s for s, _ in lrs.lrs] == list(range(8, 16))
    assert all(lr == 0.0 for _, lr in lrs.lrs)  # eta_min
    assert len(msgs) == 1 and "ends at step 8" in msgs[0]
    assert "train.optim.max_steps=16" in msgs[0]


def test_optim_max_steps_stretches_the_cosine_on_resume(toy_run, tmp_path) -> None:
    lrs, msgs = _resume(toy_run, tmp_path, "train.optim.max_steps=16")
    base, warm = 1e-2, 4  # conf/train/toy.yaml
    want = [0.5 * base * (1 + math.cos(math.pi * (s - warm) / (16 - warm))) for s in range(8, 16)]
    assert [lr for _, lr in lrs.lrs] == pytest.approx(want)
    assert msgs == []
