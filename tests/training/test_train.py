"""knoblab train end to end: smoke run, exact resume, options reaching the Trainer, bad input."""

from __future__ import annotations

import lightning.pytorch as L
import pytest
import torch

from knoblab.cli import main as cli
from knoblab.errors import CheckpointError, ConfigError
from knoblab.hydra_utils import compose
from knoblab.training.runner import TrainConfig, build_trainer, run_training

from .conftest import toy_cfg


class LossRecorder(L.Callback):
    """Every training step's loss, and an optional crash at (epoch, batch)."""

    def __init__(self, crash_at: tuple[int, int] | None = None):
        self.losses: list[float] = []
        self.crash_at = crash_at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.crash_at == (trainer.current_epoch, batch_idx):
            raise RuntimeError("power cut")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"].detach()))


def test_smoke_run_20_steps(tmp_path, capsys):
    """The reference VLM (tiny config) trains for 20 steps through the CLI and leaves a checkpoint."""
    out = tmp_path / "smoke"
    assert cli(["train", "train=smoke", f"train.output_dir={out}", "train.logger=csv"]) == 0
    printed = capsys.readouterr().out
    assert "last checkpoint" in printed
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 20
    assert ckpt["knoblab"]["model"]["kind"] == "reference"
    metrics = (out / "logs").rglob("metrics.csv")
    assert any("train/loss_step" in p.read_text() for p in metrics)
    # the curriculum's state is in the checkpoint
    assert any("CurriculumCallback" in k for k in ckpt["callbacks"])


CURRICULUM = (
    "train.curriculum=[{epoch: 0, weights: {clean: 3}}, {epoch: 2, weights: {clean: 1, noisy: 2}}]"
)


@pytest.mark.parametrize("workers", [0, 1])
def test_stop_and_resume_gives_the_same_losses(tmp_path, workers):
    over = [
        "train.trainer.max_epochs=4",
        "model.config.dropout=0.2",
        CURRICULUM,
        f"train.num_workers={workers}",
    ]
    straight = LossRecorder()
    run_training(toy_cfg(tmp_path / "a", *over), callbacks=[straight])

    crashed = LossRecorder(crash_at=(2, 1))  # dies in the middle of epoch 2
    with pytest.raises(RuntimeError, match="power cut"):
        run_training(toy_cfg(tmp_path / "b", *over), callbacks=[crashed])
    last = tmp_path / "b" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 1  # the last good checkpoint is intact

    resumed = LossRecorder()
    run_training(toy_cfg(tmp_path / "b", *over, "train.resume=last"), callbacks=[resumed])
    per_epoch = len(straight.losses) // 4
    assert len(straight.losses) == 4 * per_epoch and per_epoch > 1
    assert crashed.losses == straight.losses[: 2 * per_epoch + 1]
    assert resumed.losses == straight.losses[2 * per_epoch :]  # bit-identical on CPU


def test_every_trainer_option_reaches_the_trainer(tmp_path):
    given = {
        "accelerator": "cpu",
        "devices": 1,
        "gradient_clip_val": 0.25,
        "gradient_clip_algorithm": "value",
        "accumulate_grad_batches": 3,
        "precision": "bf16-mixed",
        "max_steps": 17,
        "max_epochs": 5,
        "check_val_every_n_epoch": 2,
        "log_every_n_steps": 7,
        "deterministic": True,
    }
    tc = TrainConfig(datasets={"a": {"format": "toy"}}, trainer=given)
    t = build_trainer(tc, [], False, tmp_path)
    assert t.gradient_clip_val == 0.25 and t.gradient_clip_algorithm == "value"
    assert t.accumulate_grad_batches == 3
    assert t.precision == "bf16-mixed"
    assert t.max_steps == 17 and t.max_epochs == 5
    assert t.check_val_every_n_epoch == 2 and t.log_every_n_steps == 7
    assert isinstance(t.strategy, L.strategies.SingleDeviceStrategy)
    ddp = build_trainer(
        TrainConfig(datasets={"a": {}}, trainer={"strategy": "ddp", "devices": 2}),
        [],
        False,
        tmp_path,
    )
    assert isinstance(ddp.strategy, L.strategies.DDPStrategy) and ddp.num_devices == 2


