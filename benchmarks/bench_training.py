"""Samples/s of chunked training against plain Lightning training of the same model.

Both runs go through ``knoblab.training.runner.run_training`` with the same model,
data, batch size and number of optimizer steps; ``mixing=sequential`` walks the data
in order. The plain run is one Lightning epoch over a shuffled DataLoader; the chunked
run serves the same number of batches as ``train.train_chunk_size``-batch chunks (one
Lightning epoch each). No validation, checkpoints or logger, so the table measures
loading and training only. Throughput counts samples between the first and the last
training batch of a run (start-up excluded); runs alternate and the median of
``--repeats`` is kept. Goal: chunked >= 0.98x plain.

    python benchmarks/bench_training.py [--steps 400] [--repeats 3]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings

import lightning.pytorch as L
from rich.console import Console
from rich.table import Table

from knoblab.hydra_utils import compose
from knoblab.training.runner import run_training


class Meter(L.Callback):
    """Samples and wall time from the first to the last training batch."""

    def __init__(self) -> None:
        self.t0: float | None = None
        self.t1 = 0.0
        self.samples = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.t0 is None:
            self.t0 = time.perf_counter()
        else:
            self.samples += int(batch["y"].shape[0])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.t1 = time.perf_counter()

    @property
    def rate(self) -> float:
        return self.samples / max(self.t1 - (self.t0 or self.t1), 1e-9)


def run(steps: int, batch: int, chunk: int | None, out: str) -> float:
    epochs = 1 if chunk is None else steps // chunk
    over = [
        "train=toy",
        f"train.output_dir={out}",
        "train.mixing=sequential",
        f"train.datasets.clean.size={steps * batch}",
        "~train.datasets.noisy",
        "~train.val_datasets.val",
        f"train.batch_size={batch}",
        "model.config.hidden=256",
        "train.logger=none",
        "train.checkpoint=null",
        "train.heartbeat_every_n_steps=null",
        "train.curriculum=null",
        f"train.trainer.max_epochs={epochs}",
    ]
    if chunk is not None:
        over.append(f"train.train_chunk_size={chunk}")
    meter = Meter()
    run_training(compose("train", over), callbacks=[meter])
    return meter.rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--chunk", type=int, default=50, help="batches per chunk")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    rates: dict[str, list[float]] = {"plain": [], "chunked": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            rates["plain"].append(run(args.steps, args.batch, None, tmp))
            rates["chunked"].append(run(args.steps, args.batch, args.chunk, tmp))
    base = statistics.median(rates["plain"])
    table = Table(
        title=f"training samples/s: toy MLP, batch {args.batch}, {args.steps} steps, 1 thread"
    )
    for col in ("run", "samples/s (median)", "runs", "ratio vs plain"):
        table.add_column(col, justify="right" if col != "run" else "left")
    for name, label in (
        ("plain", "plain Lightning epoch"),
        ("chunked", f"chunked ({args.chunk} batches/chunk)"),
    ):
        med = statistics.median(rates[name])
        table.add_row(
            label, f"{med:,.0f}", ", ".join(f"{r:,.0f}" for r in rates[name]), f"{med / base:.3f}x"
        )
    Console().print(table)


if __name__ == "__main__":
    main()
