"""``knoblab plan``: preview the dataset sampling plan a run would use.

    knoblab plan [GROUP=OPTION ...] [key=value ...] [-m] [--debug]

Prints the effective settings, the seed in effect, samples per epoch, the total, the
first indices of each epoch (capped by ``preview.max_epochs`` / ``preview.max_indices``)
and any legacy mapping. The work is ``plan_from_config`` + ``render_plan``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Annotated, Any

from knoblab.config import Range, check_int, plain, to_dataclass
from knoblab.errors import ConfigError

CONFIG_NAME = "plan"
#: Shown by ``--help``; tests/commands/test_help_examples.py runs each one.
EXAMPLES = (
    "knoblab plan dataset.size=5000 dataset.sampling.num_samples_per_epoch=100 dataset.sampling.num_epochs=3",
    "knoblab plan dataset/sampling@dataset.sampling=random dataset.sampling.seed=7",
    "knoblab plan repeats=2500 dataset.size=1000   # legacy key: shows the mapping applied",
)


@dataclass
class PreviewConfig:
    """``preview.*``: how much of the plan the table shows."""

    max_epochs: Annotated[int, Range(1)] = 5
    """Epochs listed one per row; the rest are summarised in one row."""
    max_indices: Annotated[int, Range(0)] = 10
    """First indices shown per epoch."""


@dataclass
class PlanConfig:
    """The composed ``knoblab plan`` config (``conf/plan.yaml``)."""

    dataset: dict[str, Any] = field(default_factory=dict)
    """The dataset and its ``sampling``."""
    repeats: Annotated[int, Range(1)] | None = None
    """Deprecated (seed 000): the old Stage-1 sample count."""
    run: dict[str, Annotated[int, Range(1)] | None] = field(default_factory=dict)
    """Only ``run.stage1_repeats`` (deprecated: Stage-2's old sample count) is read."""
    preview: PreviewConfig = field(default_factory=PreviewConfig)
    """How much of the plan the table shows."""


def validate_plan(cfg: Any) -> PlanConfig:
    """``knoblab plan --validate``: the typed config; the dataset builds and the plan resolves."""
    from knoblab.commands.checks import check_dataset

    data = plain(cfg) or {}
    c = to_dataclass(data, PlanConfig, "")
    check_dataset(c.dataset, data)
    return c


def dataset_size(cfg: Any) -> int:
    """``dataset.size`` when the dataset config has one, else the length of the built dataset."""
    data = plain(cfg) or {}
    dataset = data.get("dataset") or {}
    if "size" in dataset:
        size = dataset["size"]
        return check_int("dataset.size", size, 1, hint="a non-empty dataset")
    from knoblab.data.registry import build_dataset

    n = len(build_dataset(dataset))
    if n < 1:
        raise ConfigError(
            "dataset", dataset.get("name", "?"), "a non-empty dataset", "it has 0 samples"
        )
    return n


def plan_from_config(cfg: Any) -> Any:
    """The ``SamplingPlan`` of a composed config (new keys or legacy ``repeats``)."""
    from knoblab.sampling.legacy import resolve_sampling

    return resolve_sampling(cfg, dataset_size(cfg))


def render_plan(plan: Any, max_epochs: int = 5, max_indices: int = 10, title: str = "") -> Any:
    """A rich ``Group`` of two tables: the plan's settings, then its epochs' first indices."""
    from rich.console import Group
    from rich.table import Table

    d = plan.describe()
    settings = Table(title=title or "Sampling plan", show_header=False, title_justify="left")
    settings.add_column("setting", style="bold", no_wrap=True)
    settings.add_column("value", overflow="fold")

    def show(v: Any) -> str:
        return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)

    settings.add_row("dataset size", f"{d['dataset_size']:,}")
    for key in ("num_samples_per_epoch", "num_epochs", "randomize"):
        settings.add_row(f"dataset.sampling.{key}", show(d[key]))
    how = {
        "config": "from dataset.sampling.seed",
        "drawn": f"drawn; replay with dataset.sampling.seed={d['seed']}",
        "state": "from a saved state",
    }[d["seed_source"]]
    settings.add_row("seed in effect", f"{d['seed']} ({how})")
    per_epoch = f"{d['samples_per_epoch']:,}"
    if d["last_epoch_samples"] != d["samples_per_epoch"]:
        per_epoch += f" (last epoch: {d['last_epoch_samples']:,})"
    settings.add_row("samples per epoch", per_epoch)
    settings.add_row("total samples", f"{d['total_samples']:,}")
    settings.add_row("order", d["order"])
    legacy = d["legacy"]
    settings.add_row("legacy mapping", "\n".join(legacy["messages"]) if legacy else "none")

    epochs = Table(title="Epochs", title_justify="left")
    epochs.add_column("epoch", justify="right")
    epochs.add_column("samples", justify="right")
    epochs.add_column(f"first {max_indices} indices" if max_indices else "indices")
    shown = min(plan.num_epochs, max_epochs)
    for e in range(shown):
        n = plan.samples_per_epoch(e)
        start = e * d["samples_per_epoch"]
        head = plan.indices(start, start + min(max_indices, n))  # this epoch's only
        text = ", ".join(map(str, head.tolist()))
        if n > max_indices:
            text += ", ..." if max_indices else "..."
        epochs.add_row(str(e), f"{n:,}", text)
    if plan.num_epochs > shown:
        rest = plan.num_epochs - shown
        epochs.add_row(f"{shown}..{plan.num_epochs - 1}", "", f"({rest:,} more epochs not shown)")
    return Group(settings, epochs)


def run(cfg: Any) -> Any:
    """Build and print the plan of a composed config; returns the plan."""
    from rich.console import Console

    preview = to_dataclass((plain(cfg) or {}).get("preview"), PreviewConfig, "preview")
    # The legacy bridge both logs a WARNING and raises a FutureWarning; the log line is
    # what the user sees (once), the table repeats the mapping.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        plan = plan_from_config(cfg)
    Console().print(render_plan(plan, preview.max_epochs, preview.max_indices))
    return plan


def main(argv: list[str]) -> int:
    """``knoblab plan [overrides]``; ``-m`` sweeps the overrides with Hydra's launcher."""
    from knoblab.hydra_utils import run_command

    return run_command(
        argv, __doc__ or "", CONFIG_NAME, run, "knoblab plan", EXAMPLES, validator=validate_plan
    )
