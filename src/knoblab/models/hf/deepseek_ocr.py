"""DeepSeek-OCR-2: vision tokens through local tiles (crop mode) and their count.

The processor encodes a global view and, in crop mode when the page is larger than the
tile size, ``min_patches..max_patches`` local tiles (the grid closest to the page's
aspect ratio). The global view costs ``ceil(size / patch / downsample)^2`` tokens (256 at
1024 px), each tile ``ceil(tile / patch / downsample)^2`` (144 at 768 px), plus one view
separator. Without crop mode the global view is encoded at the tile size (144 + 1).

``vision_tokens=T`` picks the most tiles ``c`` with ``global + c * tile + 1 <= T``
(crop mode with ``max_patches = c``), or crop mode off when ``T`` is below the smallest
crop-mode bound. Allowed values, for the released processor (tiles 2..6):
145 (no crops), 545, 689, 833, 977, 1121.

NOTE: the settings are the processor's ``images_kwargs`` (they override the image
processor's own attributes in transformers' kwarg merge); the adapter sets them on the
processor instance and removes them again on restore.

Usage::

    adapter.apply_knobs({"vision_tokens": 545})   # crop mode, at most 2 tiles
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from knoblab.errors import ConfigError
from knoblab.models.adapter import KnobSpec
from knoblab.models.hf.base import Family

_KEYS = ("crop_to_patches", "min_patches", "max_patches")


class Tiles:
    """``vision_tokens`` -> crop mode and ``max_patches`` (see the module docstring)."""

    @staticmethod
    def settings(processor: Any) -> dict[str, Any]:
        """The effective crop settings: the processor's images_kwargs over the image processor's."""
        ip = processor.image_processor
        merged = {k: getattr(ip, k) for k in _KEYS}
        merged.update(
            {k: v for k, v in dict(getattr(processor, "images_kwargs", {})).items() if k in _KEYS}
        )
        return merged

    @staticmethod
    def _tokens(processor: Any) -> tuple[int, int]:
        ip, unit = processor.image_processor, processor.patch_size * processor.downsample_ratio
        return math.ceil(ip.size["height"] / unit) ** 2, math.ceil(ip.tile_size / unit) ** 2

    def _bounds(self, processor: Any) -> list[tuple[int, int]]:
        """(tokens, tiles) per setting: no crop mode (tiles 0), then each tile count."""
        glob, tile = self._tokens(processor)
        s = self.settings(processor)
        return [(tile + 1, 0)] + [
            (glob + c * tile + 1, c) for c in range(s["min_patches"], s["max_patches"] + 1)
        ]

    def spec(self, processor: Any, model: nn.Module, values: Sequence[int] | None) -> KnobSpec:
        bounds = self._bounds(processor)
        default = bounds[-1][0] if self.settings(processor)["crop_to_patches"] else bounds[0][0]
        vals = tuple(values) if values is not None else tuple(b for b, _ in bounds)
        return KnobSpec(
            "vision_tokens", vals, default, "max vision tokens per page: global + tiles * tile + 1"
        )

    def snapshot(self, processor: Any, model: nn.Module) -> Any:
        return copy.deepcopy(processor.__dict__.get("images_kwargs"))

    def apply(self, processor: Any, model: nn.Module, value: int) -> dict[str, Any]:
        bounds = self._bounds(processor)
        fitting = [(b, c) for b, c in bounds if b <= value]
        if not fitting:
            raise ConfigError(
                "knobs.vision_tokens", value, f"at least {bounds[0][0]} (one global view)"
            )
        tiles = fitting[-1][1]
        kwargs = dict(getattr(processor, "images_kwargs", {}))
        kwargs["crop_to_patches"] = tiles > 0
        if tiles > 0:  # tiles is in min_patches..max_patches: only the cap changes
            kwargs["max_patches"] = tiles
        processor.images_kwargs = kwargs  # instance attribute: shadows the class default
        return {"crop_mode": tiles > 0, "max_tiles": tiles}

    def restore(self, processor: Any, model: nn.Module, saved: Any) -> None:
        if saved is None:
            processor.__dict__.pop("images_kwargs", None)
        else:
            processor.images_kwargs = copy.deepcopy(saved)


def _count_image_tokens(adapter: Any, enc: Mapping[str, Any]) -> int:
    return int((enc["input_ids"] == adapter.model.config.image_token_id).sum())


def _layout(adapter: Any, enc: Mapping[str, Any], image: Any) -> dict[str, Any]:
    return {"num_crops": int(enc["num_local_patches"][0])}


def _prompt(question: str) -> str:
    # DeepSeek-OCR's plain prompt, used when the checkpoint ships no chat template.
    return f"<image>\n{question}"


DEEPSEEK_OCR2 = Family(
    name="deepseek_ocr2",
    model_types=("deepseek_ocr2",),
    model_class="DeepseekOcr2ForConditionalGeneration",
    processor_class="DeepseekOcr2Processor",
    image_processor_class="DeepseekOcr2ImageProcessorPil",
    fallback_prompt=_prompt,
    vision=Tiles(),
    tokens_per_image=_count_image_tokens,
    layout=_layout,
)
