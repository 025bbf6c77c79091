"""Qwen2.5-VL, Qwen3-VL and Qwen3-VL-MoE: vision tokens through the pixel budget.

Qwen-VL resizes each image (``smart_resize``) so that its pixel count lies in
``[min_pixels, max_pixels]`` (the image processor's ``size.shortest_edge`` /
``size.longest_edge``) and both sides are multiples of ``patch_size * merge_size``; each
``(patch_size * merge_size)^2`` pixels become one LLM token. ``vision_tokens=T`` sets
``max_pixels = T * (patch_size * merge_size)^2``, an upper bound per image: a small image
keeps fewer tokens (the records carry the actual count).

NOTE: ``min_pixels`` is lowered to ``max_pixels`` when the budget falls below it (the
processor rejects ``min > max``); both are restored afterwards.

Usage::

    adapter.apply_knobs({"vision_tokens": 256})   # Qwen2.5-VL: max_pixels = 256 * 28 * 28
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from knoblab.models.adapter import KnobSpec
from knoblab.models.hf.base import Family

#: The default ladder of per-image token budgets, clipped to the checkpoint's maximum.
LADDER = (4, 16, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)


class PixelBudget:
    """``vision_tokens`` -> the image processor's ``max_pixels`` (see the module docstring)."""

    @staticmethod
    def _ip(processor: Any) -> Any:
        return processor.image_processor

    def _unit(self, processor: Any) -> int:
        ip = self._ip(processor)
        return int((ip.patch_size * ip.merge_size) ** 2)

    def spec(self, processor: Any, model: nn.Module, values: Sequence[int] | None) -> KnobSpec:
        ip = self._ip(processor)
        default = int(ip.size["longest_edge"]) // self._unit(processor)
        vals = (
            tuple(values)
            if values is not None
            else tuple(v for v in LADDER if v < default) + (default,)
        )
        return KnobSpec(
            "vision_tokens",
            vals,
            default,
            "max LLM tokens per image (max_pixels / (patch*merge)^2)",
        )

    def snapshot(self, processor: Any, model: nn.Module) -> Any:
        return copy.deepcopy(self._ip(processor).size)

    def apply(self, processor: Any, model: nn.Module, value: int) -> dict[str, Any]:
        ip = self._ip(processor)
        max_pixels = int(value) * self._unit(processor)
        size = copy.deepcopy(ip.size)
        size["longest_edge"] = max_pixels
        size["shortest_edge"] = min(int(size["shortest_edge"]), max_pixels)
        ip.size = size
        return {"max_pixels": max_pixels, "min_pixels": int(size["shortest_edge"])}

    def restore(self, processor: Any, model: nn.Module, saved: Any) -> None:
        self._ip(processor).size = copy.deepcopy(saved)


def _count_image_tokens(adapter: Any, enc: Mapping[str, Any]) -> int:
    image_token_id = adapter.model.config.image_token_id
    return int((enc["input_ids"] == image_token_id).sum())


def _layout(adapter: Any, enc: Mapping[str, Any], image: Any) -> dict[str, Any]:
    # image_grid_thw = (frames, rows, cols) of patches: the resized image's size
    _, rows, cols = (int(v) for v in enc["image_grid_thw"][0])
    patch = int(adapter.processor.image_processor.patch_size)
    return {"image_size": (cols * patch, rows * patch)}


def _prompt(question: str) -> str:
    # Qwen's chat format, used when the checkpoint ships no chat template.
    return (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
        f"{question}<|im_end|>\n<|im_start|>assistant\n"
    )


QWEN2_5_VL = Family(
    name="qwen2_5_vl",
    model_types=("qwen2_5_vl",),
    model_class="Qwen2_5_VLForConditionalGeneration",
    processor_class="Qwen2_5_VLProcessor",
    image_processor_class="Qwen2VLImageProcessorPil",
    fallback_prompt=_prompt,
    vision=PixelBudget(),
    tokens_per_image=_count_image_tokens,
    layout=_layout,
)

QWEN3_VL = Family(
    name="qwen3_vl",
    model_types=("qwen3_vl",),
    model_class="Qwen3VLForConditionalGeneration",
    processor_class="Qwen3VLProcessor",
    image_processor_class="Qwen2VLImageProcessorPil",
    fallback_prompt=_prompt,
    vision=PixelBudget(),
    tokens_per_image=_count_image_tokens,
    layout=_layout,
)

QWEN3_VL_MOE = Family(
    name="qwen3_vl_moe",
    model_types=("qwen3_vl_moe",),
    model_class="Qwen3VLMoeForConditionalGeneration",
    processor_class="Qwen3VLProcessor",
    image_processor_class="Qwen2VLImageProcessorPil",
    fallback_prompt=_prompt,
    vision=PixelBudget(),
    tokens_per_image=_count_image_tokens,
    layout=_layout,
)
