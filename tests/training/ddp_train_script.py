"""Worker for test_ddp: ``torchrun --nproc-per-node=2 ddp_train_script.py OUT``.

Trains the toy model with ``strategy=ddp`` on CPU (gloo) through ``run_training`` and
writes, per rank, the first feature of every sample each training batch held, and a
checksum of the final weights.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning.pytorch as L
import torch

from knoblab.hydra_utils import compose
from knoblab.training.runner import run_training


class Record(L.Callback):
    def __init__(self) -> None:
        self.seen: dict[int, list[float]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.setdefault(trainer.current_epoch, []).extend(batch["x"][:, 0].tolist())


def main() -> None:
    out = Path(sys.argv[1])
    cfg = compose(
        "train",
        [
            "train=toy",
            f"train.output_dir={out}",
            "train.logger=none",
            "train.heartbeat_every_n_steps=null",
            "train.samples_per_epoch=64",
            "train.batch_size=8",
            "train.trainer.max_epochs=2",
            "train.trainer.strategy=ddp",
            "train.trainer.devices=2",
        ],
    )
    rec = Record()
    result = run_training(cfg, callbacks=[rec])
    rank = result.trainer.global_rank
    weights = sum(float(p.double().sum()) for p in result.module.model.parameters())
    data = {"rank": rank, "world": result.trainer.world_size, "seen": rec.seen, "weights": weights}
    (out / f"rank{rank}.json").write_text(json.dumps(data))
    torch.distributed.barrier()


if __name__ == "__main__":
    main()
