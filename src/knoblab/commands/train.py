"""``knoblab train [overrides ...]``: Lightning training from ``conf/train.yaml``.

The default preset (``train=reference``) is the recipe that trains the shipped
reference weights; ``train=smoke`` is a tiny run for tests, ``train=toy`` the toy
classifier. Every key under ``train.trainer`` is passed to ``lightning.pytorch.Trainer``
unchanged (add one that the YAML does not list with ``+train.trainer.<arg>=...``).

Examples::

    knoblab train                                        # the reference recipe
    knoblab train train=smoke train.output_dir=/tmp/run
    knoblab train train.trainer.gradient_clip_val=0.5 train.trainer.accumulate_grad_batches=4
    knoblab train train.resume=last                      # continue output_dir/checkpoints/last.ckpt
    knoblab train train.train_chunk_size=200 train.val_chunk_size=20 train.mixing=sequential
    torchrun --nproc-per-node=2 -m knoblab.cli train train.trainer.strategy=ddp train.trainer.devices=2
    knoblab train -m train.optim.lr=1e-3,3e-3            # a Hydra sweep (basic or submitit launcher)
    knoblab train -cd my_configs -cn lr_sweep -m         # the run/sweep in your own YAML file
    knoblab train train=smoke --cfg job                  # print the composed config, run nothing

Logs go to ``<output_dir>/logs`` (CSV; ``train.logger=tensorboard|wandb`` when
installed); checkpoints to ``<output_dir>/checkpoints`` (``last.ckpt`` always).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from knoblab.hydra_utils import (
    compose,
    print_config,
    print_help,
    run_multirun,
    split_hydra_flags,
    split_multirun,
    wants_help,
)


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (a captured or replaced stream too)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _setup_logging() -> None:
    """INFO lines of knoblab (heartbeats, curriculum, chunks) on stderr, once."""
    logger = logging.getLogger("knoblab")
    if not logger.handlers:
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _run(cfg: Any) -> int:
    from knoblab.training.runner import run_training

    _setup_logging()
    result = run_training(cfg)
    if result.trainer.is_global_zero:
        m = result.metrics
        losses = "  ".join(f"{k}={m[k]:.4f}" for k in ("train/loss_epoch", "val/loss") if k in m)
        print(f"knoblab train: done  {losses}")
        print(f"  last checkpoint: {result.last_checkpoint}")
        if result.best_checkpoint and result.best_checkpoint != result.last_checkpoint:
            print(f"  best checkpoint: {result.best_checkpoint}")
        if result.export:
            print(f"  weights: {result.export} (+ {result.export.with_suffix('.json').name})")
    return 0


def main(argv: list[str]) -> int:
    if wants_help(argv):
        return print_help(__doc__ or "", "train", argv)
    flags, rest = split_hydra_flags(argv)
    multirun, rest = split_multirun(rest)
    other = [a for a in rest if a.startswith("--")]
    if other:
        from knoblab.errors import ConfigError

        raise ConfigError(
            "option",
            other[0],
            "Hydra overrides key=value, --config-dir/-cd, --config-name/-cn or --cfg job "
            "(see knoblab train --help)",
        )
    if flags.cfg == "job":
        return print_config(compose(flags.name("train"), rest, flags.config_dir))
    if multirun:
        return run_multirun("train", _run, rest, "knoblab train", flags)
    # under torchrun every rank runs this and composes the same config
    return _run(compose(flags.name("train"), rest, flags.config_dir))
