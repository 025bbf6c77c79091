"""Image -> crops for the reference VLM: one global crop plus the tiles of a ``TilingPlan``.

The global crop is the whole image squeezed to ``crop_size x crop_size`` (every patch
valid). The tiles come from a canvas of ``rows*crop_size x cols*crop_size`` pixels
holding the image fitted without distortion and centred; patches wholly in the padding
are invalid (``-100`` in ``patch_index``) and never reach the language model.

Every patch also carries the position of its centre in the image, normalised to [0, 1]
(outside for padding), so the model can tell where a tile's content lies: relative
position questions span tiles.

Example:
    >>> from knoblab.models.reference.config import ReferenceConfig
    >>> from knoblab.models.tiling import plan_tiling
    >>> img = Image.new("RGB", (96, 96))
    >>> plan = plan_tiling(96, 96, tokens_per_crop=9, patch_size=8, crop_size=24, max_crops=12)
    >>> vi = prepare_image(img, plan, ReferenceConfig())
    >>> vi.pixels.shape          # (1 + num_crops, 3, crop, crop): a 3 x 3 grid + the global crop
    torch.Size([10, 3, 24, 24])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from knoblab.models.reference.config import ReferenceConfig
from knoblab.models.tiling import INVALID_PATCH, TilingPlan, plan_tiling

# Pixel normalisation: [0, 255] -> about [-2, 2]; padding is 0 (mid-grey) after it.
_MEAN, _STD = 127.5, 64.0


@dataclass
class VisionInput:
    """Model-ready crops of one image.

    Attributes:
        pixels: ``(num_crops + 1, 3, crop, crop)`` float tensor, global crop first.
        positions: ``(num_crops + 1, tokens_per_crop, 2)`` patch centres (y, x) in the image.
        patch_index: ``((num_crops + 1) * tokens_per_crop,)`` long: the patch's place among
            the valid vision tokens, or ``-100`` when invalid (as Molmo's ``image_input_idx``).
    """

    pixels: torch.Tensor
    positions: torch.Tensor
    patch_index: torch.Tensor

    @property
    def num_valid(self) -> int:
        return int((self.patch_index >= 0).sum())


def _to_tensor(img: Image.Image) -> torch.Tensor:
    arr = np.asarray(img, dtype=np.float32)
    return torch.from_numpy((arr - _MEAN) / _STD).permute(2, 0, 1).contiguous()


def _grid_centres(n: int) -> torch.Tensor:
    return (torch.arange(n, dtype=torch.float32) + 0.5) / n


def plan_image(
    image: Image.Image,
    cfg: ReferenceConfig,
    *,
    tier: str | None = None,
    vision_tokens: int | None = None,
) -> TilingPlan:
    """``image``'s tiling under ``cfg`` (its crop, patch and token sizes, its tiers) for
    one of ``tier`` / ``vision_tokens`` (``knoblab.models.tiling.plan_tiling``)."""
    return plan_tiling(
        image.height,
        image.width,
        tokens_per_crop=cfg.tokens_per_crop,
        patch_size=cfg.patch_size,
        crop_size=cfg.crop_size,
        tier=tier,
        vision_tokens=vision_tokens,
        tiers=cfg.tiers,
    )


def prepare_image(image: Image.Image, plan: TilingPlan, cfg: ReferenceConfig) -> VisionInput:
    """Crops, patch positions and validity of ``image`` under ``plan``."""
    c, p = cfg.crop_size, cfg.patch_size
    side = c // p
    rows, cols = plan.tiling
    H, W = plan.image_size
    ch, cw = plan.content_size
    image = image.convert("RGB")
    # BICUBIC with PIL's area-aware downscaling: fewer crops really do lose detail.
    glob = _to_tensor(image.resize((c, c), Image.Resampling.BICUBIC))
    content = _to_tensor(image.resize((cw, ch), Image.Resampling.BICUBIC))
    top, left = (H - ch) // 2, (W - cw) // 2
    canvas = torch.zeros(3, H, W)
    canvas[:, top : top + ch, left : left + cw] = content
    tiles = canvas.reshape(3, rows, c, cols, c).permute(1, 3, 0, 2, 4).reshape(rows * cols, 3, c, c)
    pixels = torch.cat([glob[None], tiles], dim=0)

    g = _grid_centres(side)
    gy, gx = torch.meshgrid(g, g, indexing="ij")
    glob_pos = torch.stack([gy, gx], -1).reshape(1, side * side, 2)
    # Tile patch centres in canvas pixels -> image coordinates.
    cy = (torch.arange(H // p, dtype=torch.float32) + 0.5) * p
    cx = (torch.arange(W // p, dtype=torch.float32) + 0.5) * p
    ty, tx = torch.meshgrid((cy - top) / ch, (cx - left) / cw, indexing="ij")  # (H/p, W/p)
    tile_pos = torch.stack([ty, tx], -1).reshape(rows, side, cols, side, 2).permute(0, 2, 1, 3, 4)
    tile_pos = tile_pos.reshape(rows * cols, side * side, 2)
    positions = torch.cat([glob_pos, tile_pos], dim=0)

    # Validity, in the same crop-major order as the tokens.
    canvas_valid = torch.tensor(plan.valid, dtype=torch.bool).reshape(rows, side, cols, side)
    tile_valid = canvas_valid.permute(0, 2, 1, 3).reshape(-1)
    valid = torch.cat([torch.ones(side * side, dtype=torch.bool), tile_valid])
    patch_index = torch.full(valid.shape, INVALID_PATCH, dtype=torch.long)
    patch_index[valid] = torch.arange(int(valid.sum()))
    return VisionInput(pixels=pixels, positions=positions, patch_index=patch_index)
