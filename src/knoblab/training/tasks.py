"""What training needs from a model family: build it, batch samples, compute its loss.

A ``TrainTask`` bundles a freshly built ``nn.Module`` with its collate function and
its loss. ``build_task(kind, config)`` builds one from a plain, JSON-able config; the
same ``(kind, config)`` pair is written into every checkpoint and weights export, so
``load_model_from_checkpoint`` can rebuild the model without unpickling code.

Kinds: ``reference`` (the built-in VLM: next-token loss on the answer tokens) and
``toy`` (a tiny classifier on a synthetic dataset, for tests and benchmarks).

Example:
    >>> task = build_task("toy", {"dim": 8, "hidden": 16, "classes": 4})
    >>> task.kind, sum(p.numel() for p in task.model.parameters()) > 0
    ('toy', True)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from knoblab._lazy import load_object
from knoblab.config import plain
from knoblab.errors import ConfigError

TASKS: dict[str, str] = {
    "reference": "knoblab.training.reference_task:build_task",
    "toy": "knoblab.training.toy:build_task",
}


@dataclass
class TrainTask:
    """A model plus what a training loop needs to feed it.

    Attributes:
        kind: the family name (a key of ``TASKS``).
        config: the plain config that rebuilds ``model`` (written into checkpoints).
        model: the network; its ``state_dict`` is what checkpoints store.
        collate: samples (as the datasets yield them) -> one batch.
        loss: ``loss(model, batch) -> scalar tensor``, the mean over the batch.
        batch_size: ``batch_size(batch) -> int``, for samples/s and logging.
        extra: optional hooks: ``build_dataset(cfg) -> dataset`` for a dataset format
            named like the family (``format: toy``), ``export(model, config, path, extra)``
            for the family's own weights format.
    """

    kind: str
    config: dict[str, Any]
    model: nn.Module
    collate: Callable[[list[Any]], Any]
    loss: Callable[[nn.Module, Any], torch.Tensor]
    batch_size: Callable[[Any], int]
    extra: dict[str, Any] = field(default_factory=dict)


def build_task(kind: str, config: Mapping[str, Any] | None = None) -> TrainTask:
    """The ``TrainTask`` for model family ``kind`` built from ``config``."""
    if kind not in TASKS:
        raise ConfigError("model.kind", kind, f"one of {', '.join(TASKS)}")
    return load_object(TASKS[kind])(dict(plain(config) or {}))
