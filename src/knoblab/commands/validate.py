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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from knoblab.commands.plan import PreviewConfig
from knoblab.config import Range, plain, to_dataclass
from knoblab.errors import ConfigError
from knoblab.profiling.deep import DeepConfig
from knoblab.profiling.design import DesignConfig, make_design
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
class ProfileConfig:
    """The composed ``knoblab profile`` config (``conf/profile.yaml``)."""

    dataset: dict[str, Any] = field(default_factory=dict)
    """The dataset (``conf/dataset/``) with its ``sampling``; its format's builder checks its keys."""
    model: dict[str, Any] = field(default_factory=dict)
    """The model (``conf/model/``): ``kind`` and that family's keys; its builder checks them."""
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    """Device, threads and memory settings (``conf/hardware/``)."""
    knobs: dict[str, list[Any] | None] = field(default_factory=dict)
    """Knob name -> values to sweep (null: the knob is not swept)."""
    design: DesignConfig = field(default_factory=DesignConfig)
    """Which knob configurations run (``conf/design/``)."""
    run: RunConfig = field(default_factory=RunConfig)
    """How each configuration is measured and where records go."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """Where ``run.logger`` logs."""
    datasets: list[str | dict[str, Any]] = field(default_factory=list)
    """Several datasets in one invocation: ``conf/dataset`` names or mappings."""
    repeats: Annotated[int, Range(1)] | None = None
    """Deprecated (seed 000): the old sample count, mapped to ``dataset.sampling.*``."""


@dataclass
class DeepProfileConfig:
    """The composed ``knoblab deep-profile`` config (``conf/deep_profile.yaml``)."""

    dataset: dict[str, Any] = field(default_factory=dict)
    """As ``profile``'s."""
    model: dict[str, Any] = field(default_factory=dict)
    """As ``profile``'s."""
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    """As ``profile``'s."""
    knobs: dict[str, list[Any] | None] = field(default_factory=dict)
    """As ``profile``'s."""
    design: DesignConfig = field(default_factory=DesignConfig)
    """As ``profile``'s (unless ``deep.configurations`` lists them)."""
    run: RunConfig = field(default_factory=RunConfig)
    """Warmup, generation length, progress bar (``run.output_dir`` is unused)."""
    deep: DeepConfig = field(default_factory=DeepConfig)
    """The profiler's mode, samples, configurations and outputs."""
    repeats: Annotated[int, Range(1)] | None = None
    """Deprecated (seed 000), as ``profile``'s."""


@dataclass
class PlanConfig:
    """The composed ``knoblab plan`` config (``conf/plan.yaml``)."""

    dataset: dict[str, Any] = field(default_factory=dict)
    """The dataset and its ``sampling``."""
    repeats: Annotated[int, Range(1)] | None = None
    """Deprecated (seed 000): the old Stage-1 sample count."""
    run: RunConfig = field(default_factory=RunConfig)
    """Only ``run.stage1_repeats`` (deprecated) is read."""
    preview: PreviewConfig = field(default_factory=PreviewConfig)
    """How much of the plan the table shows."""


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


# -- checks beyond the schema ---------------------------------------------------------------


def _check_dataset(section: Mapping[str, Any], data: Mapping[str, Any]) -> int:
    """Build the dataset and resolve its sampling plan; returns the dataset's size."""
    from knoblab.data.registry import build_dataset
    from knoblab.sampling import resolve_sampling

    dataset = build_dataset(section)
    if len(dataset) == 0:
        raise ConfigError("dataset", section.get("name"), "a dataset with at least 1 sample")
    resolve_sampling({**dict(data), "dataset": dict(section)}, len(dataset))
    return len(dataset)


def _check_datasets(entries: list[Any]) -> None:
    """``datasets`` entries name ``conf/dataset`` options (mappings are checked when built)."""
    from importlib import resources

    options = sorted(
        p.name[: -len(".yaml")]
        for p in (resources.files("knoblab.conf") / "dataset").iterdir()
        if p.name.endswith(".yaml")
    )
    for entry in entries:
        if isinstance(entry, str) and entry not in options:
            raise ConfigError(
                "datasets", entry, f"names of conf/dataset options: {', '.join(options)}"
            )


def _check_model(model: Mapping[str, Any], hardware: Mapping[str, Any]) -> None:
    """The model can be built: kind resolves, an HF checkpoint's config.json names its family."""
    from knoblab.models.registry import build_adapter, builder, merged_model_config

    data = merged_model_config(model, hardware)
    kind = data.get("kind", "reference")
    if kind == "hf":
        from knoblab.hub import resolve_checkpoint
        from knoblab.models.hf import HFConfig, family_of

        keys = {k: v for k, v in data.items() if k in HFConfig.__dataclass_fields__}
        c = to_dataclass(keys, HFConfig, "model")
        family_of(resolve_checkpoint(c.path), c.family)
    elif kind == "reference":
        build_adapter(model, hardware)  # small weights; checks dtype, device, weights file
    else:
        builder(kind)  # an import path: it imports and is callable (not called: no model load)


def _check_design(knobs: Mapping[str, Any], design: DesignConfig) -> None:
    lists = {k: v for k, v in knobs.items() if v is not None}
    if not lists:
        return  # the model's own knob values are used: known once it is built
    configs = make_design(
        design.name, lists, levels=design.levels, num_points=design.num_points, seed=design.seed
    )
    if not configs:
        raise ConfigError(
            "design.name", design.name, "a design that yields at least one configuration"
        )


def validate_profile(cfg: Any) -> ProfileConfig:
    data = plain(cfg) or {}
    c = to_dataclass(data, ProfileConfig, "")
    _check_datasets(c.datasets)
    _check_dataset(c.dataset, data)
    _check_design(c.knobs, c.design)
    _check_model(c.model, data.get("hardware") or {})
    return c


def validate_deep_profile(cfg: Any) -> DeepProfileConfig:
    data = plain(cfg) or {}
    c = to_dataclass(data, DeepProfileConfig, "")
    _check_dataset(c.dataset, data)
    if c.deep.configurations is None:
        _check_design(c.knobs, c.design)
    _check_model(c.model, data.get("hardware") or {})
    return c


def validate_plan(cfg: Any) -> PlanConfig:
    data = plain(cfg) or {}
    c = to_dataclass(data, PlanConfig, "")
    _check_dataset(c.dataset, data)
    return c


def validate_export_data(cfg: Any) -> ExportDataConfig:
    data = plain(cfg) or {}
    c = to_dataclass(data, ExportDataConfig, "")
    _check_dataset(c.dataset, data)
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
