"""LLaVA-OneVision: vision tokens through the anyres crop grids allowed.

LLaVA-OneVision encodes a base view plus an "anyres" grid of crops: for each image the
processor picks, among ``image_grid_pinpoints`` (resolutions that are multiples of the
vision tower's input size S), the one that fits the image best, and encodes each S x S
crop; every crop and the base view cost ``(S / patch_size)^2`` tokens before unpadding
(plus one newline token per feature row; grids above ``anyres_max_N`` are pooled).

``vision_tokens=T`` allows only the grids with at most ``c = T // tokens_per_crop - 1``
crops, in the processor AND the model config (both compute the token count from the
same pinpoints). The allowed values are ``(c + 1) * tokens_per_crop`` for each crop count
the checkpoint's grids offer, e.g. 1458, 2187, 2916, ... for 729-token crops.

NOTE: the bound ignores the newline tokens and unpadding, so the actual count (recorded)
can differ from ``T`` in both directions by up to one row per crop.

Usage::

    adapter.apply_knobs({"vision_tokens": 2916})   # grids of at most 3 crops
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from knoblab.errors import ConfigError
from knoblab.models.adapter import KnobSpec
from knoblab.models.hf.base import Family


class PinpointGrids:
    """``vision_tokens`` -> the anyres grids allowed (see the module docstring)."""

    @staticmethod
    def _per_crop(model: nn.Module) -> int:
        vc = model.config.vision_config
        return int((vc.image_size // vc.patch_size) ** 2)

    @staticmethod
    def _crops(pinpoint: Sequence[int], side: int) -> int:
        return (int(pinpoint[0]) // side) * (int(pinpoint[1]) // side)

    def spec(self, processor: Any, model: nn.Module, values: Sequence[int] | None) -> KnobSpec:
        side, per = int(model.config.vision_config.image_size), self._per_crop(model)
        counts = sorted({self._crops(p, side) for p in model.config.image_grid_pinpoints})
        bounds = tuple((c + 1) * per for c in counts)
        return KnobSpec(
            "vision_tokens",
            tuple(values) if values is not None else bounds,
            bounds[-1],
            "max vision tokens per image before unpadding: (crops + 1) * tokens_per_crop",
        )

    def snapshot(self, processor: Any, model: nn.Module) -> Any:
        return copy.deepcopy(model.config.image_grid_pinpoints)

    def apply(self, processor: Any, model: nn.Module, value: int) -> dict[str, Any]:
        side, per = int(model.config.vision_config.image_size), self._per_crop(model)
        saved = model.config.image_grid_pinpoints  # the checkpoint's: apply_knobs restores first
        max_crops = int(value) // per - 1
        allowed = [list(p) for p in saved if self._crops(p, side) <= max_crops]
        if not allowed:
            least = min(self._crops(p, side) for p in saved)
            raise ConfigError(
                "knobs.vision_tokens",
                value,
                f"at least {(least + 1) * per} (one grid of {least} crops)",
            )
        self._set(processor, model, allowed)
        return {"max_crops": max_crops, "grid_pinpoints": len(allowed)}

    @staticmethod
    def _set(processor: Any, model: nn.Module, pinpoints: list[list[int]]) -> None:
        processor.image_processor.image_grid_pinpoints = pinpoints
        model.config.image_grid_pinpoints = pinpoints
        inner = getattr(model, "model", None)
        if inner is not None and getattr(inner, "config", None) is not model.config:
            inner.config.image_grid_pinpoints = pinpoints

    def restore(self, processor: Any, model: nn.Module, saved: Any) -> None:
        self._set(processor, model, copy.deepcopy(saved))


def _count_image_tokens(adapter: Any, enc: Mapping[str, Any]) -> int:
    return int((enc["input_ids"] == adapter.model.config.image_token_index).sum())


def _layout(adapter: Any, enc: Mapping[str, Any], image: Any) -> dict[str, Any]:
    from transformers.image_processing_utils import select_best_resolution

    # the grid the processor picked for this image, as the model recomputes it
    side = int(adapter.model.config.vision_config.image_size)
    height, width = select_best_resolution(
        (image.height, image.width), adapter.model.config.image_grid_pinpoints
    )
    rows, cols = height // side, width // side
    return {"num_crops": rows * cols, "tiling": (rows, cols), "image_size": (width, height)}


def _prompt(question: str) -> str:
    # LLaVA-OneVision's Qwen2 chat format, used when the checkpoint ships no chat template.
    return f"<|im_start|>user\n<image>\n{question}<|im_end|>\n<|im_start|>assistant\n"


LLAVA_ONEVISION = Family(
    name="llava_onevision",
    model_types=("llava_onevision",),
    model_class="LlavaOnevisionForConditionalGeneration",
    processor_class="LlavaOnevisionProcessor",
    image_processor_class="LlavaOnevisionImageProcessorPil",
    fallback_prompt=_prompt,
    vision=PinpointGrids(),
    tokens_per_image=_count_image_tokens,
    layout=_layout,
)
