"""The patch encoder: crops -> one feature per patch (``tokens_per_crop`` per crop).

Each crop goes through a small convolutional stem (two stride-2 3x3 convolutions, so
the feature map is ``crop_size / 4`` on a side); the stem's cells are grouped into
``patch_size`` patches and embedded linearly, given a learned within-crop position, a
global/tile flag and a Fourier encoding of where the patch lies in the whole image,
then mixed by transformer layers that attend *within* a crop (a ViT run once per
crop, as in Molmo).

Why a convolutional stem rather than ViT's linear patch embedding: it makes the small
shapes' colour and form detectable wherever they fall in a patch, and a model trained
from scratch on a CPU budget learns to see several times sooner ("Early convolutions
help transformers see better", Xiao et al. 2021).

Example:
    >>> from PIL import Image
    >>> from knoblab.models.reference.preprocess import prepare_image
    >>> from knoblab.models.tiling import plan_tiling
    >>> cfg = ReferenceConfig()
    >>> plan = plan_tiling(96, 96, tokens_per_crop=9, patch_size=8, crop_size=24, max_crops=12)
    >>> vi = prepare_image(Image.new("RGB", (96, 96)), plan, cfg)
    >>> is_tile = torch.tensor([0] + [1] * (len(vi.pixels) - 1))  # the global crop first
    >>> enc = PatchEncoder(cfg)
    >>> enc(vi.pixels, vi.positions, is_tile).shape     # (crops, tokens_per_crop, vision_dim)
    torch.Size([10, 9, 96])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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
    """Convolutional stem + patch embedding + per-crop transformer layers."""

    STRIDE = 4  # the stem's total downsampling

    def __init__(self, cfg: ReferenceConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.patch_size % self.STRIDE:
            from knoblab.errors import ConfigError

            raise ConfigError(
                "patch_size",
                cfg.patch_size,
                f"a multiple of {self.STRIDE} (the conv stem's stride)",
            )
        c1, c2 = cfg.stem_channels
        self.conv1 = nn.Conv2d(3, c1, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        cells = cfg.patch_size // self.STRIDE
        self.patch_embed = nn.Linear(c2 * cells * cells, cfg.vision_dim)
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

    def patchify(self, fmap: torch.Tensor) -> torch.Tensor:
        """``(N, C, s, s)`` stem features -> ``(N, tokens_per_crop, C * cells^2)``, row-major."""
        n, ch, s, _ = fmap.shape
        k = self.cfg.patch_size // self.STRIDE
        g = s // k
        x = fmap.reshape(n, ch, g, k, g, k).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(n, g * g, ch * k * k)

    def forward(
        self, pixels: torch.Tensor, positions: torch.Tensor, is_tile: torch.Tensor
    ) -> torch.Tensor:
        """Features ``(N, tokens_per_crop, vision_dim)`` of ``N`` crops.

        Args:
            pixels: ``(N, 3, crop, crop)`` normalised pixels.
            positions: ``(N, tokens_per_crop, 2)`` patch centres in image coordinates.
            is_tile: ``(N,)`` long, 0 for a global crop, 1 for a tile.
        """
        fmap = F.gelu(self.conv2(F.gelu(self.conv1(pixels))))
        x = self.patch_embed(self.patchify(fmap))
        x = x + self.crop_pos + self.kind(is_tile)[:, None, :]
        x = x + self.image_pos(fourier_features(positions, self.cfg.pos_frequencies))
        return self.norm(self.layers(x))
