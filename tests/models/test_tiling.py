"""Tiling: least-distortion grids, tier bounds, target-tokens mode, token counts."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knoblab.errors import ConfigError
from knoblab.models.tiling import (
    INVALID_PATCH,
    TIERS,
    crops_for_target_tokens,
    plan_tiling,
    select_crops_for_tier,
    select_tiling,
    valid_patch_mask,
)


def brute(h: float, w: float, lo: int, hi: int) -> tuple[int, int]:
    """Reference: enumerate every grid, least distortion, then most crops, then most rows."""
    grids = [(r, c) for r in range(1, hi + 1) for c in range(1, hi + 1) if lo <= r * c <= hi]
    return min(
        grids, key=lambda g: (round(abs(math.log((g[0] / g[1]) / (h / w))), 9), -g[0] * g[1], -g[0])
    )


@pytest.mark.parametrize("max_crops", [1, 2, 3, 5, 8, 12, 15])
@pytest.mark.parametrize("ratio", [1 / 3, 0.4, 0.5, 2 / 3, 0.75, 1.0, 4 / 3, 1.5, 2.0, 2.5, 3.0])
def test_select_tiling_every_aspect_ratio(ratio: float, max_crops: int) -> None:
    h, w = 300 * ratio, 300
    rows, cols = select_tiling(h, w, max_crops)
    assert 1 <= rows * cols <= max_crops
    assert (rows, cols) == brute(h, w, 1, max_crops)


def test_select_tiling_known_cases() -> None:
    assert select_tiling(100, 100, 15) == (3, 3)  # square: 1x1, 2x2, 3x3 tie -> most crops
    assert select_tiling(100, 300, 9) == (1, 3)
    assert select_tiling(300, 100, 9) == (3, 1)
    assert select_tiling(100, 200, 8) == (2, 4)
    assert select_tiling(100, 100, 8) == (2, 2)  # fewer crops than allowed: 2x3 distorts
    assert select_tiling(500, 10, 3) == (3, 1)


@pytest.mark.parametrize("tier", list(TIERS))
@pytest.mark.parametrize("ratio", [1 / 3, 0.45, 0.6, 0.8, 1.0, 1.25, 1.7, 2.2, 3.0])
def test_tier_bounds(tier: str, ratio: float) -> None:
    lo, hi = TIERS[tier]
    rows, cols = select_crops_for_tier(ratio * 240, 240, (lo, hi))
    assert lo <= rows * cols <= hi
    assert (rows, cols) == brute(ratio * 240, 240, lo, hi)


def test_tiers_are_seed_002s() -> None:
    assert TIERS == {"low": (1, 3), "medium": (4, 8), "high": (9, 15)}


@settings(max_examples=200, deadline=None)
@given(
    h=st.integers(1, 4000), w=st.integers(1, 4000), lo=st.integers(1, 10), span=st.integers(0, 10)
)
def test_tier_choice_is_least_distortion(h: int, w: int, lo: int, span: int) -> None:
    assert select_crops_for_tier(h, w, (lo, lo + span)) == brute(h, w, lo, lo + span)


def test_target_tokens_mode_formula() -> None:
    assert crops_for_target_tokens(1008, 144) == 6  # seed 002's example
    assert crops_for_target_tokens(1440, 144) == 9
    assert crops_for_target_tokens(40, 4) == 9
    assert crops_for_target_tokens(43, 4) == 9  # floor
    with pytest.raises(ConfigError, match="knobs.vision_tokens=4"):
        crops_for_target_tokens(4, 4)


@pytest.mark.parametrize("target", [8, 16, 28, 40, 64])
def test_target_mode_plan(target: int) -> None:
    p = plan_tiling(120, 360, tokens_per_crop=4, patch_size=12, crop_size=24, vision_tokens=target)
    assert p.target_crops == target // 4 - 1
    assert p.num_crops <= p.target_crops
    assert p.theoretical_tokens == (p.num_crops + 1) * 4
    assert p.target_tokens == target


def test_token_counts_and_image_size() -> None:
    p = plan_tiling(100, 300, tokens_per_crop=4, patch_size=12, crop_size=24, tier="high")
    rows, cols = p.tiling
    assert p.num_crops == rows * cols
    assert p.image_size == (rows * 24, cols * 24)
    assert p.theoretical_tokens == (rows * cols + 1) * 4
    assert p.actual_tokens == 4 + sum(p.valid) <= p.theoretical_tokens
    assert p.tier == "high" and p.tier_range == (9, 15)
    assert p.content_size[0] <= p.image_size[0] and p.content_size[1] <= p.image_size[1]


def test_padding_patches_are_invalid() -> None:
    # 1:3 image in a 1x1 tile canvas (max_crops=1): most of the canvas is padding.
    p = plan_tiling(100, 300, tokens_per_crop=16, patch_size=8, crop_size=32, max_crops=1)
    assert p.tiling == (1, 1)
    assert p.content_size == (11, 32)
    # rows of patches 1 and 2 (pixels 8..24) touch the centred 11-px band; rows 0 and 3 do not.
    assert p.valid == tuple([False] * 4 + [True] * 8 + [False] * 4)
    assert p.actual_tokens == 16 + 8 and p.theoretical_tokens == 32
    assert INVALID_PATCH == -100


def test_exact_fit_has_no_invalid_patches() -> None:
    p = plan_tiling(200, 300, tokens_per_crop=4, patch_size=12, crop_size=24, max_crops=6)
    assert p.tiling == (2, 3)
    assert p.actual_tokens == p.theoretical_tokens == 28


def test_valid_patch_mask_counts() -> None:
    mask = valid_patch_mask((24, 48), (48, 48), 12)  # content is the middle half, 12 px each side
    assert mask == [False] * 4 + [True] * 8 + [False] * 4


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"tier": "ultra"}, "knobs.tier"),
        ({"tier": "low", "max_crops": 3}, "knobs"),
        ({}, "knobs"),
        ({"max_crops": 0}, "max_crops"),
    ],
)
def test_bad_input_names_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        plan_tiling(10, 10, tokens_per_crop=4, patch_size=12, crop_size=24, **kwargs)
    assert e.value.key == key
    assert "\n" not in str(e.value)


def test_unknown_tier_lists_allowed() -> None:
    with pytest.raises(ConfigError, match="low, medium, high"):
        plan_tiling(10, 10, tokens_per_crop=4, patch_size=12, crop_size=24, tier="ultra")


def test_configurable_tiers() -> None:
    p = plan_tiling(
        100, 100, tokens_per_crop=4, patch_size=12, crop_size=24, tier="x", tiers={"x": (2, 5)}
    )
    assert p.tiling == (2, 2)
