"""The multi-dataset data module: weighted and sequential mixing, chunked loading, curriculum."""

from __future__ import annotations

import lightning.pytorch as L
import numpy as np
import pytest
import torch

from knoblab.errors import ConfigError
from knoblab.training.callbacks import CurriculumCallback, EpochHeartbeat, Heartbeat
from knoblab.training.datamodule import DatasetSpec, MultiDatasetDataModule
from knoblab.training.runner import run_training
from knoblab.training.toy import ToyDataset, build_task

from .conftest import toy_cfg


class Seen(L.Callback):
    """Per epoch: the first feature of every training sample, and the number of val batches."""

    def __init__(self) -> None:
        self.train: dict[int, list[float]] = {}
        self.val_batches: dict[int, int] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.train.setdefault(trainer.current_epoch, []).extend(batch["x"][:, 0].tolist())

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        e = trainer.current_epoch
        self.val_batches[e] = self.val_batches.get(e, 0) + 1


def test_weighted_mixing_with_chunks_one_epoch_per_chunk(tmp_path):
    seen = Seen()
    cfg = toy_cfg(
        tmp_path, "train.train_chunk_size=3", "train.val_chunk_size=2", "train.trainer.max_epochs=3"
    )
    run_training(cfg, callbacks=[seen])
    assert [len(seen.train[e]) for e in range(3)] == [3 * 16] * 3  # chunk of 3 batches of 16
    assert seen.val_batches == {0: 2, 1: 2, 2: 2}  # one validation chunk after each
    assert seen.train[0] != seen.train[1]


def test_sequential_mixing_with_chunks_walks_the_whole_concatenation(tmp_path):
    seen = Seen()
    over = [
        "train.mixing=sequential",
        "train.datasets.clean.size=40",
        "train.datasets.noisy.size=24",
        "train.batch_size=8",
        "train.train_chunk_size=2",  # 16 samples per chunk: one pass = 4 chunks
        "train.trainer.max_epochs=4",
    ]
    run_training(toy_cfg(tmp_path, *over), callbacks=[seen])
    got = sorted(x for e in range(4) for x in seen.train[e])
    clean, noisy = ToyDataset(40, seed=0), ToyDataset(24, seed=1, noise=0.5)
    want = sorted(
        [float(clean[i][0][0]) for i in range(40)] + [float(noisy[i][0][0]) for i in range(24)]
    )
    assert got == pytest.approx(want)  # every sample of both datasets exactly once per pass


def test_curriculum_changes_the_mix_per_epoch():
    task = build_task({})
    dm = MultiDatasetDataModule(
        [DatasetSpec("a", ToyDataset(100), 1.0), DatasetSpec("b", ToyDataset(100, seed=1), 1.0)],
        None,
        task.collate,
        batch_size=10,
        samples_per_epoch=4000,
    )
    cur = CurriculumCallback(
        [{"epoch": 0, "weights": {"a": 9.0}}, {"epoch": 2, "weights": {"a": 1.0, "b": 3.0}}]
    )
    dm.add_epoch_hook(lambda e: cur.apply(dm, e))
    fractions = []
    for epoch in range(4):
        dm.sampler.set_epoch(epoch)
        idx = np.fromiter(dm.sampler, dtype=np.int64)
        fractions.append(float((idx < 100).mean()))
    assert fractions[0] == pytest.approx(0.9, abs=0.03) and fractions[1] == pytest.approx(
        0.9, abs=0.03
    )
    assert fractions[2] == pytest.approx(0.25, abs=0.03) and fractions[3] == pytest.approx(
        0.25, abs=0.03
    )
    assert cur.state_dict()["applied_stage"] == 1
    with pytest.raises(ConfigError, match="increasing epoch order"):
        CurriculumCallback([{"epoch": 2}, {"epoch": 1}])
    with pytest.raises(ConfigError, match=r"weights\.b"):
        CurriculumCallback([{"epoch": 0, "weights": {"b": 0}}])


