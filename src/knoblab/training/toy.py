"""A toy model and dataset for tests and benchmarks of the training parts.

``ToyDataset`` yields ``(features, label)`` pairs that are a pure function of
``(seed, index)``; the label is the argmax of a fixed random linear map, so a small
MLP learns it in a few hundred steps. Nothing here is part of the reference recipe.

Example:
    >>> ds = ToyDataset(100, seed=1)
    >>> x, y = ds[0]
    >>> x.shape, 0 <= y < 4
    (torch.Size([16]), True)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from knoblab.errors import ConfigError
from knoblab.training.tasks import TrainTask


class ToyDataset:
    """``size`` synthetic classification samples; ``hard=True`` adds label noise in the features."""

    metric = "exact_match"

    def __init__(
        self,
        size: int,
        seed: int = 0,
        dim: int = 16,
        classes: int = 4,
        noise: float = 0.0,
        name: str = "toy",
    ):
        if size < 1:
            raise ConfigError("dataset.size", size, "an integer >= 1")
        self.size, self.seed, self.dim, self.classes, self.noise, self.name = (
            size,
            seed,
            dim,
            classes,
            noise,
            name,
        )
        g = torch.Generator().manual_seed(12345)  # the labelling map is shared by every toy dataset
        self._w = torch.randn(dim, classes, generator=g)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.size:
            raise IndexError(index)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        x = torch.randn(self.dim, generator=g)
        y = int((x @ self._w).argmax())
        if self.noise:
            x = x + self.noise * torch.randn(self.dim, generator=g)
        return x, y

    def score(self, index: int) -> float:
        """A per-sample difficulty score (the feature norm), for weighted-sampling tests."""
        return float(self[index][0].norm())


def build_dataset(cfg: Mapping[str, Any]) -> ToyDataset:
    """``{format: toy, size, seed, dim, classes, noise, name}`` -> ``ToyDataset``."""
    keys = {"size", "seed", "dim", "classes", "noise", "name"}
    return ToyDataset(**{k: v for k, v in cfg.items() if k in keys})


class ToyNet(nn.Module):
    """Two-layer MLP classifier."""

    def __init__(self, dim: int = 16, hidden: int = 32, classes: int = 4, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(F.gelu(self.norm(self.fc1(x)))))


def _collate(samples: list[tuple[torch.Tensor, int]]) -> dict[str, torch.Tensor]:
    return {"x": torch.stack([s[0] for s in samples]), "y": torch.tensor([s[1] for s in samples])}


def _loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return F.cross_entropy(model(batch["x"]), batch["y"])


def build_task(config: dict[str, Any]) -> TrainTask:
    """The toy ``TrainTask``; config keys ``dim``, ``hidden``, ``classes``, ``dropout``."""
    cfg = {"dim": 16, "hidden": 32, "classes": 4, "dropout": 0.0, **config}
    unknown = set(cfg) - {"dim", "hidden", "classes", "dropout"}
    if unknown:
        k = sorted(unknown)[0]
        raise ConfigError(
            f"model.{k}", cfg[k], "one of dim, hidden, classes, dropout for model.kind=toy"
        )
    return TrainTask(
        kind="toy",
        config=cfg,
        model=ToyNet(cfg["dim"], cfg["hidden"], cfg["classes"], cfg["dropout"]),
        collate=_collate,
        loss=_loss,
        batch_size=lambda b: int(b["y"].shape[0]),
        extra={"build_dataset": build_dataset},
    )
