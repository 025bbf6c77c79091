"""SmolVLM and Idefics3: vision tokens through image splitting (a grid of crops + a global view).

The image processor resizes each image so its longest side is ``size.longest_edge``, then
splits it into crops of ``max_image_size.longest_edge`` (the vision encoder's input, P);
with more than one crop a downscaled global image is added. Every crop costs
``image_seq_len`` LLM tokens. So a grid of at most ``n x n`` crops costs at most
``(n * n + 1) * image_seq_len`` tokens, and ``n = 1`` (no splitting) costs ``image_seq_len``.

``vision_tokens=T`` picks the largest ``n`` whose bound fits in ``T``: ``n = 1`` turns
splitting off, ``n >= 2`` turns it on with ``size.longest_edge = n * P``. The allowed
values are exactly those bounds, e.g. SmolVLM (P=512, 64 tokens per crop):
``64, 320, 640, 1088`` for n = 1..4. A non-square image uses fewer crops (recorded).

Usage::

    adapter.apply_knobs({"vision_tokens": 320})   # at most a 2 x 2 grid + global image
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from knoblab.errors import ConfigError
from knoblab.models.adapter import KnobSpec
from knoblab.models.hf.base import Family


class CropGrid:
    """``vision_tokens`` -> image splitting and resize edge (see the module docstring)."""

    @staticmethod
    def _crop(processor: Any) -> int:
        return int(processor.image_processor.max_image_size["longest_edge"])

    @staticmethod
    def bound(n: int, seq_len: int) -> int:
        """The most tokens a grid of at most ``n x n`` crops costs."""
        return seq_len if n <= 1 else (n * n + 1) * seq_len

    def _default_n(self, processor: Any) -> int:
        ip = processor.image_processor
        if not ip.do_image_splitting:
            return 1
        return max(1, int(ip.size["longest_edge"]) // self._crop(processor))

    def spec(self, processor: Any, model: nn.Module, values: Sequence[int] | None) -> KnobSpec:
        seq = int(processor.image_seq_len)
        n_max = max(self._default_n(processor), 1)
        default = self.bound(n_max, seq)
        vals = (
            tuple(values)
            if values is not None
            else tuple(self.bound(n, seq) for n in range(1, n_max + 1))
        )
        return KnobSpec(
            "vision_tokens", vals, default, "max LLM tokens per image: (n*n + 1) * image_seq_len"
        )

    def snapshot(self, processor: Any, model: nn.Module) -> Any:
        ip = processor.image_processor
        return copy.deepcopy(ip.size), ip.do_image_splitting

    def apply(self, processor: Any, model: nn.Module, value: int) -> dict[str, Any]:
        seq, ip, crop = (
            int(processor.image_seq_len),
            processor.image_processor,
            self._crop(processor),
        )
        if value < seq:
            raise ConfigError("knobs.vision_tokens", value, f"at least image_seq_len = {seq}")
        n = 1
        while self.bound(n + 1, seq) <= value:
            n += 1
        size = copy.deepcopy(ip.size)
        if n > 1:
            size["longest_edge"] = n * crop
        ip.size, ip.do_image_splitting = size, n > 1
        return {"max_crops_per_side": n, "image_splitting": n > 1}

    def restore(self, processor: Any, model: nn.Module, saved: Any) -> None:
        ip = processor.image_processor
        ip.size, ip.do_image_splitting = copy.deepcopy(saved[0]), saved[1]


def _count_image_tokens(adapter: Any, enc: Mapping[str, Any]) -> int:
    return int((enc["input_ids"] == adapter.model.config.image_token_id).sum())


def _layout(adapter: Any, enc: Mapping[str, Any], image: Any) -> dict[str, Any]:
    # pixel_values: (batch, views, 3, P, P); several views = crops + the global image
    views = int(enc["pixel_values"].shape[1])
    return {"num_crops": views - 1 if views > 1 else 0}


def _prompt(question: str) -> str:
    # Idefics3 / SmolVLM chat format, used when the checkpoint ships no chat template.
    return f"<|im_start|>User:<image>{question}<end_of_utterance>\nAssistant:"


SMOLVLM = Family(
    name="smolvlm",
    model_types=("smolvlm",),
    model_class="SmolVLMForConditionalGeneration",
    processor_class="SmolVLMProcessor",
    image_processor_class="SmolVLMImageProcessorPil",
    fallback_prompt=_prompt,
    vision=CropGrid(),
    tokens_per_image=_count_image_tokens,
    layout=_layout,
)

IDEFICS3 = Family(
    name="idefics3",
    model_types=("idefics3",),
    model_class="Idefics3ForConditionalGeneration",
    processor_class="Idefics3Processor",
    image_processor_class="Idefics3ImageProcessorPil",
    fallback_prompt=_prompt,
    vision=CropGrid(),
    tokens_per_image=_count_image_tokens,
    layout=_layout,
)