def test_callbacks_from_config(tmp_path):
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

    from knoblab.training.callbacks import (
        CurriculumCallback,
        EpochHeartbeat,
        Heartbeat,
        LastCheckpoint,
    )
    from knoblab.training.runner import build_callbacks

    tc = TrainConfig(
        datasets={"a": {}},
        early_stopping={"patience": 2},
        checkpoint={"save_top_k": 3},
        curriculum=[{"epoch": 0, "weights": {"a": 1.0}}],
    )
    cbs = build_callbacks(tc, tmp_path, {}, has_val=True)
    kinds = {type(c) for c in cbs}
    assert {
        ModelCheckpoint,
        EarlyStopping,
        LearningRateMonitor,
        Heartbeat,
        EpochHeartbeat,
        CurriculumCallback,
    } <= kinds
    es = next(c for c in cbs if isinstance(c, EarlyStopping))
    ck = next(c for c in cbs if type(c) is ModelCheckpoint)
    assert es.patience == 2 and es.monitor == "val/loss" and ck.save_top_k == 3
    # last.ckpt has its own callback, written every epoch whatever val/loss does
    last = next(c for c in cbs if isinstance(c, LastCheckpoint))
    assert last.monitor is None and not ck.save_last


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("train.trainer.gradient_clip_vale=1", "gradient_clip_val"),  # unknown option: closest key
        ("+train.trainer.gradient_clip_vale=1", "did you mean train.trainer.gradient_clip_val"),
        ("train.datasets.clean.weight=0", "train.datasets.clean.weight=0"),
        ("train.datasets.noisy.weight=-2", "train.datasets.noisy.weight=-2"),
        ("train.optim.lr=0", "train.optim.lr=0"),
        ("+train.checkpoint.every_n_epoch=1", "every_n_epochs"),
        ("train.logger=mlflow", "train.logger='mlflow'"),
        ("train.train_chunk_size=0", "train.train_chunk_size=0"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, override, needle):
    rc = cli(["train", "train=toy", f"train.output_dir={tmp_path}", override])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1, err
    assert needle in err


def test_missing_checkpoint_and_checkpoint_of_another_model(tmp_path, toy_run):
    with pytest.raises(CheckpointError, match="not found"):
        run_training(toy_cfg(tmp_path, "train.resume=last"))
    other = toy_cfg(tmp_path, f"train.resume={toy_run.last_checkpoint}", "model.config.hidden=8")
    with pytest.raises(CheckpointError, match="another model"):
        run_training(other)
    with pytest.raises(CheckpointError, match="another model"):
        run_training(
            toy_cfg(
                tmp_path, f"train.init_weights={toy_run.last_checkpoint}", "model.config.hidden=8"
            )
        )


def test_every_preset_validates():
    for preset in ("reference", "smoke", "toy"):
        cfg = compose("train", [f"train={preset}"])
        from knoblab.config import plain, to_dataclass

        tc = to_dataclass(plain(cfg.train), TrainConfig, "train")
        assert tc.datasets and tc.output_dir
    with pytest.raises(ConfigError):
        compose("train", ["train=nope"])


def test_no_lightning_advert_or_pytree_deprecation(tmp_path):
    """Lightning's cloud-logger tip and its pytree FutureWarning do not reach the user."""
    import logging
    import warnings

    from lightning_utilities.core import rank_zero

    class Keep(logging.Handler):
        def __init__(self):
            super().__init__(logging.DEBUG)
            self.lines: list[str] = []

        def emit(self, record):
            self.lines.append(record.getMessage())

    keep = Keep()
    rank_zero.log.addHandler(keep)
    old_level = rank_zero.log.level
    rank_zero.log.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run_training(toy_cfg(tmp_path / "t"))
    finally:
        rank_zero.log.removeHandler(keep)
        rank_zero.log.setLevel(old_level)
    assert any("GPU available" in line for line in keep.lines)  # the handler does see Lightning
    assert not [line for line in keep.lines if "litlogger" in line]
    assert not [w for w in caught if "LeafSpec" in str(w.message)]
