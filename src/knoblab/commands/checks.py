"""Checks of a command's dry run beyond its typed schema (``knoblab.commands.validate``).

Light to import: each check imports what it builds when it runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from knoblab.config import to_dataclass
from knoblab.errors import ConfigError

__all__ = ["check_dataset", "check_datasets", "check_design", "check_model"]


def check_dataset(section: Mapping[str, Any], data: Mapping[str, Any]) -> int:
    """Build the dataset and resolve its sampling plan; returns the dataset's size."""
    from knoblab.data.registry import build_dataset
    from knoblab.sampling import resolve_sampling

    dataset = build_dataset(section)
    if len(dataset) == 0:
        raise ConfigError("dataset", section.get("name"), "a dataset with at least 1 sample")
    resolve_sampling({**dict(data), "dataset": dict(section)}, len(dataset))
    return len(dataset)


def check_datasets(entries: list[Any]) -> None:
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


def check_model(model: Mapping[str, Any], hardware: Mapping[str, Any]) -> None:
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


def check_design(knobs: Mapping[str, Any], design: Any) -> None:
    """The design yields at least one configuration from the knob lists given."""
    from knoblab.profiling.design import make_design

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
