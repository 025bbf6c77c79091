"""``knoblab profile``: the accuracy x stage-latency sweep (library: ``knoblab.profiling.run_sweeps``).

With no arguments it profiles the reference model on shapes-vqa with the balanced
design (10 configurations of 100 seeded samples) and writes records and
``report.md`` into ``results/profile/shapes-vqa/``. ``-m``/``--multirun`` sweeps over
comma-separated override values with Hydra's basic launcher (one sweep per point);
with ``hydra/launcher=submitit_slurm`` (package ``hydra-submitit-launcher``) each point
becomes a SLURM job (see docs/profiling.md).

Example:
    knoblab profile design=full knobs.top_k=[1,2] dataset.sampling.num_samples_per_epoch=200
"""

from __future__ import annotations

from typing import Any


def _task(cfg: Any) -> None:
    from knoblab.profiling.runner import run_sweeps

    run_sweeps(cfg)


def main(argv: list[str]) -> int:
    from knoblab.hydra_utils import run_command

    return run_command(argv, __doc__ or "", "profile", _task, "knoblab profile")
