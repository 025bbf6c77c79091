"""Image tiling: one global crop plus ``rows x cols`` tiles, chosen per image (seed 002).

An image becomes one global crop (the whole image, squeezed to one crop) plus a grid of
tiles. The grid is chosen per image so that it distorts the image's aspect ratio least:

* **max-crops mode** — ``select_tiling(h, w, max_crops)``: any grid with
  ``rows * cols <= max_crops``.
* **tier mode** — ``select_crops_for_tier(h, w, (lo, hi))``: any grid with
  ``lo <= rows * cols <= hi``; tiers are ``low`` 1-3, ``medium`` 4-8, ``high`` 9-15
  crops (:data:`TIERS`, configurable).
* **target-tokens mode** — ``num_crops = target // tokens_per_crop - 1`` (the ``+ 1`` is
  the global crop) and then max-crops mode with ``max_crops = num_crops``.

Vision tokens: theoretical ``(num_crops + 1) * tokens_per_crop``; actual tokens leave
out patches marked invalid (``-100``): patches of the tile canvas that lie wholly in
the padding added when the image is fitted into the canvas without distortion.

NOTE: "distorts least" is measured as ``|log((rows / cols) / (h / w))|``, so 2:1 and 1:2
mistakes weigh the same. Exact ties go to the grid with more crops (more detail for
the same distortion), then to more rows. In max-crops and target-tokens modes the
selected grid may use *fewer* crops than allowed: a square image with ``max_crops=8``
gets 2x2, not 2x3. The records keep both the target and the selected counts.

Example:
    >>> select_tiling(100, 300, 9)
    (1, 3)
    >>> plan_tiling(100, 300, tokens_per_crop=9, patch_size=8, crop_size=24, tier="medium")
    TilingPlan(num_crops=4, tiling=(1, 4), image_size=(24, 96), content_size=(24, 72),
               theoretical_tokens=45, actual_tokens=39, target_tokens=None, target_crops=8,
               tier='medium', tier_range=(4, 8))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from knoblab.errors import ConfigError
from knoblab.records.schema import TIERS  # name -> (min_crops, max_crops): the one tier table

#: The marker for an invalid (padding) patch, as in Molmo's ``image_input_idx``.
INVALID_PATCH = -100


def _distortion(h: float, w: float, rows: int, cols: int) -> float:
    return abs(math.log((rows / cols) / (h / w)))


def _best_grid(h: float, w: float, min_crops: int, max_crops: int) -> tuple[int, int]:
    """The (rows, cols) with ``min_crops <= rows*cols <= max_crops`` distorting least."""
    if h <= 0 or w <= 0:
        raise ConfigError("image_size", (h, w), "positive height and width")
    if min_crops < 1 or max_crops < min_crops:
        raise ConfigError("crops", (min_crops, max_crops), "1 <= min_crops <= max_crops")
    best: tuple[float, int, int, tuple[int, int]] | None = None
    for rows in range(1, max_crops + 1):
        for cols in range(1, max_crops // rows + 1):
            n = rows * cols
            if n < min_crops:
                continue
            # Rounding keeps float noise from breaking exact ties (e.g. 1x1 vs 2x2).
            key = (round(_distortion(h, w, rows, cols), 9), -n, -rows, (rows, cols))
            if best is None or key < best:
                best = key
    if best is None:  # pragma: no cover - min_crops <= max_crops always leaves 1 grid
        raise ConfigError("crops", (min_crops, max_crops), "a range holding at least one grid")
    return best[3]


def select_tiling(h: float, w: float, max_crops: int) -> tuple[int, int]:
    """(rows, cols) with ``rows * cols <= max_crops`` distorting ``h:w`` least.

    Ties go to more crops. ``max_crops`` must be >= 1.
    """
    if max_crops < 1:
        raise ConfigError("max_crops", max_crops, "an integer >= 1")
    return _best_grid(h, w, 1, max_crops)


def select_crops_for_tier(h: float, w: float, tier_range: tuple[int, int]) -> tuple[int, int]:
    """(rows, cols) with ``lo <= rows * cols <= hi`` distorting ``h:w`` least."""
    lo, hi = tier_range
    if lo < 1 or hi < lo:
        raise ConfigError("tier_range", tier_range, "(min_crops, max_crops) with 1 <= min <= max")
    return _best_grid(h, w, lo, hi)


def crops_for_target_tokens(target_tokens: int, tokens_per_crop: int) -> int:
    """``target // tokens_per_crop - 1``: the tile count whose tokens plus the global crop's
    come closest to ``target`` from below (seed 002)."""
    n = target_tokens // tokens_per_crop - 1
    if n < 1:
        raise ConfigError(
            "knobs.vision_tokens",
            target_tokens,
            f"an integer >= {2 * tokens_per_crop} (two crops of {tokens_per_crop} tokens)",
        )
    return n


def resolve_tier(tier: str, tiers: dict[str, tuple[int, int]] | None = None) -> tuple[int, int]:
    """The (min_crops, max_crops) of a tier name, or a one-line ``ConfigError``."""
    tiers = TIERS if tiers is None else tiers
    if tier not in tiers:
        raise ConfigError("knobs.tier", tier, f"one of {', '.join(tiers)}")
    return tiers[tier]


@dataclass(frozen=True)
class TilingPlan:
    """How one image is cut into crops, with the counts seed 002's records carry.

    Attributes:
        num_crops: tiles (``rows * cols``), not counting the global crop.
        tiling: ``(rows, cols)``.
        image_size: ``(height, width)`` of the tile canvas, ``rows*crop_size x cols*crop_size``.
        content_size: ``(height, width)`` of the image fitted into the canvas (aspect kept).
        theoretical_tokens: ``(num_crops + 1) * tokens_per_crop``.
        actual_tokens: theoretical minus patches marked invalid (wholly padding).
        target_tokens: the requested token budget in target-tokens mode, else None.
        target_crops: the crop count asked for (target mode) or the tier's max, else None.
        tier: the tier name in tier mode, else None.
        tier_range: ``(min_crops, max_crops)`` in tier mode, else None.
        valid: per tile-canvas patch, row-major, True when it shows some of the image.
    """

    num_crops: int
    tiling: tuple[int, int]
    image_size: tuple[int, int]
    content_size: tuple[int, int]
    theoretical_tokens: int
    actual_tokens: int
    target_tokens: int | None = None
    target_crops: int | None = None
    tier: str | None = None
    tier_range: tuple[int, int] | None = None
    valid: tuple[bool, ...] = field(default=(), repr=False)


def fit_size(h: int, w: int, canvas_h: int, canvas_w: int) -> tuple[int, int]:
    """(height, width) of an ``h x w`` image scaled to fit ``canvas`` with its aspect kept."""
    scale = min(canvas_h / h, canvas_w / w)
    return max(1, min(canvas_h, round(h * scale))), max(1, min(canvas_w, round(w * scale)))


def valid_patch_mask(
    content: tuple[int, int], canvas: tuple[int, int], patch_size: int
) -> list[bool]:
    """Row-major validity of the canvas's patches when ``content`` is centred in it.

    A patch is invalid (``-100`` in the index) when it lies wholly in the padding.
    """
    ch, cw = content
    H, W = canvas
    top, left = (H - ch) // 2, (W - cw) // 2
    out = []
    for py in range(H // patch_size):
        y0, y1 = py * patch_size, (py + 1) * patch_size
        row_ok = y1 > top and y0 < top + ch
        for px in range(W // patch_size):
            x0, x1 = px * patch_size, (px + 1) * patch_size
            out.append(row_ok and x1 > left and x0 < left + cw)
    return out


def plan_tiling(
    h: int,
    w: int,
    *,
    tokens_per_crop: int,
    patch_size: int,
    crop_size: int,
    tier: str | None = None,
    vision_tokens: int | None = None,
    max_crops: int | None = None,
    tiers: dict[str, tuple[int, int]] | None = None,
) -> TilingPlan:
    """The tiling of an ``h x w`` image under exactly one of ``tier``, ``vision_tokens``
    (target tokens) or ``max_crops``.

    The global crop always counts ``tokens_per_crop`` valid tokens (the whole image is
    squeezed into it); only the tile canvas has padding.
    """
    given = [x is not None for x in (tier, vision_tokens, max_crops)]
    if sum(given) != 1:
        raise ConfigError(
            "knobs",
            {"tier": tier, "vision_tokens": vision_tokens, "max_crops": max_crops},
            "exactly one of tier, vision_tokens, max_crops",
        )
    tier_range = target_crops = None
    if tier is not None:
        tier_range = resolve_tier(tier, tiers)
        rows, cols = select_crops_for_tier(h, w, tier_range)
        target_crops = tier_range[1]
    elif vision_tokens is not None:
        target_crops = crops_for_target_tokens(vision_tokens, tokens_per_crop)
        rows, cols = select_tiling(h, w, target_crops)
    else:
        assert max_crops is not None
        rows, cols = select_tiling(h, w, max_crops)
        target_crops = max_crops
    canvas = (rows * crop_size, cols * crop_size)
    content = fit_size(h, w, *canvas)
    valid = valid_patch_mask(content, canvas, patch_size)
    n = rows * cols
    return TilingPlan(
        num_crops=n,
        tiling=(rows, cols),
        image_size=canvas,
        content_size=content,
        theoretical_tokens=(n + 1) * tokens_per_crop,
        actual_tokens=tokens_per_crop + sum(valid),
        target_tokens=vision_tokens,
        target_crops=target_crops,
        tier=tier,
        tier_range=tier_range,
        valid=tuple(valid),
    )
