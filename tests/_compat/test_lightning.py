"""knoblab._compat.lightning against the installed Lightning."""

from __future__ import annotations

import logging

import lightning.pytorch as L
import pytest

from knoblab._compat.lightning import (
    CLOUD_TIP_PREFIX,
    attached_trainer,
    quiet_cloud_tip,
    set_batch_limit,
    uses_distributed_sampler,
)


def _trainer(**kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


@pytest.mark.parametrize("flag", [True, False])
def test_uses_distributed_sampler_reads_the_trainer_flag(flag: bool) -> None:
    assert uses_distributed_sampler(_trainer(use_distributed_sampler=flag)) is flag


def test_set_batch_limit_overrides_what_the_fit_loop_uses() -> None:
    """The write takes effect: a fit with limit_train_batches=2 then reset to 1.0 runs all 5."""
    import torch
    from torch.utils.data import DataLoader

    class Count(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.steps = 0

        def training_step(self, batch, i):
            self.steps += 1
            return (self.w * batch.float()).sum()

        def train_dataloader(self):
            set_batch_limit(self.trainer, "limit_train_batches", 1.0)
            return DataLoader(torch.arange(10), batch_size=2)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    model = Count()
    _trainer(max_epochs=1, limit_train_batches=2).fit(model)
    assert model.steps == 5
    with pytest.raises(ValueError, match="limit_test_batches"):
        set_batch_limit(_trainer(), "limit_test_batches", 1.0)


def test_quiet_cloud_tip_drops_exactly_the_tip_line() -> None:
    from lightning_utilities.core import rank_zero

    quiet_cloud_tip()
    quiet_cloud_tip()  # idempotent: one filter
    target = rank_zero.log
    assert sum(type(f).__name__ == "_NoCloudTip" for f in target.filters) == 1

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord(target.name, logging.INFO, __file__, 1, msg, None, None)

    assert not target.filter(record(f"{CLOUD_TIP_PREFIX} For seamless cloud uploads ..."))
    assert target.filter(record("GPU available: False"))


def test_lightning_still_logs_the_tip_line_we_filter(caplog) -> None:
    """If Lightning rewords or drops the tip, this fails: update CLOUD_TIP_PREFIX (or drop it)."""
    from lightning_utilities.core import rank_zero

    target = rank_zero.log
    saved = list(target.filters)
    for f in saved:
        target.removeFilter(f)
    try:
        with caplog.at_level(logging.INFO):
            _trainer(max_epochs=1)
    finally:
        for f in saved:
            target.addFilter(f)
    tips = [m for m in caplog.messages if m.startswith(CLOUD_TIP_PREFIX)]
    assert tips, f"Lightning no longer logs a line starting {CLOUD_TIP_PREFIX!r}"


def test_attached_trainer_is_none_before_fit_and_the_trainer_during_it() -> None:
    import torch
    from torch.utils.data import DataLoader

    seen = []

    class Probe(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, i):
            seen.append(attached_trainer(self))
            return (self.w * batch.float()).sum()

        def train_dataloader(self):
            return DataLoader(torch.arange(2), batch_size=2)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    model = Probe()
    assert attached_trainer(model) is None
    with pytest.raises(RuntimeError, match="not attached"):
        model.trainer  # noqa: B018 - the public property raises: the reason for the shim
    trainer = _trainer(max_epochs=1)
    trainer.fit(model)
    assert seen == [trainer]
