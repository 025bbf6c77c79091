"""Chunked loading inside Lightning: one chunk per epoch, validation chunks, exact resume."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import subprocess
import sys
import warnings
from pathlib import Path

import lightning.pytorch as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from knoblab.errors import ConfigError
from knoblab.training.chunked import ChunkedDataModule

N_TRAIN, N_VAL, BS = 37, 11, 4


class IdDataset(torch.utils.data.Dataset):
    """Sample i is {"id": i, "x": [i / n]}: the id travels with the batch."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"id": i, "x": torch.tensor([i / self.n])}


class Recorder(L.LightningModule):
    """A one-weight model that records the sample ids it trains and validates on."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Linear(1, 1)
        self.train_ids: list[list[int]] = []
        self.val_ids: list[list[int]] = []
        self.sanity_ids: list[int] = []

    def training_step(self, batch, batch_idx):
        self.train_ids.append(batch["id"].tolist())
        return self.w(batch["x"]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        target = self.sanity_ids if self.trainer.sanity_checking else None
        if target is not None:
            target.extend(batch["id"].tolist())
        else:
            self.val_ids.append(batch["id"].tolist())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def trainer(**kw) -> L.Trainer:
    base = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    base.update(kw)
    return L.Trainer(**base)


def datamodule(**kw) -> ChunkedDataModule:
    args = dict(batch_size=BS, train_chunk_size=3, val_chunk_size=2, shuffle=True, seed=11)
    args.update(kw)
    return ChunkedDataModule(IdDataset(N_TRAIN), IdDataset(N_VAL), **args)


def flat(batches: list[list[int]]) -> list[int]:
    return [i for b in batches for i in b]


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*num_workers.*")
        yield


def test_each_epoch_is_one_train_chunk_and_one_val_chunk():
    model = Recorder()
    trainer(max_epochs=7, num_sanity_val_steps=0).fit(model, datamodule=datamodule())
    assert len(model.train_ids) == 7 * 3 and len(model.val_ids) == 7 * 2
    train, val = flat(model.train_ids), flat(model.val_ids)
    assert len(train) == 7 * 12
    # the stream walks the whole training set: each pass of 37 is a permutation
    assert sorted(train[:N_TRAIN]) == list(range(N_TRAIN))
    assert sorted(train[N_TRAIN : 2 * N_TRAIN]) == list(range(N_TRAIN))
    assert train[:N_TRAIN] != train[N_TRAIN : 2 * N_TRAIN]  # a new order per pass
    # validation chunks (8 samples, unshuffled) cycle through the 11 validation samples
    assert val[:N_VAL] == list(range(N_VAL)) and val[N_VAL : 2 * N_VAL] == list(range(N_VAL))


def test_sanity_check_does_not_consume_a_validation_chunk():
    model = Recorder()
    trainer(max_epochs=1, num_sanity_val_steps=1).fit(model, datamodule=datamodule(shuffle=False))
    assert model.sanity_ids == [0, 1, 2, 3]
    assert flat(model.val_ids) == list(range(8))


def run_resumed(
    tmp_path: Path, first_stop: dict, every_step: bool, **dm_kw
) -> tuple[Recorder, Recorder]:
    # every_step: a checkpoint after each training step (the last one is mid-chunk when
    # stopped by max_steps); else Lightning's default, at the end of each epoch.
    every = {"every_n_train_steps": 1} if every_step else {}
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0, **every)
    first = Recorder()
    trainer(callbacks=[ckpt], enable_checkpointing=True, **first_stop).fit(
        first, datamodule=datamodule(**dm_kw)
    )
    second = Recorder()
    trainer(max_epochs=5).fit(
        second, datamodule=datamodule(**dm_kw), ckpt_path=str(tmp_path / "last.ckpt")
    )
    return first, second


@pytest.mark.parametrize("shuffle", [True, False])
def test_resume_two_plus_three_chunks_equals_five(tmp_path, shuffle):
    straight = Recorder()
    trainer(max_epochs=5).fit(straight, datamodule=datamodule(shuffle=shuffle))
    first, second = run_resumed(tmp_path, {"max_epochs": 2}, False, shuffle=shuffle)
    assert len(first.train_ids) == 6
    assert first.train_ids + second.train_ids == straight.train_ids
    assert first.val_ids + second.val_ids == straight.val_ids
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=True)
    state = ckpt["ChunkedDataModule"]
    assert state["train"]["current_chunk"] == 2 and state["val"]["current_chunk"] == 2


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_from_a_mid_chunk_checkpoint(tmp_path, num_workers):
    """With workers the loader prefetches ahead; the checkpoint still counts only the
    batches trained on, so the resumed run starts at the first batch not trained."""
    straight = Recorder()
    trainer(max_epochs=5).fit(straight, datamodule=datamodule())
    # stop after 7 steps: two whole chunks and one batch of the third
    first, second = run_resumed(tmp_path, {"max_steps": 7}, True, num_workers=num_workers)
    # teardown stopped the workers of the chunks Lightning left part-way (not a later gc)
    assert multiprocessing.active_children() == []
    assert len(first.train_ids) == 7
    assert first.train_ids + second.train_ids == straight.train_ids
    assert first.val_ids + second.val_ids == straight.val_ids


def test_without_chunk_sizes_limits_work_as_in_lightning():
    dm = datamodule(train_chunk_size=None, val_chunk_size=None, shuffle=False)
    dm.setup("fit")
    assert type(dm.train_dataloader()) is DataLoader and type(dm.val_dataloader()) is DataLoader
    model = Recorder()
    trainer(max_epochs=3, limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=0).fit(
        model, datamodule=dm
    )
    # the seed's problem, unchanged on purpose: every epoch sees the same first batches
    assert model.train_ids == [[0, 1, 2, 3], [4, 5, 6, 7]] * 3
    assert model.val_ids == [[0, 1, 2, 3]] * 3
    assert dm.state_dict() == {}


def test_chunk_sizes_override_trainer_limits(caplog):
    model = Recorder()
    t = trainer(max_epochs=2, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0)
    with caplog.at_level(logging.INFO, logger="knoblab"):
        t.fit(model, datamodule=datamodule())
    assert len(model.train_ids) == 2 * 3 and len(model.val_ids) == 2 * 2
    assert any("limit_train_batches=1 is ignored" in m for m in caplog.messages)
    assert any("limit_val_batches=1 is ignored" in m for m in caplog.messages)
    assert "train chunk 0, pass 0, samples 0..12 of 37" in caplog.messages
    assert (
        "val chunk 1, pass 0, samples 8..11 of 11 then pass 1, samples 0..5 of 11"
        in caplog.messages
    )


@pytest.mark.parametrize(
    "train,val,train_batches,val_batches",
    [(3, None, 3, 3), (None, 2, 10, 2), (3, 2, 3, 2)],
)
def test_missing_chunk_size_is_the_whole_partition(train, val, train_batches, val_batches):
    dm = datamodule(train_chunk_size=train, val_chunk_size=val)
    dm.setup("fit")
    assert len(dm.train_dataloader()) == train_batches  # 37 samples / 4 = 10 batches
    assert len(dm.val_dataloader()) == val_batches  # 11 / 4 = 3 batches
    model = Recorder()
    trainer(max_epochs=2, num_sanity_val_steps=0).fit(model, datamodule=dm)
    assert len(model.train_ids) == 2 * train_batches and len(model.val_ids) == 2 * val_batches


def test_bad_chunk_size_fails_at_construction():
    with pytest.raises(ConfigError, match=r"train\.val_chunk_size=0"):
        datamodule(val_chunk_size=0)


@pytest.mark.multiprocess
@pytest.mark.slow
def test_ddp_two_processes_resume_exactly(tmp_path):
    """torchrun, 2 CPU processes, gloo: 5 chunks straight == 2 chunks + stop + 3 resumed, per rank."""
    script = Path(__file__).with_name("chunked_ddp_script.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank in runs:
        assert len(rank["straight_train"]) == 5 * 3
        assert rank["first_train"] + rank["second_train"] == rank["straight_train"]
        assert rank["first_val"] + rank["second_val"] == rank["straight_val"]
    # the two ranks split every chunk into equal shares; chunks 0 and 1 (48 of the 60
    # samples, inside the first pass) hold 48 distinct samples
    for a, b in zip(runs[0]["straight_train"], runs[1]["straight_train"], strict=True):
        assert len(a) == len(b) == 4
    both = flat(runs[0]["straight_train"][:6]) + flat(runs[1]["straight_train"][:6])
    assert len(set(both)) == 48 and max(both) < 60


def test_forced_chunked_mode_chunks_validation_whole_and_ignores_limits():
    # a data module that serves training itself but was given train.train_chunk_size
    dm = datamodule(train_chunk_size=None, val_chunk_size=None, chunked=True, shuffle=False)
    model = Recorder()
    trainer(max_epochs=2, limit_val_batches=1, num_sanity_val_steps=0).fit(model, datamodule=dm)
    assert model.val_ids == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]] * 2
    assert len(model.train_ids) == 2 * 10
