"""The projector: vision features -> language-model embeddings (a two-layer MLP, as LLaVA)."""

from __future__ import annotations

import torch
from torch import nn

from knoblab.models.reference.config import ReferenceConfig


class Projector(nn.Module):
    """``vision_dim -> d_model -> d_model`` with GELU."""

    def __init__(self, cfg: ReferenceConfig):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(cfg.vision_dim, cfg.d_model), nn.GELU(), nn.Linear(cfg.d_model, cfg.d_model)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
