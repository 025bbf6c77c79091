"""``knoblab train [overrides ...]``: Lightning training from ``conf/train.yaml``.

The default preset (``train=reference``) is the recipe that trains the shipped
reference weights; ``train=smoke`` is a tiny run for tests, ``train=toy`` the toy
classifier. Every key under ``train.trainer`` is passed to ``lightning.pytorch.Trainer``
unchanged (add one that the YAML does not list with ``+train.trainer.<arg>=...``).

More: ``train.resume=last`` continues ``output_dir/checkpoints/last.ckpt``;
``train.train_chunk_size=200 train.val_chunk_size=20`` loads in chunks; ``-m
train.optim.lr=1e-3,3e-3`` is a Hydra sweep; ``torchrun --nproc-per-node=2 -m knoblab.cli
train train.trainer.strategy=ddp train.trainer.devices=2`` trains on two processes.

    knoblab train [train=PRESET] [key=value ...] [-m] [-cd DIR -cn NAME] [--cfg job] [--debug]

A run or a ``-m`` sweep can live in your own YAML file: ``knoblab train -cd my_configs -cn
lr_sweep -m``; ``--cfg job`` prints the composed config and runs nothing.

Logs go to ``<output_dir>/logs`` (CSV; ``train.logger=tensorboard|wandb`` when
installed); checkpoints to ``<output_dir>/checkpoints`` (``last.ckpt`` always).
"""

from __future__ import annotations

from typing import Any

from knoblab.console import log_to_stderr
from knoblab.hydra_utils import (
    compose,
    print_config,
    print_help,
    run_multirun,
    split_hydra_flags,
    split_multirun,
    wants_help,
)

#: Shown by ``--help``; tests/commands/test_help_examples.py runs each one.
EXAMPLES = (
    "knoblab train train=smoke train.output_dir=runs/smoke",
    "knoblab train train=smoke train.output_dir=runs/smoke train.resume=last train.trainer.max_epochs=3",
    "knoblab train train=toy train.optim.lr=3e-3 train.trainer.max_epochs=2 train.output_dir=runs/toy",
)


def _run(cfg: Any) -> int:
    from knoblab.training.runner import run_training

    log_to_stderr()
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
        return print_help(__doc__ or "", "train", argv, examples=EXAMPLES)
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
    if flags.validate:
        from knoblab.commands.validate import validate_train
        from knoblab.hydra_utils import run_validate

        return run_validate("train", validate_train, flags, rest)
    if flags.cfg == "job":
        return print_config(compose(flags.name("train"), rest, flags.config_dir))
    if multirun:
        return run_multirun("train", _run, rest, "knoblab train", flags)
    # under torchrun every rank runs this and composes the same config
    return _run(compose(flags.name("train"), rest, flags.config_dir))
