"""Samples/s of chunked training against plain Lightning training of the same model.

Both runs go through ``knoblab.training.runner.run_training`` with the same model,
data, batch size and number of optimizer steps; ``mixing=sequential`` walks the data
in order. The plain run is one Lightning epoch over a shuffled DataLoader; the chunked
run serves the same number of batches as ``train.train_chunk_size``-batch chunks (one
Lightning epoch each). No validation, checkpoints or logger, so the table measures
loading and training only. Throughput counts samples between the first and the last
training batch of a run (start-up excluded); runs alternate. On a shared machine other
jobs only ever slow a run down, so the ratio compares the best (fastest) of
``--repeats`` runs of each; the medians are shown too. Goal: chunked >= 0.98x plain.

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
from rich.table import Table

from knoblab.console import console as wide_console
from knoblab.hydra_utils import compose
from knoblab.training.runner import run_training


class Meter(L.Callback):
    """Samples, wall time and process CPU time from the first to the last training batch."""

    def __init__(self) -> None:
        self.t0: tuple[float, float] | None = None
        self.t1 = (0.0, 0.0)
        self.samples = 0

    @staticmethod
    def _now() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.t0 is None:
            self.t0 = self._now()
        else:
            self.samples += int(batch["y"].shape[0])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.t1 = self._now()

    def rates(self) -> tuple[float, float]:
        """(samples per wall second, samples per CPU second)."""
        t0 = self.t0 or self.t1
        return tuple(self.samples / max(b - a, 1e-9) for a, b in zip(t0, self.t1, strict=True))


def run(steps: int, batch: int, chunk: int | None, out: str, hidden: int) -> tuple[float, float]:
    epochs = 1 if chunk is None else steps // chunk
    over = [
        "train=toy",
        f"train.output_dir={out}",
        "train.mixing=sequential",
        f"train.datasets.clean.size={steps * batch}",
        "~train.datasets.noisy",
        "~train.val_datasets.val",
        f"train.batch_size={batch}",
        f"model.config.hidden={hidden}",
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
    return meter.rates()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--chunk", type=int, default=50, help="batches per chunk")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--hidden", type=int, default=512, help="toy MLP width (heavier = less overhead-bound)"
    )
    args = p.parse_args()
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    rates: dict[str, list[tuple[float, float]]] = {"plain": [], "chunked": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            rates["plain"].append(run(args.steps, args.batch, None, tmp, args.hidden))
            rates["chunked"].append(run(args.steps, args.batch, args.chunk, tmp, args.hidden))

    def summary(name: str) -> tuple[float, float]:
        # best wall rate (other jobs only slow a run down) and median CPU-time rate
        return max(r[0] for r in rates[name]), statistics.median(r[1] for r in rates[name])

    base = summary("plain")
    title = f"training samples/s: toy MLP (hidden {args.hidden}), batch {args.batch}, {args.steps} steps, 1 thread"
    table = Table(title=title)
    cols = ("run", "wall (best)", "CPU-time (median)", "ratio wall", "ratio CPU-time")
    for col in cols:
        table.add_column(col, justify="left" if col == "run" else "right")
    for name, label in (
        ("plain", "plain Lightning epoch"),
        ("chunked", f"chunked ({args.chunk} batches/chunk)"),
    ):
        wall, cpu = summary(name)
        table.add_row(
            label, f"{wall:,.0f}", f"{cpu:,.0f}", f"{wall / base[0]:.3f}x", f"{cpu / base[1]:.3f}x"
        )
    wide_console(160).print(table)


if __name__ == "__main__":
    main()
