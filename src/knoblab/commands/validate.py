"""``knoblab <command> --validate [overrides]``: compose, check everything, print ``ok``.

A dry run of a command's configuration, at the command's edge: the composed config is
turned into the command's typed config (one dataclass per command below, a typed field
per section: unknown keys, types and ranges are refused with one line), then what can
be checked without running is checked: the design yields configurations from the knob
lists, the sampling plan resolves against the dataset, the dataset builds (its files
exist and parse), the model section names a model that can be built (a Hugging Face
checkpoint's ``config.json`` is read; the reference model loads its small weights), a
training preset builds its model family. Nothing is written and no model runs.

Sections whose keys belong to a dataset format or a model family (``dataset``,
``model``) stay mappings in the typed config: their builders own their keys.

NOTE: a section's schema is its library dataclass (``run: RunConfig``,
``design: DesignConfig``, ...): a key added there (``run.schedule``) is validated here
with no change to this file.

Example:
    >>> from knoblab.hydra_utils import compose
    >>> validate("plan", compose("plan", ["dataset.size=10"])).preview
    PreviewConfig(max_epochs=5, max_indices=10)
    >>> validate("plan", compose("plan", ["preview.max_epochs=0"]))
    Traceback (most recent call last):
    ...
    knoblab.errors.ConfigError: preview.max_epochs=0 is invalid: allowed is an integer >= 1
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from knoblab.commands.checks import check_dataset, check_datasets, check_design, check_model
from knoblab.commands.plan import PlanConfig, validate_plan
from knoblab.config import Range, plain, to_dataclass
from knoblab.errors import ConfigError
from knoblab.profiling.deep import DeepConfig
from knoblab.profiling.design import DesignConfig
from knoblab.profiling.hardware import HardwareConfig
from knoblab.profiling.runner import RunConfig
from knoblab.profiling.tracking import TrackingConfig
from knoblab.training.runner import TrainConfig

__all__ = [
    "VALIDATORS",
    "DeepProfileConfig",
    "ExportDataConfig",
    "PlanConfig",
    "ProfileConfig",
    "TrainCommandConfig",
    "validate",
]


@dataclass
class _SweepSections:
    """The sections ``profile`` and ``deep-profile`` share (one model, its knobs, a design)."""

    dataset: dict[str, Any] = field(default_factory=dict)
    """The dataset (``conf/dataset/``) with its ``sampling``; its format's builder checks its keys."""
    model: dict[str, Any] = field(default_factory=dict)
    """The model (``conf/model/``): ``kind`` and that family's keys; its builder checks them."""
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    """Device, threads and memory settings (``conf/hardware/``)."""
    knobs: dict[str, list[Any] | None] = field(default_factory=dict)
    """Knob name -> values to sweep (null: the knob is not swept)."""
    design: DesignConfig = field(default_factory=DesignConfig)
    """Which knob configurations run (``conf/design/``; deep-profile: unless
    ``deep.configurations`` lists them)."""
    run: RunConfig = field(default_factory=RunConfig)
    """How each configuration is measured and where records go (deep-profile: warmup,
    generation length, progress bar; ``run.output_dir`` unused)."""
    repeats: Annotated[int, Range(1)] | None = None
    """Deprecated (seed 000): the old sample count, mapped to ``dataset.sampling.*``."""


@dataclass
class ProfileConfig(_SweepSections):
    """The composed ``knoblab profile`` config (``conf/profile.yaml``)."""

    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """Where ``run.logger`` logs."""
    datasets: list[str | dict[str, Any]] = field(default_factory=list)
    """Several datasets in one invocation: ``conf/dataset`` names or mappings."""


@dataclass
class DeepProfileConfig(_SweepSections):
    """The composed ``knoblab deep-profile`` config (``conf/deep_profile.yaml``)."""

    deep: DeepConfig = field(default_factory=DeepConfig)
    """The profiler's mode, samples, configurations and outputs."""


@dataclass
class ExportDataConfig:
    """The composed ``knoblab export-data`` config (``conf/export_data.yaml``)."""

    dataset: dict[str, Any] = field(default_factory=dict)
    """The dataset and its ``sampling`` (the order samples are written in)."""
    out_dir: str = ""
    """The folder to write (``manifest.jsonl`` + ``images/``)."""
    num_samples: Annotated[int, Range(1)] | None = None
    """Samples to write; null: the whole plan."""
    overwrite: bool = False
    """Replace an existing ``manifest.jsonl`` in ``out_dir``."""

    def __post_init__(self) -> None:
        if not self.out_dir:
            raise ConfigError("out_dir", self.out_dir, "a folder path")


@dataclass
class ModelSection:
    """``knoblab train``'s ``model`` section."""

    kind: str = "reference"
    """The model family to train (``knoblab.training.tasks.TASKS``)."""
    config: dict[str, Any] = field(default_factory=dict)
    """The family's config (checked by building its task)."""


@dataclass
class TrainCommandConfig:
    """The composed ``knoblab train`` config (``conf/train.yaml``; presets in ``conf/train/``)."""

    seed: int = 0
    """Seeds model init, sampling and Lightning."""
    model: ModelSection = field(default_factory=ModelSection)
    """What is trained."""
    train: TrainConfig | None = None
    """How it is trained (``train=<preset>`` picks one)."""

    def __post_init__(self) -> None:
        if self.train is None:
            raise ConfigError("train", None, "a train section (train=<preset>)")


def validate_profile(cfg: Any) -> ProfileConfig:
    data = plain(cfg) or {}
    c = to_dataclass(data, ProfileConfig, "")
    check_datasets(c.datasets)
    check_dataset(c.dataset, data)
    check_design(c.knobs, c.design)
    check_model(c.model, data.get("hardware") or {})
    return c


def validate_deep_profile(cfg: Any) -> DeepProfileConfig:
    data = plain(cfg) or {}
    c = to_dataclass(data, DeepProfileConfig, "")
    check_dataset(c.dataset, data)
    if c.deep.configurations is None:
        check_design(c.knobs, c.design)
    check_model(c.model, data.get("hardware") or {})
    return c


def validate_export_data(cfg: Any) -> ExportDataConfig:
    data = plain(cfg) or {}
    c = to_dataclass(data, ExportDataConfig, "")
    check_dataset(c.dataset, data)
    out = Path(c.out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError("out_dir", c.out_dir, "a folder (this is a file)")
    return c


def validate_train(cfg: Any) -> TrainCommandConfig:
    from knoblab.training.chunk_rules import ChunkConfig
    from knoblab.training.tasks import build_task

    data = plain(cfg) or {}
    c = to_dataclass(data, TrainCommandConfig, "")
    tc = c.train
    assert tc is not None  # __post_init__
    to_dataclass(
        {"train_chunk_size": tc.train_chunk_size, "val_chunk_size": tc.val_chunk_size},
        ChunkConfig,
        "train",
    )
    build_task(c.model.kind, c.model.config)  # the family exists and takes its config
    return c


#: Config name -> its command's validator.
VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "profile": validate_profile,
    "deep_profile": validate_deep_profile,
    "plan": validate_plan,
    "export_data": validate_export_data,
    "train": validate_train,
}


def validate(config_name: str, cfg: Any) -> Any:
    """The typed config of ``config_name``'s command, every check done; raises the one-line error."""
    if config_name not in VALIDATORS:
        raise ConfigError("config", config_name, f"one of {', '.join(VALIDATORS)}")
    return VALIDATORS[config_name](cfg)
