"""Training callbacks: heartbeats for long runs, and a curriculum over epochs.

* ``Heartbeat(every_n_steps)``: every N optimizer steps one line with the step, the
  loss, the learning rate, samples/s and the ETA of the run.
* ``EpochHeartbeat()``: one line per epoch (= per chunk when chunked loading is on)
  with the mean training loss, the validation loss, samples and the epoch's samples/s;
  with weighted mixing and chunks also a ``train chunk k, weighted draws: ...`` line at
  the chunk's start (sequential mixing: the chunked loader logs its own).
* ``CurriculumCallback(schedule)``: from the given epochs on, sets new dataset weights
  and/or a new per-sample score power (difficulty) on the data module. Its state
  (schedule and the stage in effect) is saved in checkpoints.

Lines go to the ``knoblab.training`` logger (INFO) on global rank 0 only; the last
values are also kept on the callback (``.last``) for tests and notebooks.

Example:
    >>> cb = CurriculumCallback([{"epoch": 0, "weights": {"easy": 3, "hard": 1}},
    ...                          {"epoch": 4, "weights": {"easy": 1, "hard": 1}}])
    >>> cb.stage_at(5)["weights"]
    {'easy': 1, 'hard': 1}
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from knoblab.config import check_int, check_number
from knoblab.errors import ConfigError
from knoblab.sampling.weighted import weights_from_scores

log = logging.getLogger("knoblab.training")


def _fmt_eta(seconds: float) -> str:
    if not np.isfinite(seconds) or seconds < 0:
        return "?"
    m, s = divmod(int(seconds + 0.5), 60)
    h, m = divmod(m, 60)
    return f"{h:d}:{m:02d}:{s:02d}"


def _batch_size(pl_module: L.LightningModule, batch: Any) -> int:
    task = getattr(pl_module, "task", None)
    if task is not None:
        return int(task.batch_size(batch))
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return int(batch[0].shape[0])
    return 1


def _total_steps(trainer: L.Trainer) -> float:
    try:
        return float(trainer.estimated_stepping_batches)
    except Exception:  # noqa: BLE001 - unknown length (an iterable loader): no ETA
        return float("inf")


class Heartbeat(L.Callback):
    """Every ``every_n_steps`` optimizer steps: step, loss, lr, samples/s, ETA (rank 0).

    Samples/s counts samples of all ranks (per-rank batch size x world size) over the
    wall time since the previous heartbeat.
    """

    def __init__(self, every_n_steps: int = 50):
        check_int("train.heartbeat_every_n_steps", every_n_steps, 1)
        self.every_n_steps = every_n_steps
        self.last: dict[str, float] = {}
        self._t0 = 0.0
        self._samples = 0
        self._last_step = -1

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0, self._samples, self._last_step = time.perf_counter(), 0, trainer.global_step

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self._samples += _batch_size(pl_module, batch) * trainer.world_size
        step = trainer.global_step
        if step == self._last_step or step % self.every_n_steps:
            return
        now = time.perf_counter()
        dt = max(now - self._t0, 1e-9)
        steps_done = max(step - self._last_step, 1)
        loss = outputs["loss"] if isinstance(outputs, Mapping) else outputs
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        eta = (_total_steps(trainer) - step) * dt / steps_done
        self.last = {
            "step": step,
            "loss": float(loss.detach()) if isinstance(loss, torch.Tensor) else float("nan"),
            "lr": float(lr),
            "samples_per_s": self._samples / dt,
            "eta_s": eta,
        }
        self._t0, self._samples, self._last_step = now, 0, step
        if trainer.is_global_zero:
            log.info(
                "step %d  loss %.4f  lr %.3g  %.1f samples/s  ETA %s",
                step,
                self.last["loss"],
                self.last["lr"],
                self.last["samples_per_s"],
                _fmt_eta(eta),
            )


#: Above this many draws per chunk the train chunk line shows weights, not counts.
_COUNT_LIMIT = 2_000_000


def weighted_chunk_line(datamodule: Any, chunk: int) -> str | None:
    """The "train chunk" line of a weighted-mixing data module with chunks, else None.

    NOTE: with weighted mixing a training chunk is not a slice of a pass (the
    ``train chunk k, pass p, samples a..b`` line of sequential mixing) but the next
    ``train_chunk_size`` batches of weighted draws, so the line counts the draws per
    dataset (re-drawn here: the draw is a keyed function of the stream position).

    Example:
        ``train chunk 3, weighted draws: 6400 samples (easy 4788, hard 1612)``
    """
    sampler = getattr(datamodule, "sampler", None)
    if (
        sampler is None
        or getattr(datamodule, "mixing", None) != "weighted"
        or getattr(datamodule, "train_chunk_size", None) is None
    ):
        return None
    total = int(sampler.total_size)
    names = list(sampler.names)
    if total <= _COUNT_LIMIT:
        drawn = sampler.dataset_of(sampler.draw(sampler.epoch, np.arange(total)))
        counts = np.bincount(drawn, minlength=len(names))
        parts = [f"{n} {int(c)}" for n, c in zip(names, counts, strict=True)]
    else:
        w = np.asarray(sampler.dataset_weights, dtype=np.float64)
        parts = [f"{n} {x:.1%}" for n, x in zip(names, w / w.sum(), strict=True)]
    return f"train chunk {chunk}, weighted draws: {total} samples ({', '.join(parts)})"


class EpochHeartbeat(L.Callback):
    """One summary line per epoch (per chunk when chunked): losses, samples, samples/s (rank 0).

    The val loss is the one of this epoch's validation, ``-`` in an epoch without one
    (``check_val_every_n_epoch``), not the last epoch's figure again.
    """

    def __init__(self) -> None:
        self.last: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self._t0 = 0.0
        self._samples = 0
        self._val_epoch = -1  # the epoch whose validation ran last

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._val_epoch = trainer.current_epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0, self._samples = time.perf_counter(), 0
        if trainer.is_global_zero:
            line = weighted_chunk_line(getattr(trainer, "datamodule", None), trainer.current_epoch)
            if line:
                log.info("%s", line)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self._samples += _batch_size(pl_module, batch) * trainer.world_size

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dt = max(time.perf_counter() - self._t0, 1e-9)
        metrics = trainer.callback_metrics

        def get(name: str) -> float | None:
            v = metrics.get(name)
            return float(v) if v is not None else None

        self.last = {
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "train_loss": get("train/loss_epoch"),
            "val_loss": get("val/loss") if self._val_epoch == trainer.current_epoch else None,
            "samples": self._samples,
            "samples_per_s": self._samples / dt,
            "seconds": dt,
        }
        self.history.append(dict(self.last))
        if trainer.is_global_zero:
            val = self.last["val_loss"]
            log.info(
                "epoch %d  step %d  train loss %s  val loss %s  %d samples  %.1f samples/s  %.1fs",
                self.last["epoch"],
                self.last["step"],
                "?" if self.last["train_loss"] is None else f"{self.last['train_loss']:.4f}",
                "-" if val is None else f"{val:.4f}",
                self._samples,
                self.last["samples_per_s"],
                dt,
            )


class LastCheckpoint(ModelCheckpoint):
    """The ``last.ckpt`` of ``knoblab train``; build it with :func:`last_checkpoint`."""

    @property
    def path(self) -> str:
        """The file written (empty before the first save)."""
        return self.best_model_path


def last_checkpoint(dirpath: str, **kwargs: Any) -> L.Callback:
    """``last.ckpt`` written at the end of every training epoch (chunk), whatever any metric does.

    NOTE: ``ModelCheckpoint(save_last=True, monitor=...)`` (Lightning 2.6) rewrites
    ``last.ckpt`` only when a top-k checkpoint is saved, i.e. when the monitored metric
    improves, so ``train.resume=last`` after a worsening epoch replayed it (a chunk, with
    chunked loading). This is a separate checkpoint without a monitor: its one "top-k"
    file is named ``last`` and is overwritten every epoch (no ``-v1`` versions), and it
    saves on train epoch end, after that epoch's validation, so it holds the best
    checkpoint's state too. Its class name gives it a state key of its own beside the
    best-checkpoint callback's.

    ``kwargs``: other ``ModelCheckpoint`` arguments (``every_n_train_steps``, ...).
    """
    return LastCheckpoint(
        dirpath=dirpath,
        filename="last",
        monitor=None,
        save_top_k=1,
        save_last=False,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
        **kwargs,
    )


class CurriculumCallback(L.Callback):
    """A schedule of dataset weights and/or sample-score power over epochs.

    Args:
        schedule: stages ``{"epoch": e, "weights": {name: w}, "score_power": p}``;
            a stage holds from its epoch until the next stage's. ``weights`` may name
            some datasets only (the others keep their weight). ``score_power`` re-weights
            samples by ``score ** p`` using ``scores`` (0: uniform, higher: harder first).
        scores: per training dataset (name -> array of per-sample scores) for ``score_power``.

    The stage is applied at the start of every training epoch, before the epoch's
    first batch is drawn, so resuming at epoch e applies exactly the stage of epoch e.
    """

    def __init__(
        self, schedule: Sequence[Mapping[str, Any]], scores: Mapping[str, np.ndarray] | None = None
    ):
        stages = []
        for i, st in enumerate(schedule):
            unknown = set(st) - {"epoch", "weights", "score_power"}
            if unknown:
                k = sorted(unknown)[0]
                raise ConfigError(
                    f"train.curriculum.schedule[{i}].{k}", st[k], "keys epoch, weights, score_power"
                )
            e = check_int(f"train.curriculum.schedule[{i}].epoch", st.get("epoch"), 0)
            for name, w in dict(st.get("weights") or {}).items():
                check_number(f"train.curriculum.schedule[{i}].weights.{name}", w, greater_than=0)
            stages.append(
                {
                    "epoch": e,
                    "weights": dict(st.get("weights") or {}),
                    "score_power": st.get("score_power"),
                }
            )
        if not stages:
            raise ConfigError("train.curriculum.schedule", [], "at least one stage")
        epochs = [s["epoch"] for s in stages]
        if epochs != sorted(set(epochs)):
            raise ConfigError(
                "train.curriculum.schedule", epochs, "stages in increasing epoch order"
            )
        self.schedule = stages
        self.scores = {k: np.asarray(v, dtype=np.float64) for k, v in (scores or {}).items()}
        self.applied_epoch: int | None = None
        self.applied_stage: int | None = None

    def stage_index(self, epoch: int) -> int | None:
        """Index of the stage in effect at ``epoch`` (None before the first stage)."""
        idx = None
        for i, st in enumerate(self.schedule):
            if st["epoch"] <= epoch:
                idx = i
        return idx

    def stage_at(self, epoch: int) -> dict[str, Any]:
        """The merged settings in effect at ``epoch`` (later stages override earlier ones)."""
        merged: dict[str, Any] = {"weights": {}, "score_power": None}
        for st in self.schedule:
            if st["epoch"] > epoch:
                break
            merged["weights"].update(st["weights"])
            if st["score_power"] is not None:
                merged["score_power"] = st["score_power"]
        return merged

    def apply(self, datamodule: Any, epoch: int) -> None:
        """Set the weights of ``epoch`` on ``datamodule`` (``set_dataset_weights``/``set_sample_weights``)."""
        stage = self.stage_at(epoch)
        if stage["weights"]:
            datamodule.set_dataset_weights(stage["weights"])
        if stage["score_power"] is not None:
            names = list(datamodule.names)
            missing = [n for n in names if n not in self.scores]
            if len(missing) == len(names):
                raise ConfigError(
                    "train.curriculum.score_power",
                    stage["score_power"],
                    "datasets with a score key",
                )
            datamodule.set_sample_weights(
                [
                    None
                    if n not in self.scores
                    else weights_from_scores(self.scores[n], stage["score_power"], 1e-6)
                    for n in names
                ]
            )
        self.applied_epoch, self.applied_stage = epoch, self.stage_index(epoch)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "add_epoch_hook"):
            raise ConfigError("train.curriculum", "set", "a run with a MultiDatasetDataModule")
        if not getattr(self, "_hooked", False):
            # Lightning sets the sampler's epoch before every epoch's first draw, also on resume
            # (where on_train_epoch_start may be skipped): apply the stage right there.
            dm.add_epoch_hook(lambda epoch: self._on_epoch(trainer, dm, epoch))
            self._hooked = True

    def _on_epoch(self, trainer: L.Trainer, dm: Any, epoch: int) -> None:
        before = self.applied_stage
        self.apply(dm, epoch)
        if trainer.is_global_zero and self.applied_stage != before:
            log.info(
                "curriculum: epoch %d -> stage %s %s",
                epoch,
                self.applied_stage,
                self.stage_at(epoch),
            )

    def state_dict(self) -> dict[str, Any]:
        return {
            "schedule": self.schedule,
            "applied_epoch": self.applied_epoch,
            "applied_stage": self.applied_stage,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("schedule") != self.schedule:
            log.warning(
                "curriculum: the checkpoint's schedule differs from the configured one; using the configured one"
            )
        self.applied_epoch = state_dict.get("applied_epoch")
        self.applied_stage = state_dict.get("applied_stage")