def test_difficulty_curriculum_reweights_samples():
    task = build_task({})
    ds = ToyDataset(50)
    scores = np.array([ds.score(i) for i in range(50)])
    dm = MultiDatasetDataModule(
        [DatasetSpec("a", ds)], None, task.collate, batch_size=10, samples_per_epoch=20000
    )
    cur = CurriculumCallback(
        [{"epoch": 0, "score_power": 0.0}, {"epoch": 1, "score_power": 4.0}], {"a": scores}
    )
    means = []
    for epoch in (0, 1):
        cur.apply(dm, epoch)
        dm.sampler.set_epoch(epoch)
        means.append(scores[np.fromiter(dm.sampler, dtype=np.int64)].mean())
    # the drawn mean score follows the weights: uniform, then proportional to score**4
    assert means[0] == pytest.approx(scores.mean(), rel=0.01)
    assert means[1] == pytest.approx((scores**5).sum() / (scores**4).sum(), rel=0.01)
    assert means[1] > means[0]


def test_epoch_line_shows_val_loss_only_after_a_validation(tmp_path):
    # Validation every 2nd epoch: epochs 0 and 2 have none, so their val loss is None
    # (the line prints "-"), not epoch 1's figure again.
    ehb = EpochHeartbeat()
    # Any Trainer argument is a plain override of train.trainer (no "+" needed).
    cfg = toy_cfg(tmp_path, "train.trainer.max_epochs=4", "train.trainer.check_val_every_n_epoch=2")
    run_training(cfg, callbacks=[ehb])
    vals = [h["val_loss"] for h in ehb.history]
    assert vals[0] is None and vals[2] is None
    assert vals[1] is not None and vals[3] is not None and vals[1] != vals[3]


def test_heartbeats_report_progress(tmp_path):
    hb, ehb = Heartbeat(every_n_steps=2), EpochHeartbeat()
    run_training(toy_cfg(tmp_path), callbacks=[hb, ehb])
    assert set(hb.last) == {"step", "loss", "lr", "samples_per_s", "eta_s"}
    assert (
        hb.last["step"] % 2 == 0 and hb.last["samples_per_s"] > 0 and np.isfinite(hb.last["loss"])
    )
    assert [h["epoch"] for h in ehb.history] == [0, 1]
    assert ehb.history[-1]["samples"] == 64 and ehb.history[-1]["val_loss"] is not None
    with pytest.raises(ConfigError):
        Heartbeat(0)


def test_weighted_sampler_refuses_lightning_distributed_sampler():
    task = build_task({})
    dm = MultiDatasetDataModule(
        [DatasetSpec("a", ToyDataset(10))], None, task.collate, batch_size=2
    )

    class FakeTrainer:
        global_rank, world_size, limit_train_batches = 0, 2, 1.0

        class _accelerator_connector:  # noqa: N801 - mimics Lightning's attribute
            use_distributed_sampler = True

    dm.trainer = FakeTrainer()
    with pytest.raises(ConfigError, match="use_distributed_sampler"):
        dm.train_dataloader()
    assert torch.is_tensor(
        next(
            iter(
                MultiDatasetDataModule(
                    [DatasetSpec("a", ToyDataset(10))], None, task.collate, batch_size=2
                ).train_dataloader()
            )
        )["x"]
    )


@pytest.mark.multiprocess
def test_curriculum_applies_from_the_first_epoch_with_workers(tmp_path):
    """Lightning builds the first epoch's iterator before it calls set_epoch, and workers
    draw indices at iter(): the first epoch must still be drawn under stage 0's weights."""
    seen = {}
    for workers in (0, 1):
        rec = Seen()
        cfg = toy_cfg(
            tmp_path / str(workers),
            "train.curriculum=[{epoch: 0, weights: {clean: 9}}, {epoch: 1, weights: {noisy: 9}}]",
            f"train.num_workers={workers}",
        )
        run_training(cfg, callbacks=[rec])
        seen[workers] = rec.train
    assert seen[1][0] == pytest.approx(seen[0][0]) and seen[1][1] == pytest.approx(seen[0][1])
