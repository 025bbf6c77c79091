"""Run by tests/training/test_chunked_lightning.py under torchrun (2 CPU processes, gloo).

Trains 5 chunks straight, then 2 chunks + checkpoint + 3 resumed chunks, and writes the
sample ids each rank saw to ``<out>/rank<r>.json``. Not collected by pytest (no test_ prefix).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from knoblab.training.chunked import ChunkedDataModule

warnings.filterwarnings("ignore")


class IdDataset(torch.utils.data.Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"id": i, "x": torch.tensor([i / self.n])}


class Recorder(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Linear(1, 1)
        self.train_ids: list[list[int]] = []
        self.val_ids: list[list[int]] = []

    def training_step(self, batch, batch_idx):
        self.train_ids.append(batch["id"].tolist())
        return self.w(batch["x"]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        if not self.trainer.sanity_checking:
            self.val_ids.append(batch["id"].tolist())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def dm() -> ChunkedDataModule:
    return ChunkedDataModule(
        IdDataset(60),
        IdDataset(13),
        batch_size=4,
        train_chunk_size=3,
        val_chunk_size=1,
        shuffle=True,
        seed=5,
    )


def fit(model, max_epochs, ckpt_dir=None, ckpt_path=None) -> None:
    callbacks = (
        [ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0)] if ckpt_dir else []
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=max_epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=bool(ckpt_dir),
        callbacks=callbacks,
    )
    trainer.fit(model, datamodule=dm(), ckpt_path=ckpt_path)


def main(out: Path) -> None:
    straight, first, second = Recorder(), Recorder(), Recorder()
    fit(straight, 5)
    fit(first, 2, ckpt_dir=out / "ckpt")
    fit(second, 5, ckpt_path=str(out / "ckpt" / "last.ckpt"))
    rank = torch.distributed.get_rank()
    record = {
        "straight_train": straight.train_ids,
        "straight_val": straight.val_ids,
        "first_train": first.train_ids,
        "first_val": first.val_ids,
        "second_train": second.train_ids,
        "second_val": second.val_ids,
    }
    (out / f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
