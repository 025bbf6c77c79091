"""A ``knoblab train`` run that kills itself (SIGKILL) at a chosen point; for the fault tests.

Usage: ``python _train_driver.py LOSSES KILL [overrides ...]`` where ``LOSSES`` is a file
that gets one ``step loss`` line per training step (appended, so a killed run's lines
stay), and ``KILL`` is ``none``, ``step:N`` (after global step N), ``write:N`` (the N-th
checkpoint write, after the temporary file is complete and before its rename) or
``half:N`` (in the middle of the N-th checkpoint write). It trains through
``run_training`` exactly as ``knoblab train`` does (``train.resume=last`` and all).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import lightning.pytorch as L
import torch

import knoblab.training.checkpoint as ck
from knoblab.hydra_utils import compose
from knoblab.training.runner import run_training


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class _Recorder(L.Callback):
    def __init__(self, path: Path, kill_step: int | None):
        self.path, self.kill_step = path, kill_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # noqa: ANN001
        with open(self.path, "a") as fh:
            fh.write(f"{trainer.global_step} {float(outputs['loss'].detach())!r}\n")
            fh.flush()
            os.fsync(fh.fileno())
        if trainer.global_step == self.kill_step:
            _die()


def _patch_writes(mode: str, n: int) -> None:
    real = torch.save
    count = [0]

    def save(obj, f, *a, **k):  # noqa: ANN001, ANN002, ANN003
        count[0] += 1
        if count[0] == n and mode == "half":
            real(obj, f, *a, **k)
            size = os.path.getsize(f)
            with open(f, "r+b") as fh:
                fh.truncate(size // 2)
            _die()
        real(obj, f, *a, **k)
        if count[0] == n:  # complete, fsynced by nobody yet, never renamed
            _die()

    ck.torch.save = save  # the module's torch is the torch module: patched for this process


def main(argv: list[str]) -> int:
    losses, kill, overrides = Path(argv[0]), argv[1], argv[2:]
    mode, _, n = kill.partition(":")
    if mode in ("write", "half"):
        _patch_writes(mode, int(n))
    kill_step = int(n) if mode == "step" else None
    run_training(compose("train", overrides), callbacks=[_Recorder(losses, kill_step)])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
