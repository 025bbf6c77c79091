"""The LightningModule: one model family's network and loss, optimizer and schedule from config.

``KnobLabModule(model_kind, model_config, optim)`` builds the network through
``knoblab.training.tasks.build_task`` (for the reference VLM the loss is next-token
cross-entropy on the answer tokens), trains it with AdamW (or SGD) under
``LinearWarmupCosineAnnealingLR`` stepped once per optimizer step, and writes the
``knoblab`` block (format version, ``{kind, config}``, RNG states) into every
checkpoint. Mixed precision is the Trainer's ``precision`` ("bf16-mixed", "16-mixed");
``compile=True`` runs the network through ``torch.compile``.

NOTE: resuming restores the torch / numpy / python RNG states saved in the checkpoint
(Lightning does not), so a model with dropout resumes with the same losses as an
uninterrupted run. Loading a checkpoint of an older format upgrades it in memory
(``on_load_checkpoint``) with one ``FutureWarning``; a checkpoint of another model is
a one-line ``CheckpointError``.

Example:
    >>> m = KnobLabModule("toy", {"dim": 8}, {"lr": 1e-2, "warmup_steps": 2, "max_steps": 20})
    >>> m.model.__class__.__name__
    'ToyNet'
"""

from __future__ import annotations

import random
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import lightning.pytorch as L
import numpy as np
import torch

from knoblab._compat.lightning import attached_trainer
from knoblab._compat.torch import set_last_lr
from knoblab.config import to_dataclass
from knoblab.errors import CheckpointError, ConfigError
from knoblab.training.checkpoint import load_model_from_checkpoint, load_state_into
from knoblab.training.migrations import CURRENT_FORMAT, migrate
from knoblab.training.schedulers import LinearWarmupCosineAnnealingLR, check_schedule
from knoblab.training.tasks import build_task


@dataclass
class OptimConfig:
    """Optimizer and schedule (config section ``train.optim``)."""

    name: str = "adamw"
    """``adamw`` or ``sgd``."""
    lr: float = 1e-3
    """Peak learning rate (reached at the end of warmup)."""
    weight_decay: float = 0.01
    """Decoupled weight decay; never applied to biases, norms and embeddings' 1-D params."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    momentum: float = 0.9
    """SGD momentum."""
    warmup_steps: int = 0
    """Optimizer steps of linear warmup from ``warmup_start_lr`` to ``lr``."""
    max_steps: int | None = None
    """Last step of the cosine; null: the Trainer's total optimizer steps."""
    warmup_start_lr: float = 0.0
    """Learning rate at step 0 when ``warmup_steps > 0``."""
    eta_min: float = 0.0
    """Learning rate at and after ``max_steps``."""

    def __post_init__(self) -> None:
        if self.name not in ("adamw", "sgd"):
            raise ConfigError("name", self.name, "one of adamw, sgd")
        if not self.lr > 0:
            raise ConfigError("lr", self.lr, "a number > 0")
        if self.weight_decay < 0:
            raise ConfigError("weight_decay", self.weight_decay, "a number >= 0")
        if self.warmup_steps < 0:
            raise ConfigError("warmup_steps", self.warmup_steps, "an integer >= 0")
        if self.max_steps is not None:
            check_schedule(self.warmup_steps, self.max_steps, "train.optim")
        if self.eta_min < 0 or self.eta_min > self.lr:
            raise ConfigError("eta_min", self.eta_min, f"a number in [0, lr={self.lr}]")


def rng_state() -> dict[str, Any]:
    """torch / numpy / python RNG states as tensors and plain types (``weights_only``-safe)."""
    np_state = np.random.get_state()
    py = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },
        "python": {"version": py[0], "state": list(py[1]), "gauss": py[2]},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))


