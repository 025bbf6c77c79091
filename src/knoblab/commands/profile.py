"""``knoblab profile``: the accuracy x stage-latency sweep (library: ``knoblab.profiling.run_sweeps``).

With no arguments it profiles the reference model on shapes-vqa with the balanced
design (10 configurations of 100 seeded samples) and writes records and
``report.md`` into ``results/profile/shapes-vqa/``. ``-m``/``--multirun`` sweeps over
comma-separated override values with Hydra's basic launcher (one sweep per point);
with ``hydra/launcher=submitit_slurm`` (package ``hydra-submitit-launcher``) each point
becomes a SLURM job (see docs/profiling.md). ``run.logger=tensorboard|mlflow|wandb`` logs
a row per configuration and the report there (README "Tracking sweeps").

    knoblab profile [GROUP=OPTION ...] [key=value ...] [-m] [--debug]
"""

from __future__ import annotations

from typing import Any

#: Shown by ``--help``; tests/commands/test_help_examples.py runs each one (tiny settings).
EXAMPLES = (
    "knoblab profile design=full knobs.tier=[low] knobs.top_k=[1,2] dataset.sampling.num_samples_per_epoch=20",
    "knoblab profile knobs=reference_tokens dataset/sampling@dataset.sampling=random dataset.sampling.seed=7",
    "knoblab profile dataset=shapes_vqa_hard design=boundary run.logger=tensorboard",
)


def _validate(cfg: Any) -> Any:
    from knoblab.commands.validate import validate_profile

    return validate_profile(cfg)


def _task(cfg: Any) -> None:
    from knoblab.profiling.runner import run_sweeps

    run_sweeps(cfg)


def main(argv: list[str]) -> int:
    from knoblab.hydra_utils import run_command

    return run_command(
        argv, __doc__ or "", "profile", _task, "knoblab profile", EXAMPLES, validator=_validate
    )
