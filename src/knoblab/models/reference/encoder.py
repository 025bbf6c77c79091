"""The patch encoder: crops -> one feature per patch (``tokens_per_crop`` per crop).

Each crop is cut into ``patch_size`` patches, embedded linearly (as a ViT), given a
learned within-crop position, a global/tile flag and a Fourier encoding of where the
patch lies in the whole image, then mixed by a few transformer layers that attend
*within* a crop (like a ViT run once per crop, as in Molmo).

Example:
    >>> enc = PatchEncoder(ReferenceConfig())
    >>> enc(pixels, positions).shape     # (crops, tokens_per_crop, vision_dim)
    torch.Size([13, 16, 96])
"""

from __future__ import annotations

import math

import torch
from torch import nn

from knoblab.models.reference.config import ReferenceConfig


def fourier_features(positions: torch.Tensor, num_freq: int) -> torch.Tensor:
    """``(..., 2)`` positions in [0, 1] -> ``(..., 4 * num_freq)`` sin/cos features."""
    freqs = (
        2.0 ** torch.arange(num_freq, dtype=positions.dtype, device=positions.device)
    ) * math.pi
    angles = positions[..., None] * freqs  # (..., 2, F)
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)


class PatchEncoder(nn.Module):
    """Patch embedding + per-crop transformer layers."""

    def __init__(self, cfg: ReferenceConfig):
        super().__init__()
        self.cfg = cfg
        p = cfg.patch_size
        self.patch_embed = nn.Linear(3 * p * p, cfg.vision_dim)
        self.crop_pos = nn.Parameter(torch.zeros(cfg.tokens_per_crop, cfg.vision_dim))
        self.kind = nn.Embedding(2, cfg.vision_dim)  # 0 = global crop, 1 = tile
        self.image_pos = nn.Linear(4 * cfg.pos_frequencies, cfg.vision_dim)
        layer = nn.TransformerEncoderLayer(
            cfg.vision_dim,
            cfg.vision_heads,
            dim_feedforward=2 * cfg.vision_dim,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.layers = nn.TransformerEncoder(layer, cfg.vision_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.vision_dim)
        nn.init.normal_(self.crop_pos, std=0.02)

    def patchify(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(N, 3, c, c)`` -> ``(N, tokens_per_crop, 3 * p * p)``, patches row-major."""
        n, ch, c, _ = pixels.shape
        p = self.cfg.patch_size
        s = c // p
        x = pixels.reshape(n, ch, s, p, s, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(n, s * s, ch * p * p)

    def forward(
        self, pixels: torch.Tensor, positions: torch.Tensor, is_tile: torch.Tensor
    ) -> torch.Tensor:
        """Features ``(N, tokens_per_crop, vision_dim)`` of ``N`` crops.

        Args:
            pixels: ``(N, 3, crop, crop)`` normalised pixels.
            positions: ``(N, tokens_per_crop, 2)`` patch centres in image coordinates.
            is_tile: ``(N,)`` long, 0 for a global crop, 1 for a tile.
        """
        x = self.patch_embed(self.patchify(pixels))
        x = x + self.crop_pos + self.kind(is_tile)[:, None, :]
        x = x + self.image_pos(fourier_features(positions, self.cfg.pos_frequencies))
        return self.norm(self.layers(x))