class KnobLabModule(L.LightningModule):
    """Train one model family's network on its loss.

    Args:
        model_kind: a key of ``knoblab.training.tasks.TASKS`` (``reference``, ``toy``).
        model_config: the family's config (plain mapping); written into checkpoints.
        optim: ``OptimConfig`` fields (section ``train.optim``).
        compile: run the network through ``torch.compile``.
        init_weights: start from these weights (a ``.ckpt`` or ``.safetensors``), not random.
    """

    def __init__(
        self,
        model_kind: str,
        model_config: dict[str, Any] | None = None,
        optim: dict[str, Any] | None = None,
        compile: bool = False,
        init_weights: str | None = None,
    ):
        super().__init__()
        self.optim = to_dataclass(optim or {}, OptimConfig, "train.optim")
        self.task = build_task(model_kind, model_config or {})
        # hparams are plain types so that checkpoints load with weights_only=True
        self.save_hyperparameters(
            {
                "model_kind": model_kind,
                "model_config": dict(self.task.config),
                "optim": {
                    k: (list(v) if isinstance(v, tuple) else v)
                    for k, v in asdict(self.optim).items()
                },
                "compile": bool(compile),
                "init_weights": init_weights,
            }
        )
        self.model = self.task.model
        if init_weights:
            src = load_model_from_checkpoint(init_weights, expected_kind=model_kind)
            load_state_into(self.model, src.state_dict(), init_weights)
        # not registered as a submodule: state_dict keys stay "model.*" with or without compile
        self.__dict__["_run_model"] = torch.compile(self.model) if compile else self.model

    # --- steps ----------------------------------------------------------------------------

    def forward(self, batch: Any) -> torch.Tensor:
        """The task's loss on ``batch`` (mean over the batch)."""
        return self.task.loss(self.__dict__["_run_model"], batch)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self(batch)
        bs = self.task.batch_size(batch)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=bs)
        return loss

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        loss = self(batch)
        self.log(
            "val/loss",
            loss,
            prog_bar=True,
            on_epoch=True,
            batch_size=self.task.batch_size(batch),
            sync_dist=True,
        )
        return loss

    # --- optimizer ------------------------------------------------------------------------

    def _param_groups(self) -> list[dict[str, Any]]:
        decay, no_decay = [], []
        for _, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            # biases, norm scales and other 1-D parameters are not decayed (as in nanoGPT/litgpt)
            (decay if p.ndim >= 2 else no_decay).append(p)
        return [
            {"params": decay, "weight_decay": self.optim.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    def total_steps(self) -> int:
        """Last step of the cosine: ``optim.max_steps`` or the Trainer's total optimizer steps."""
        if self.optim.max_steps is not None:
            return self.optim.max_steps
        trainer = attached_trainer(self)
        steps = int(trainer.estimated_stepping_batches) if trainer is not None else 0
        if steps <= self.optim.warmup_steps:
            raise ConfigError(
                "train.optim.warmup_steps",
                self.optim.warmup_steps,
                f"an integer < the run's {steps} optimizer steps",
                "or set train.optim.max_steps",
            )
        return steps

    def configure_optimizers(self) -> Any:
        o = self.optim
        if o.name == "adamw":
            opt: torch.optim.Optimizer = torch.optim.AdamW(
                self._param_groups(), lr=o.lr, betas=tuple(o.betas)
            )
        else:
            opt = torch.optim.SGD(self._param_groups(), lr=o.lr, momentum=o.momentum)
        sched = LinearWarmupCosineAnnealingLR(
            opt, o.warmup_steps, self.total_steps(), o.warmup_start_lr, o.eta_min
        )
        return {
            "optimizer": opt,
            "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1},
        }

    def on_train_start(self) -> None:
        """On resume: ``train.optim.max_steps`` wins over the restored schedule; else a warning.

        NOTE: Lightning restores the scheduler's state, its end step included, so a run
        resumed with a larger ``max_epochs`` keeps the first run's cosine: past its end
        the learning rate stays at ``eta_min``. An explicit ``train.optim.max_steps`` is
        applied here (the cosine is stretched to it from the current step); without it
        the restored end is kept (bit-identical resume) and one warning says so.
        """
        if not getattr(attached_trainer(self), "ckpt_path", None):
            return
        sched = self.lr_schedulers()
        if not isinstance(sched, LinearWarmupCosineAnnealingLR):
            return
        if self.optim.max_steps is not None:
            if sched.max_steps != self.optim.max_steps:
                sched.max_steps = self.optim.max_steps
                lrs = sched.get_lr()
                for group, lr in zip(sched.optimizer.param_groups, lrs, strict=True):
                    group["lr"] = lr
                set_last_lr(sched, lrs)
            return
        total = self.total_steps()
        if total > sched.max_steps and self.trainer.is_global_zero:
            warnings.warn(
                f"train.resume: the restored cosine schedule ends at step {sched.max_steps} "
                f"but this run goes to step {total}; the learning rate stays at "
                f"eta_min={self.optim.eta_min} after step {sched.max_steps} "
                f"(set train.optim.max_steps={total} to stretch the cosine)",
                UserWarning,
                stacklevel=2,
            )

    # --- checkpoints ----------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        from knoblab import __version__

        checkpoint["knoblab"] = {
            "format_version": CURRENT_FORMAT,
            "model": {"kind": self.task.kind, "config": dict(self.task.config)},
            "knoblab_version": __version__,
            "rng": rng_state(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Upgrade older formats in place before Lightning loads the state dict.
        _, old = migrate(checkpoint, "checkpoint")
        if old < CURRENT_FORMAT:
            warnings.warn(
                f"checkpoint format {old} is deprecated and was upgraded in memory to format {CURRENT_FORMAT}; "
                "run `knoblab upgrade-checkpoint PATH` to upgrade the file",
                FutureWarning,
                stacklevel=2,
            )
        desc = checkpoint["knoblab"].get("model") or {}
        if desc.get("kind") != self.task.kind:
            raise CheckpointError(
                f"checkpoint is a checkpoint of another model: model.kind={desc.get('kind')!r}, "
                f"allowed is {self.task.kind!r}"
            )
        sd = checkpoint.get("state_dict") or {}
        own = self.state_dict()
        bad = [k for k in own if k not in sd or tuple(sd[k].shape) != tuple(own[k].shape)]
        if bad or any(k not in own for k in sd):
            k = bad[0] if bad else next(k for k in sd if k not in own)
            raise CheckpointError(
                f"checkpoint is a checkpoint of another model: weight {k} does not match "
                f"model.kind={self.task.kind} with config {self.task.config}"
            )
        if "rng" in checkpoint["knoblab"]:
            set_rng_state(checkpoint["knoblab"]["rng"])
